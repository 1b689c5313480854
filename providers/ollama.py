"""Ollama: native ``/api/generate`` for local image models; width/height from size and ratio, no edits."""

from __future__ import annotations

import logging
import re
from typing import Any, ClassVar, Final

import httpx

from core.errors import PixbotError, Unsupported
from core.payloads import DecodedBase64
from core.provider import Capabilities, ProviderRequest, ProviderResult
from providers.base import HttpProvider, error_for_response, http_error_detail

__all__ = ["OllamaProvider", "ollama_dimensions"]

log = logging.getLogger(__name__)

_PIXELS = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")
_RATIO = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")
_LONG_SIDE: Final = {"1K": 1024, "2K": 2048, "4K": 4096}


def ollama_dimensions(size: str | None, ratio: str | None) -> tuple[int, int]:
    """(width, height): ``WxH`` verbatim; else a long side from 1K/2K/4K (1024 otherwise) and the
    other side from the ratio, rounded to a multiple of 8 (Python ``round``, at least 8)."""
    size = (size or "").strip()
    if match := _PIXELS.match(size):
        return int(match[1]), int(match[2])
    long_side = _LONG_SIDE.get(size.upper(), 1024)
    parsed = _RATIO.match(ratio or "")
    w, h = (int(parsed[1]), int(parsed[2])) if parsed else (1, 1)
    if w <= 0 or h <= 0:
        w, h = 1, 1
    if w >= h:
        return long_side, _multiple_of_8(long_side * h / w)
    return _multiple_of_8(long_side * w / h), long_side


def _multiple_of_8(value: float) -> int:
    return max(8, round(value / 8) * 8)


class OllamaProvider(HttpProvider):
    """Local and self-hosted models; a key is optional (for a proxy in front of Ollama)."""

    name: ClassVar[str] = "ollama"
    default_model: ClassVar[str] = "x/z-image-turbo"
    default_base: ClassVar[str | None] = "http://localhost:11434/api"
    default_timeout: ClassVar[float] = 300.0
    requires_key: ClassVar[bool] = False

    @property
    def base_url(self) -> str:
        """apiBase as configured, except an OpenAI-style ``/v1`` suffix becomes ``/api``."""
        base = (self.config.api_base or "").rstrip("/")
        if not base:
            return self.default_base or ""
        return f"{base[:-3]}/api" if base.endswith("/v1") else base

    def capabilities(self, model: str) -> Capabilities:
        return Capabilities(ratios=None, sizes=None, max_references=0, ratio_fallback="square (1:1)",
                            size_fallback="1024 pixels on the long side")

    def ollama_headers(self) -> dict[str, str]:
        """Content-Type, extraHeaders, then the bearer key (which wins over any extra Authorization)."""
        headers = {"Content-Type": "application/json", **self.config.extra_headers}
        if self.api_key:
            for key in [k for k in headers if k.lower() == "authorization"]:
                del headers[key]
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        if request.references:
            raise Unsupported("Ollama image models cannot use reference images. Send a prompt alone.",
                              provider=self.name)
        width, height = ollama_dimensions(request.size, request.aspect_ratio)
        body: dict[str, Any] = {"model": request.model, "prompt": request.prompt, "width": width,
                                "height": height, "steps": 0}
        body.update(self.extra_body)
        body["stream"] = False  # one JSON answer; extraBody cannot turn on streaming
        answer = await self.post_json(f"{self.base_url}/generate", body, self.ollama_headers())
        data = self.require_mapping(answer)
        images: list[bytes] = []
        for key in ("image", "images"):
            self._collect(data.get(key), images)
        text = data.get("response")
        return self.result(images, data, text.strip() if isinstance(text, str) else "")

    def _collect(self, value: Any, into: list[bytes]) -> None:
        if isinstance(value, list):
            for item in value:
                self._collect(item, into)
        elif isinstance(value, DecodedBase64) or (isinstance(value, str) and value.strip()):
            into.append(self.decode_inline(value))

    def error_for(self, response: httpx.Response) -> PixbotError:
        return error_for_response(self.name, response, self._secrets(), text=http_error_detail(response))
