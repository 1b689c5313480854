"""StepFun: OpenAI-style ``/images/generations``, base64 output; ``1x`` models take one style reference."""

from __future__ import annotations

from typing import Any, ClassVar, Final

from core.errors import ConfigError, Unsupported
from core.provider import Capabilities, ProviderRequest, ProviderResult
from providers.base import HttpProvider, openai_images, ratio_size

__all__ = ["STEPFUN_SIZES", "StepFunProvider"]

STEPFUN_SIZES: Final = {
    "1:1": "1024x1024",
    "16:9": "1280x800",
    "9:16": "800x1280",
    "3:4": "768x1360",
    "4:3": "1360x768",
}
_DEFAULT_SIZE: Final = "1024x1024"


def _takes_style_reference(model: str) -> bool:
    """step-1x-* models accept ``style_reference`` (one image); the others take none."""
    return "1x" in model.lower()


class StepFunProvider(HttpProvider):
    name: ClassVar[str] = "stepfun"
    default_model: ClassVar[str] = "step-image-edit-2"
    default_base: ClassVar[str | None] = "https://api.stepfun.com/v1"
    default_timeout: ClassVar[float] = 120.0

    def capabilities(self, model: str) -> Capabilities:
        return Capabilities(
            ratios=frozenset(STEPFUN_SIZES),
            sizes=None,
            pixel_sizes_only=True,  # nanobot's x-pass: any WxH is sent verbatim
            max_references=1 if _takes_style_reference(model) else 0,
            size_overrides_ratio=True,  # an explicit WxH is sent instead of the ratio's size
            ratio_fallback=f"1:1 ({_DEFAULT_SIZE})",
            size_fallback="the aspect ratio's size",
        )

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        if not self.api_key:
            raise ConfigError("StepFun API key is not configured. Set providers.stepfun.apiKey.")
        limit = 1 if _takes_style_reference(request.model) else 0
        if len(request.references) > limit:
            # nanobot silently drops them; pixbot says so instead.
            what = "cannot use reference images" if limit == 0 else "uses only one reference image"
            raise Unsupported(f"The StepFun model {request.model} {what}.", provider=self.name)
        body: dict[str, Any] = {
            "model": request.model,
            "prompt": request.prompt,
            "response_format": "b64_json",
            "n": 1,
            "size": ratio_size(request.size, request.aspect_ratio, STEPFUN_SIZES, _DEFAULT_SIZE),
        }
        if request.references:
            body["style_reference"] = {"source_url": request.references[0].data_url()}
        body.update(self.extra_body)
        data = self.require_mapping(await self.post_json(f"{self.base_url}/images/generations", body))
        images = await openai_images(self, data)
        return self.result(images, data)
