"""Zhipu (BigModel): ``/images/generations`` returning image URLs (downloaded SSRF-safely); no edits."""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Final

import httpx

from core.errors import (
    AuthFailed,
    ConfigError,
    ContentPolicy,
    PixbotError,
    QuotaExceeded,
    Unsupported,
)
from core.net import redact
from core.provider import Capabilities, ProviderRequest, ProviderResult
from providers.base import HttpProvider, error_for_response, openai_images, ratio_size

__all__ = ["ZHIPU_SIZES", "ZhipuProvider", "zhipu_error_class"]

log = logging.getLogger(__name__)

ZHIPU_SIZES: Final = {
    "1:1": "1280x1280",
    "16:9": "1728x960",
    "9:16": "960x1728",
    "3:4": "1088x1472",
    "4:3": "1472x1088",
}
_DEFAULT_SIZE: Final = "1280x1280"

#: BigModel business codes whose meaning the HTTP status hides: 1301 (unsafe content) comes as 400,
#: 1113 (account in arrears) and 1304 (daily call limit) as 429, 1000-1004 are authentication failures.
_CODES: Final[dict[str, type[PixbotError]]] = {
    "1000": AuthFailed, "1001": AuthFailed, "1002": AuthFailed, "1003": AuthFailed, "1004": AuthFailed,
    "1113": QuotaExceeded, "1304": QuotaExceeded,
    "1301": ContentPolicy,
}


def zhipu_error_class(payload: Any) -> type[PixbotError] | None:
    """The category for a body's ``error.code``, or None when the code says nothing special."""
    error = payload.get("error") if isinstance(payload, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return _CODES.get(str(code).strip()) if code is not None else None


class ZhipuProvider(HttpProvider):
    name: ClassVar[str] = "zhipu"
    default_model: ClassVar[str] = "glm-image"
    default_base: ClassVar[str | None] = "https://open.bigmodel.cn/api/paas/v4"
    default_timeout: ClassVar[float] = 300.0

    def capabilities(self, model: str) -> Capabilities:
        return Capabilities(
            ratios=frozenset(ZHIPU_SIZES),
            sizes=None,
            pixel_sizes_only=True,  # nanobot's x-pass: any WxH is sent verbatim
            max_references=0,
            size_overrides_ratio=True,  # an explicit WxH is sent instead of the ratio's size
            ratio_fallback=f"1:1 ({_DEFAULT_SIZE})",
            size_fallback="the aspect ratio's size",
        )

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        if not self.api_key:
            raise ConfigError("Zhipu API key is not configured. Set providers.zhipu.apiKey.")
        if request.references:
            raise Unsupported("Zhipu image models cannot use reference images. Send a prompt alone.",
                              provider=self.name)
        body: dict[str, Any] = {
            "model": request.model,
            "prompt": request.prompt,
            "size": ratio_size(request.size, request.aspect_ratio, ZHIPU_SIZES, _DEFAULT_SIZE),
        }
        body.update(self.extra_body)
        data = self.require_mapping(await self.post_json(f"{self.base_url}/images/generations", body))
        images = await openai_images(self, data)
        if not images and (category := zhipu_error_class(data)) is not None:
            said = redact(str(data.get("error")), self._secrets(), limit=500)
            detail = f"{self.name} returned no images: {said}"
            log.warning("%s", detail)
            raise category(detail=detail, provider=self.name)
        return self.result(images, data)

    def error_for(self, response: httpx.Response) -> PixbotError:
        error = error_for_response(self.name, response, self._secrets())
        try:
            category = zhipu_error_class(response.json())
        except ValueError:
            category = None
        if category is not None and not isinstance(error, category):
            return category(detail=error.detail, provider=self.name)
        return error
