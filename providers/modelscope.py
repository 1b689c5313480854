"""ModelScope API-Inference: async task submit, then polling within a time budget with backoff."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Final

import httpx

from core.config import ProviderConfig
from core.download import ImageDownloader
from core.errors import (
    ConfigError,
    PixbotError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    Unsupported,
)
from core.net import redact
from core.payloads import DecodedBase64
from core.provider import Capabilities, ProviderRequest, ProviderResult
from providers.base import HttpProvider, classify_message, error_for_response, http_error_detail, ratio_size

__all__ = ["MODELSCOPE_SIZES", "ModelScopeProvider"]

log = logging.getLogger(__name__)

MODELSCOPE_SIZES: Final = {
    "1:1": "1328x1328",
    "16:9": "1664x928",
    "9:16": "928x1664",
    "3:4": "1140x1472",
    "4:3": "1472x1140",
}
_DEFAULT_SIZE: Final = "1024x1024"
# Qwen-Image-Edit (2509 and later) documents one to three input images per request.
_MAX_REFERENCES: Final = 3
_CANCELLED: Final = frozenset({"CANCELED", "CANCELLED"})
# Qwen-Image itself (the default, Qwen/Qwen-Image-2512) draws from text only; the Edit models take images.
_TEXT_ONLY: Final = re.compile(r"(^|/)Qwen-Image(-\d+)?$", re.IGNORECASE)


class ModelScopeProvider(HttpProvider):
    """Submits with ``X-ModelScope-Async-Mode: true`` and polls ``tasks/<id>`` until SUCCEED/FAILED.

    The whole call (submit + polling) is bounded by the provider timeout; polls back off from
    ``poll_initial`` by ``poll_factor`` up to ``poll_max`` seconds. ``sleep`` and ``clock`` are
    attributes so tests can run the loop on a fake clock.
    """

    name: ClassVar[str] = "modelscope"
    default_model: ClassVar[str] = "Qwen/Qwen-Image-2512"
    default_base: ClassVar[str | None] = "https://api-inference.modelscope.cn/v1"
    default_timeout: ClassVar[float] = 300.0
    poll_initial: ClassVar[float] = 1.0
    poll_factor: ClassVar[float] = 1.5
    poll_max: ClassVar[float] = 10.0

    def __init__(
        self,
        config: ProviderConfig,
        client: httpx.AsyncClient,
        downloader: ImageDownloader | None = None,
    ) -> None:
        super().__init__(config, client, downloader)
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self.clock: Callable[[], float] = time.monotonic

    def capabilities(self, model: str) -> Capabilities:
        return Capabilities(
            ratios=frozenset(MODELSCOPE_SIZES),
            sizes=None,
            pixel_sizes_only=True,  # nanobot's x-pass: any WxH is sent verbatim
            max_references=0 if _TEXT_ONLY.search(model) else _MAX_REFERENCES,
            size_overrides_ratio=True,  # an explicit WxH is sent instead of the ratio's size
            ratio_fallback=_DEFAULT_SIZE,
            size_fallback="the aspect ratio's size",
        )

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        if not self.api_key:
            raise ConfigError("ModelScope API key is not configured. Set providers.modelscope.apiKey.")
        if len(request.references) > _MAX_REFERENCES:
            raise Unsupported(f"ModelScope takes at most {_MAX_REFERENCES} reference images "
                              f"(got {len(request.references)}).", provider=self.name)
        deadline = self.clock() + self.timeout
        body: dict[str, Any] = {
            "model": request.model,
            "prompt": request.prompt,
            "size": ratio_size(request.size, request.aspect_ratio, MODELSCOPE_SIZES, _DEFAULT_SIZE),
        }
        if request.references:
            urls = [ref.data_url() for ref in request.references]
            body["image_url"] = urls[0] if len(urls) == 1 else urls
        body.update(self.extra_body)
        headers = {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json",
                   "X-ModelScope-Async-Mode": "true", **self.config.extra_headers}
        url = f"{self.base_url}/images/generations"
        submitted = self.require_mapping(await self.post_json(url, body, headers))
        task_id = submitted.get("task_id")
        if not isinstance(task_id, (str, int)) or isinstance(task_id, bool) or not str(task_id).strip():
            raise ProviderUnavailable(
                "The image service did not accept the job. Try again later.",
                detail="ModelScope did not return a task_id: "
                       + redact(str(submitted), self._secrets(), limit=500),
                provider=self.name)
        data = await self._poll(str(task_id).strip(), deadline)
        images: list[bytes] = []
        outputs = data.get("output_images")
        for item in outputs if isinstance(outputs, list) else []:
            image = await self.image_from_string(item) if isinstance(item, str | DecodedBase64) else None
            if image is not None:
                images.append(image)
        return self.result(images, data)

    async def _poll(self, task_id: str, deadline: float) -> dict[str, Any]:
        """The task's final JSON (SUCCEED); FAILED → classified error; out of time → ProviderTimeout."""
        url = f"{self.base_url}/tasks/{task_id}"
        headers = {"Authorization": f"Bearer {self.api_key}", "X-ModelScope-Task-Type": "image_generation",
                   **self.config.extra_headers}
        delay = self.poll_initial
        polls = 0
        last = "no answer yet"
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0:
                detail = f"{self.name}: task {task_id} not done in {self.timeout:g}s, {polls} polls: {last}"
                raise ProviderTimeout(detail=detail, provider=self.name)
            await self.sleep(min(delay, remaining))
            delay = min(delay * self.poll_factor, self.poll_max)
            remaining = deadline - self.clock()
            if remaining <= 0:
                continue
            polls += 1
            try:
                answer = await self.send("GET", url, headers=headers, timeout=min(self.timeout, remaining))
            except PixbotError as exc:
                if not exc.retryable:
                    raise
                last = exc.detail or type(exc).__name__
                log.info("%s task %s poll %d failed (%s); retrying", self.name, task_id, polls, last[:200])
                if isinstance(exc, RateLimited) and exc.retry_after:
                    delay = max(delay, exc.retry_after)
                continue
            data = self.require_mapping(answer)
            status = str(data.get("task_status") or "").upper()
            last = f"task_status {status or '<missing>'}"
            if status == "SUCCEED":
                return data
            if status == "FAILED" or status in _CANCELLED:
                raise self._failed(task_id, data)

    def _failed(self, task_id: str, data: dict[str, Any]) -> PixbotError:
        message = _failure_message(data)
        detail = f"ModelScope task {task_id} failed: {redact(message, self._secrets(), limit=500)}"
        log.warning("%s", detail)
        category = classify_message(message)
        if category is not None:
            return category(detail=detail, provider=self.name)
        return ProviderUnavailable("The image service could not make this image. Try again or rephrase.",
                                   detail=detail, provider=self.name)

    def error_for(self, response: httpx.Response) -> PixbotError:
        return error_for_response(self.name, response, self._secrets(), text=http_error_detail(response))


def _failure_message(data: dict[str, Any]) -> str:
    """``errors.message`` (ModelScope's shape), ``error.message``, ``message``, else the whole body."""
    for key in ("errors", "error"):
        value = data.get(key)
        inner = value.get("message") if isinstance(value, dict) else None
        if isinstance(inner, str):
            return inner
        if isinstance(value, str) and value:
            return value
    message = data.get("message")
    if isinstance(message, str) and message:
        return message
    return str(data)
