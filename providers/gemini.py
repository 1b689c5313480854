"""Gemini: the native Generative Language API — Imagen ``:predict`` and Flash ``:generateContent``."""

from __future__ import annotations

import logging
import re
from typing import Any, ClassVar, Final

import httpx

from core.errors import (
    AuthFailed,
    ConfigError,
    ContentPolicy,
    PixbotError,
    QuotaExceeded,
    RateLimited,
    Unsupported,
)
from core.payloads import DecodedBase64
from core.provider import Capabilities, ProviderRequest, ProviderResult
from providers.base import HttpProvider, error_for_response, http_error_detail

__all__ = [
    "IMAGEN_RATIOS",
    "GeminiProvider",
    "flash_max_references",
    "flash_ratios",
    "flash_sizes",
    "is_imagen",
]

log = logging.getLogger(__name__)

IMAGEN_RATIOS: Final = frozenset({"1:1", "9:16", "16:9", "3:4", "4:3"})
_FLASH_RATIOS: Final = frozenset({"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"})
_FLASH_31_EXTRA: Final = frozenset({"1:4", "4:1", "1:8", "8:1"})
#: Finish reasons (and prompt block reasons) that mean "refused", not "failed".
_REFUSALS: Final = frozenset({"SAFETY", "PROHIBITED_CONTENT", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT",
                              "BLOCKLIST", "SPII", "RECITATION", "IMAGE_RECITATION"})
_RETRY_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def is_imagen(model: str) -> bool:
    return "imagen" in model.lower()


def flash_ratios(model: str) -> frozenset[str]:
    """Aspect ratios a generateContent image model accepts (nanobot's substring table)."""
    m = model.lower()
    if "gemini-3.1-flash-lite-image" in m or "gemini-3.1-flash-image" in m:
        return _FLASH_RATIOS | _FLASH_31_EXTRA
    if "gemini-" in m and "image" in m:
        return _FLASH_RATIOS
    return frozenset()


def flash_sizes(model: str) -> frozenset[str]:
    """``imageSize`` values a model accepts; 2.0/2.5 Flash take none (the size is dropped)."""
    m = model.lower()
    if "gemini-3.1-flash-lite-image" in m:
        return frozenset({"1K"})
    if "gemini-3.1-flash-image" in m:
        return frozenset({"512", "1K", "2K", "4K"})
    if "gemini-3-pro-image" in m:
        return frozenset({"1K", "2K", "4K"})
    return frozenset()


def flash_max_references(model: str) -> int:
    # Google's documented input-image limits: Gemini 2.5 Flash Image works best with up to 3 input
    # images; the Gemini 3 image models (3 Pro Image, 3.1 Flash Image) accept up to 14.
    m = model.lower()
    return 14 if "gemini-3" in m and "image" in m else 3


