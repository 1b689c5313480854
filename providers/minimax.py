"""MiniMax: /image_generation with base64 output, subject references, and ``base_resp`` error codes."""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Final

from core.errors import (
    AuthFailed,
    ConfigError,
    ContentPolicy,
    InvalidRequest,
    PixbotError,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExceeded,
    RateLimited,
)
from core.net import redact
from core.payloads import DecodedBase64
from core.provider import Capabilities, ProviderRequest, ProviderResult
from providers.base import HttpProvider, classify_message

__all__ = ["ERROR_CODES", "RATIOS", "MiniMaxProvider"]

log = logging.getLogger(__name__)

RATIOS: Final = frozenset({"1:1", "16:9", "4:3", "3:2", "2:3", "3:4", "9:16", "21:9"})

#: ``base_resp.status_code`` → category, from MiniMax's published error-code table
#: (platform.minimax.io, "Error Codes"). Codes not listed fall back to the message text, then InvalidRequest.
ERROR_CODES: Final[dict[int, type[PixbotError]]] = {
    1000: ProviderUnavailable,  # unknown error: retry later
    1001: ProviderTimeout,  # request timeout
    1002: RateLimited,  # rate limit (RPM)
    1004: AuthFailed,  # not authorized / token mismatch
    1008: QuotaExceeded,  # insufficient balance
    1024: ProviderUnavailable,  # internal error
    1026: ContentPolicy,  # input flagged as sensitive
    1027: ContentPolicy,  # output flagged as sensitive
    1033: ProviderUnavailable,  # system error
    1039: RateLimited,  # token rate limit (TPM)
    1041: RateLimited,  # connection limit
    2013: InvalidRequest,  # invalid parameters
    2045: RateLimited,  # rate growth limit
    2049: AuthFailed,  # invalid API key
    2056: QuotaExceeded,  # usage limit exceeded
}

_CAPABILITIES = Capabilities(
    ratios=RATIOS,
    sizes=frozenset(),
    # image-01's subject reference is a single character image.
    max_references=1,
    ratio_fallback="1:1",
    size_fallback="set by the aspect ratio",
)


def _status_code(base_resp: Any) -> int:
    """``base_resp.status_code`` as an int; 0 (success) when absent or unreadable."""
    if not isinstance(base_resp, dict):
        return 0
    code = base_resp.get("status_code", 0)
    if isinstance(code, bool):
        return 0
    if isinstance(code, int):
        return code
    if isinstance(code, str) and code.strip().lstrip("-").isdigit():
        return int(code)
    return 0


class MiniMaxProvider(HttpProvider):
    """POST {base}/image_generation; images in ``data.image_base64``."""

    name: ClassVar[str] = "minimax"
    default_model: ClassVar[str] = "image-01"
    default_base: ClassVar[str | None] = "https://api.minimax.io/v1"
    default_timeout: ClassVar[float] = 300.0

    def capabilities(self, model: str) -> Capabilities:
        return _CAPABILITIES

    def body(self, request: ProviderRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "prompt": request.prompt,
            "response_format": "base64",
            "aspect_ratio": request.aspect_ratio if request.aspect_ratio in RATIOS else "1:1",
        }
        if request.references:
            body["subject_reference"] = [{"type": "character", "image_file": ref.data_url()}
                                         for ref in request.references]
        body.update(self.extra_body)
        return body

    def check_base_resp(self, data: dict[str, Any]) -> None:
        """HTTP 200 with ``base_resp.status_code != 0`` is an API error: raise its category."""
        base_resp = data.get("base_resp")
        code = _status_code(base_resp)
        if code == 0:
            return
        message = str(base_resp.get("status_msg", "")) if isinstance(base_resp, dict) else ""
        detail = f"minimax base_resp {code}: {redact(message, self._secrets(), limit=500)}"
        log.warning("%s", detail)
        category = ERROR_CODES.get(code) or classify_message(message) or InvalidRequest
        if category is InvalidRequest:
            raise InvalidRequest("The image service rejected the request. Try a different prompt or options.",
                                 detail=detail, provider=self.name)
        raise category(detail=detail, provider=self.name)

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        if not self.api_key:
            raise ConfigError("MiniMax API key is not configured. Set providers.minimax.apiKey.")
        answer = await self.post_json(f"{self.base_url}/image_generation", self.body(request))
        data = self.require_mapping(answer)
        self.check_base_resp(data)
        inner = data.get("data")
        payloads = inner.get("image_base64") if isinstance(inner, dict) else None
        if not isinstance(payloads, list):
            payloads = []
        images = [self.decode_b64(p) for p in payloads if isinstance(p, str | DecodedBase64) and p]
        if not images and _failed_count(data) > 0:
            raise ContentPolicy(detail="minimax: every image was withheld (metadata.failed_count)",
                                provider=self.name)
        return self.result(images, data)


def _failed_count(data: dict[str, Any]) -> int:
    """MiniMax counts images its safety check withheld in ``metadata.failed_count`` (a string)."""
    metadata = data.get("metadata")
    value = metadata.get("failed_count") if isinstance(metadata, dict) else None
    try:
        return int(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else 0
    except ValueError:
        return 0
