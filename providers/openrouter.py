"""OpenRouter: image output through chat/completions with modalities; images and text from the message."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from core.errors import ConfigError, ContentPolicy
from core.payloads import DecodedBase64
from core.provider import Capabilities, ProviderRequest, ProviderResult
from providers.base import HttpProvider

__all__ = ["OpenRouterProvider"]

log = logging.getLogger(__name__)

#: nanobot's attribution headers, kept byte-for-byte so OpenRouter sees the same client.
_ATTRIBUTION: Final[dict[str, str]] = {
    "HTTP-Referer": "https://github.com/HKUDS/nanobot",
    "X-OpenRouter-Title": "nanobot",
    "X-OpenRouter-Categories": "cli-agent,personal-agent",
}

_CAPABILITIES = Capabilities(
    ratios=None,
    sizes=None,
    max_references=16,
    ratio_fallback="the model's default (not sent)",
    size_fallback="the model's default (not sent)",
)


def _image_urls(message: dict[str, Any]) -> list[str | DecodedBase64]:
    """``message.images[].image_url.url`` (or camelCase ``imageUrl``) strings."""
    images = message.get("images")
    if not isinstance(images, list):
        return []
    urls: list[str | DecodedBase64] = []
    for image in images:
        if not isinstance(image, dict):
            continue
        holder = image.get("image_url") or image.get("imageUrl")
        url = holder.get("url") if isinstance(holder, dict) else None
        if isinstance(url, str | DecodedBase64):
            urls.append(url)
    return urls


def _texts(message: dict[str, Any]) -> list[str]:
    content = message.get("content")
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [part["text"] for part in content if isinstance(part, dict)
                and part.get("type") == "text" and isinstance(part.get("text"), str)]
    return []


class OpenRouterProvider(HttpProvider):
    """POST {base}/chat/completions with ``modalities: ["image", "text"]``; references as image_url parts."""

    name: ClassVar[str] = "openrouter"
    default_model: ClassVar[str] = "openai/gpt-5.4-image-2"
    default_base: ClassVar[str | None] = "https://openrouter.ai/api/v1"
    default_timeout: ClassVar[float] = 120.0
    fixed_headers: ClassVar[Mapping[str, str]] = _ATTRIBUTION

    def capabilities(self, model: str) -> Capabilities:
        return _CAPABILITIES

    def body(self, request: ProviderRequest) -> dict[str, Any]:
        content: str | list[dict[str, Any]] = request.prompt
        if request.references:
            content = [{"type": "text", "text": request.prompt}]
            content += [{"type": "image_url", "image_url": {"url": ref.data_url()}}
                        for ref in request.references]
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": "user", "content": content}],
            "modalities": ["image", "text"],
            "stream": False,
        }
        image_config = {key: value for key, value in (("aspect_ratio", request.aspect_ratio),
                                                      ("image_size", request.size)) if value}
        if image_config:
            body["image_config"] = image_config
        body.update(self.extra_body)
        return body

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        if not self.api_key:
            raise ConfigError("OpenRouter API key is not configured. Set providers.openrouter.apiKey.")
        answer = await self.post_json(f"{self.base_url}/chat/completions", self.body(request))
        data = self.require_mapping(answer)
        choices = data.get("choices")
        images: list[bytes] = []
        texts: list[str] = []
        filtered = False
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict):
                continue
            filtered = filtered or choice.get("finish_reason") == "content_filter"
            message = choice.get("message")
            if not isinstance(message, dict):
                continue
            texts += _texts(message)
            for url in _image_urls(message):
                # pixbot downloads http(s) URLs (SSRF-safe) where nanobot dropped them.
                image = await self.image_from_string(url)
                if image is None:
                    log.info("openrouter: skipping an image URL that is neither data: nor http(s)")
                else:
                    images.append(image)
        text = "\n".join(texts).strip()
        if not images and filtered:
            raise ContentPolicy(detail="openrouter: finish_reason content_filter", provider=self.name)
        return self.result(images, data, text)
