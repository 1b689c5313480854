"""Custom: any OpenAI Images-compatible endpoint (apiBase required), plus multipart edits with references."""

from __future__ import annotations

from typing import Any, ClassVar

from core.errors import ConfigError
from core.provider import Capabilities, ProviderRequest, ProviderResult
from providers.base import GPT_IMAGE_SIZES, HttpProvider, gpt_size_for_ratio, openai_images
from providers.openai import MAX_EDIT_IMAGES, edit_files, form_fields, multipart_headers

__all__ = ["CustomProvider", "custom_size"]

_CAPABILITIES = Capabilities(
    ratios=frozenset(GPT_IMAGE_SIZES),
    sizes=None,
    max_references=MAX_EDIT_IMAGES,  # edits go to an OpenAI-style /images/edits
    size_overrides_ratio=True,
    ratio_fallback="1:1 (1024x1024)",
    size_fallback="the size for the aspect ratio",
)


def custom_size(size: str | None, ratio: str | None) -> str:
    """The seed contract: ``1K`` → ``1024x1024``, any other hint verbatim (``2K``, ``1536x1024``);
    no hint → the GPT-image table for the ratio."""
    hint = (size or "").strip()
    if hint:
        return "1024x1024" if hint.lower() == "1k" else hint
    return gpt_size_for_ratio(ratio)


class CustomProvider(HttpProvider):
    """POST {apiBase}/images/generations (JSON) or, with references, {apiBase}/images/edits (multipart)."""

    name: ClassVar[str] = "custom"
    default_model: ClassVar[str] = "gpt-image-1"
    default_base: ClassVar[str | None] = None
    default_timeout: ClassVar[float] = 120.0
    requires_key: ClassVar[bool] = False
    requires_base: ClassVar[bool] = True

    def capabilities(self, model: str) -> Capabilities:
        return _CAPABILITIES

    def body(self, request: ProviderRequest) -> dict[str, Any]:
        """Defaults, then extraBody merged last (shallow) so it can override ``response_format`` and
        ``size``; null extras stay null (nanobot sends them as JSON null)."""
        body: dict[str, Any] = {
            "model": request.model,
            "prompt": request.prompt,
            "response_format": "b64_json",
            "n": 1,
            "size": custom_size(request.size, request.aspect_ratio),
        }
        body.update(self.extra_body)
        return body

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        if not self.base_url:
            raise ConfigError(
                "Custom image generation API base is not configured. Set providers.custom.apiBase.")
        body = self.body(request)
        if request.references:
            data = await self.send(
                "POST", f"{self.base_url}/images/edits", data=form_fields(body, self.name),
                files=edit_files(request.references),
                headers=multipart_headers(self.headers(json_body=False)),
            )
        else:
            data = await self.post_json(f"{self.base_url}/images/generations", body)
        payload = self.require_mapping(data)
        return self.result(await openai_images(self, payload), payload)
