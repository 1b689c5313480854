"""AIHubMix: the unified predictions API (models/<path>/predictions), extraBody merged into ``input``."""

from __future__ import annotations

from typing import Any, ClassVar, Final, Literal

from core.errors import ConfigError
from core.payloads import DecodedBase64
from core.provider import Capabilities, ProviderRequest, ProviderResult
from providers.base import GPT_IMAGE_SIZES, HttpProvider, ratio_size

__all__ = ["AIHubMixProvider", "Hit", "find_images", "model_path"]

#: One image found in a response: base64 to decode, or a data:/http(s) URL.
Hit = tuple[Literal["b64", "url"], str | DecodedBase64]

_B64_KEYS: Final = ("bytesBase64", "bytes_base64", "base64")
_NESTED_KEYS: Final = ("images", "image", "output")
#: Real answers nest two or three levels; the cap only stops a pathological body.
_MAX_DEPTH: Final = 12

_CAPABILITIES = Capabilities(
    ratios=frozenset(GPT_IMAGE_SIZES),
    sizes=None,
    pixel_sizes_only=True,
    max_references=16,
    size_overrides_ratio=True,
    ratio_fallback="auto (the service picks)",
    size_fallback="the size for the aspect ratio",
)


def model_path(model: str) -> str:
    """``gpt-image-2-free`` → ``openai/gpt-image-2-free``; names with a ``/`` or of other families as is."""
    if "/" not in model and model.lower().startswith(("gpt-image-", "dall-e-")):
        return f"openai/{model}"
    return model


def find_images(data: dict[str, Any]) -> list[Hit]:
    """Walk ``data`` and ``output`` for every image the answer carries, in order. An object with both
    ``b64_json`` and ``url`` yields two hits, as nanobot's walk does."""
    hits: list[Hit] = []
    for key in ("data", "output"):
        if key in data:
            _walk(data[key], hits, 0)
    return hits


def _walk(node: Any, hits: list[Hit], depth: int) -> None:
    if depth > _MAX_DEPTH:
        return
    if isinstance(node, list):
        for item in node:
            _walk(item, hits, depth + 1)
    elif isinstance(node, str):
        if node.startswith(("data:image/", "http://", "https://")):
            hits.append(("url", node))
    elif isinstance(node, DecodedBase64):
        if node.mime is not None:  # a data URL; bare base64 is not an image here, as a short string is not
            hits.append(("url", node))
    elif isinstance(node, dict):
        b64_json = node.get("b64_json")
        if isinstance(b64_json, str | DecodedBase64):
            hits.append(("b64", b64_json))
        elif b64_json is not None:
            _walk(b64_json, hits, depth + 1)
        raw = next((node[key] for key in _B64_KEYS if node.get(key)), None)
        if isinstance(raw, str | DecodedBase64):
            hits.append(("b64", raw))
        holder = node.get("image_url") or node.get("imageUrl")
        if holder:
            _walk(holder.get("url") if isinstance(holder, dict) else holder, hits, depth + 1)
        if "url" in node:
            _walk(node["url"], hits, depth + 1)
        for key in _NESTED_KEYS:
            if key in node:
                _walk(node[key], hits, depth + 1)


class AIHubMixProvider(HttpProvider):
    """POST {base}/models/<model path>/predictions with ``{"input": {...}}``."""

    name: ClassVar[str] = "aihubmix"
    default_model: ClassVar[str] = "gpt-image-2-free"
    default_base: ClassVar[str | None] = "https://aihubmix.com/v1"
    default_timeout: ClassVar[float] = 300.0
    content_type_last: ClassVar[bool] = True  # nanobot forces it after extraHeaders

    def capabilities(self, model: str) -> Capabilities:
        return _CAPABILITIES

    def body(self, request: ProviderRequest) -> dict[str, Any]:
        inner: dict[str, Any] = {
            "prompt": request.prompt,
            "n": 1,
            "size": ratio_size(request.size, request.aspect_ratio, GPT_IMAGE_SIZES, "auto"),
        }
        if len(request.references) == 1:
            inner["image"] = request.references[0].data_url()
        elif request.references:
            inner["image"] = [ref.data_url() for ref in request.references]
        inner.update(self.extra_body)
        return {"input": inner}

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        if not self.api_key:
            raise ConfigError("AIHubMix API key is not configured. Set providers.aihubmix.apiKey.")
        url = f"{self.base_url}/models/{model_path(request.model)}/predictions"
        data = self.require_mapping(await self.post_json(url, self.body(request)))
        images: list[bytes] = []
        for kind, value in find_images(data):
            if kind == "b64":
                images.append(self.decode_b64(value))
            else:
                image = await self.image_from_string(value)
                if image is not None:
                    images.append(image)
        return self.result(images, data)