class GeminiProvider(HttpProvider):
    """Imagen (text only, one sample) or Flash image models (references as inline parts)."""

    name: ClassVar[str] = "gemini"
    default_model: ClassVar[str] = "gemini-2.5-flash-image"
    # The LLM registry's OpenAI-compatible ``/v1beta/openai/`` is deliberately not used.
    default_base: ClassVar[str | None] = "https://generativelanguage.googleapis.com/v1beta"
    default_timeout: ClassVar[float] = 120.0

    def capabilities(self, model: str) -> Capabilities:
        if is_imagen(model):
            return Capabilities(ratios=IMAGEN_RATIOS, sizes=frozenset(), max_references=0,
                                ratio_fallback="the model's default (1:1)")
        return Capabilities(ratios=flash_ratios(model), sizes=flash_sizes(model),
                            max_references=flash_max_references(model))

    def gemini_headers(self) -> dict[str, str]:
        """The key travels in ``x-goog-api-key`` (never ``?key=``, which httpx would log)."""
        return {"x-goog-api-key": self.api_key or "", **self.headers(bearer=False)}

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        if not self.api_key:
            raise ConfigError("Gemini API key is not configured. Set providers.gemini.apiKey.")
        if is_imagen(request.model):
            return await self._imagen(request)
        return await self._flash(request)

    async def _imagen(self, request: ProviderRequest) -> ProviderResult:
        if request.references:
            raise Unsupported(f"The Imagen model {request.model} cannot use reference images. Use a "
                              "Gemini image model for edits, or send a prompt alone.", provider=self.name)
        parameters: dict[str, Any] = {"sampleCount": 1}
        if request.aspect_ratio in IMAGEN_RATIOS:
            parameters["aspectRatio"] = request.aspect_ratio
        body: dict[str, Any] = {"instances": [{"prompt": request.prompt}], "parameters": parameters}
        body.update(self.extra_body)
        url = f"{self.base_url}/models/{request.model}:predict"
        data = self.require_mapping(await self.post_json(url, body, self.gemini_headers()))
        images: list[bytes] = []
        filtered: list[str] = []
        predictions = data.get("predictions")
        for prediction in predictions if isinstance(predictions, list) else []:
            if not isinstance(prediction, dict):
                continue
            payload = prediction.get("bytesBase64Encoded")
            if isinstance(payload, str | DecodedBase64) and payload:
                images.append(self.decode_b64(payload))
            elif isinstance(prediction.get("raiFilteredReason"), str):
                filtered.append(prediction["raiFilteredReason"])
        if not images and filtered:
            raise self._refused(f"Imagen filtered the result: {'; '.join(filtered)}")
        return self.result(images, data)

    async def _flash(self, request: ProviderRequest) -> ProviderResult:
        limit = flash_max_references(request.model)
        if len(request.references) > limit:
            raise Unsupported(f"{request.model} accepts at most {limit} reference images "
                              f"(got {len(request.references)}).", provider=self.name)
        parts: list[dict[str, Any]] = [
            {"inlineData": {"mimeType": ref.mime, "data": ref.b64()}} for ref in request.references
        ]
        parts.append({"text": request.prompt})
        generation: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
        image_config: dict[str, str] = {}
        if request.aspect_ratio and request.aspect_ratio in flash_ratios(request.model):
            image_config["aspectRatio"] = request.aspect_ratio
        size = (request.size or "").strip().upper()
        if size and size in flash_sizes(request.model):
            image_config["imageSize"] = size
        if image_config:
            generation["imageConfig"] = image_config
        body: dict[str, Any] = {"contents": [{"role": "user", "parts": parts}],
                                "generationConfig": generation}
        body.update(self.extra_body)
        url = f"{self.base_url}/models/{request.model}:generateContent"
        data = self.require_mapping(await self.post_json(url, body, self.gemini_headers()))
        images, texts, reasons = self._parse_candidates(data)
        text = "\n".join(texts).strip()
        if not images:
            feedback = data.get("promptFeedback")
            block = feedback.get("blockReason") if isinstance(feedback, dict) else None
            if block:
                raise self._refused(f"prompt blocked: {block}")
            refused = [reason for reason in reasons if reason in _REFUSALS]
            if refused:
                said = f"; text: {text[:300]}" if text else ""
                raise self._refused(f"finishReason {', '.join(refused)}{said}")
            if text:
                log.info("gemini answered without an image; finishReason=%s", ",".join(reasons) or "-")
        return self.result(images, data, text)

    def _parse_candidates(self, data: dict[str, Any]) -> tuple[list[bytes], list[str], list[str]]:
        images: list[bytes] = []
        texts: list[str] = []
        reasons: list[str] = []
        candidates = data.get("candidates")
        for candidate in candidates if isinstance(candidates, list) else []:
            if not isinstance(candidate, dict):
                continue
            if isinstance(candidate.get("finishReason"), str):
                reasons.append(candidate["finishReason"])
            content = candidate.get("content")
            parts = content.get("parts") if isinstance(content, dict) else None
            for part in parts if isinstance(parts, list) else []:
                # Thought parts (Gemini 3 drafts and reasoning) are not the answer.
                if not isinstance(part, dict) or part.get("thought") is True:
                    continue
                if isinstance(part.get("text"), str):
                    texts.append(part["text"])
                inline = part.get("inlineData") or part.get("inline_data")
                if isinstance(inline, dict) and isinstance(inline.get("data"), str | DecodedBase64) and inline["data"]:
                    images.append(self.decode_b64(inline["data"]))
        return images, texts, reasons

    def _refused(self, why: str) -> ContentPolicy:
        detail = f"{self.name}: {why}"
        log.warning("%s", detail)
        return ContentPolicy(detail=detail, provider=self.name)

    def error_for(self, response: httpx.Response) -> PixbotError:
        """Google's error object: key errors arrive as 400, and 429 means either a per-minute limit
        (RetryInfo says when to retry) or an exhausted/absent quota (``limit: 0``, per-day)."""
        text = http_error_detail(response)
        error = error_for_response(self.name, response, self._secrets(), text=text)
        raw = response.text
        if response.status_code == 400 and ("API_KEY_INVALID" in raw or "api key not valid" in text.lower()):
            return AuthFailed(detail=error.detail, provider=self.name)
        if response.status_code == 429:
            delay = _retry_delay(response)
            hard = "limit: 0" in text or "perday" in raw.lower()
            if isinstance(error, QuotaExceeded) and delay is not None and not hard:
                return RateLimited(detail=error.detail, provider=self.name, retry_after=delay)
            if isinstance(error, RateLimited) and error.retry_after is None:
                error.retry_after = delay
        return error


def _retry_delay(response: httpx.Response) -> float | None:
    """``google.rpc.RetryInfo.retryDelay`` ("37s") from the error details, if any."""
    try:
        data = response.json()
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for item in details if isinstance(details, list) else []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("RetryInfo"):
            match = _RETRY_DELAY.match(str(item.get("retryDelay", "")))
            if match:
                return float(match[1])
    return None
