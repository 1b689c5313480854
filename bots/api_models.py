"""The HTTP API's border: pydantic request bodies, the model-name rule, and OpenAI-shaped errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.config import PROVIDER_NAMES, ImageGenerationConfig
from core.errors import PixbotError
from core.models import SlotError
from core.references import MAX_REFERENCES

__all__ = [
    "MAX_EDIT_IMAGES",
    "ApiError",
    "EditForm",
    "GenerationBody",
    "ImageOptions",
    "error_from_category",
    "error_from_pixbot",
    "form_fields",
    "split_model",
    "validation_error",
]

log = logging.getLogger(__name__)

#: OpenAI's ``/images/edits`` takes up to 16 images; so does pixbot's reference resolver.
MAX_EDIT_IMAGES = MAX_REFERENCES

#: category → (HTTP status, OpenAI error type, code). ``auth`` here is the provider's: our own
#: credential check answers 401 itself; a provider rejecting pixbot's key is the operator's problem.
_BY_CATEGORY: dict[str, tuple[int, str, str]] = {
    "invalid_request": (400, "invalid_request_error", "invalid_request"),
    "unsupported": (400, "invalid_request_error", "unsupported"),
    "bad_image": (400, "invalid_request_error", "invalid_image"),
    "content_policy": (400, "invalid_request_error", "content_policy_violation"),
    "auth": (502, "server_error", "upstream_auth_failed"),
    "quota": (429, "insufficient_quota", "insufficient_quota"),
    "rate_limited": (429, "rate_limit_error", "rate_limit_exceeded"),
    "timeout": (504, "server_error", "upstream_timeout"),
    "provider_unavailable": (502, "server_error", "upstream_unavailable"),
    "cancelled": (503, "server_error", "cancelled"),
    "internal": (500, "server_error", "internal_error"),
}


class ApiError(Exception):
    """An answer in OpenAI's error shape; raised anywhere in a handler, rendered by the middleware."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type, code
        self.param, self.retry_after = param, retry_after

    def body(self) -> bytes:
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return json.dumps({"error": error}, ensure_ascii=False).encode()


def error_from_category(category: str, message: str, retry_after: float | None = None) -> ApiError:
    status, kind, code = _BY_CATEGORY.get(category, _BY_CATEGORY["internal"])
    return ApiError(status, message, kind, code, retry_after=retry_after)


def error_from_pixbot(exc: PixbotError | SlotError) -> ApiError:
    """A taxonomy error (raised before work, or the first failed slot) as an HTTP answer."""
    if isinstance(exc, SlotError):
        return error_from_category(exc.category, exc.message)
    if exc.category == "internal":  # e.g. a ConfigError: the detail is the operator's, in the log
        log.error("api: server-side failure: %s (%s)", exc, exc.detail or type(exc).__name__)
    return error_from_category(exc.category, exc.public_message, exc.retry_after)


def validation_error(exc: ValidationError) -> ApiError:
    """The first pydantic complaint, named by its parameter, as a 400."""
    first = exc.errors(include_url=False)[0]
    param = ".".join(str(part) for part in first["loc"]) or None
    message = first["msg"].removeprefix("Value error, ")
    return ApiError(400, f"{param}: {message}" if param else message, code="invalid_value", param=param)


class ImageOptions(BaseModel):
    """Fields shared by generations and edits. Unknown OpenAI fields (quality, style…) are ignored."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    prompt: str = Field(min_length=1)
    model: str | None = None
    #: The upper bound is the configured ``maxImagesPerTurn``, checked with the rest of the request so
    #: that ``n: 9`` and ``n: 5`` (over a maximum of 4) get the same answer.
    n: int | None = Field(default=None, ge=1)
    size: str | None = Field(default=None, max_length=32)
    aspect_ratio: str | None = Field(default=None, max_length=16)
    response_format: Literal["b64_json", "url"] | None = None
    user: str | None = Field(default=None, max_length=256)
    #: OpenAI's newer name for ``user``; either one keys the chat and the quota.
    safety_identifier: str | None = Field(default=None, max_length=256)
    stream: bool | None = None

    @model_validator(mode="after")
    def _no_streaming(self) -> ImageOptions:
        if self.stream:
            raise ValueError("streaming is not supported; leave 'stream' unset")
        return self

    @property
    def chat_user(self) -> str | None:
        return self.user or self.safety_identifier


class GenerationBody(ImageOptions):
    """``POST /v1/images/generations`` (JSON)."""


class EditForm(ImageOptions):
    """``POST /v1/images/edits`` (multipart text fields; the files are read separately)."""


def split_model(model: str | None, image: ImageGenerationConfig,
                available: Collection[str]) -> tuple[str | None, str | None]:
    """``provider/model`` → (provider, model); a bare model (even one with a slash, as OpenRouter
    names are) goes unchanged to the default provider. Returns (None, None) for the defaults."""
    if not model:
        return None, None
    if model == image.model:
        return image.provider, model
    for fallback in image.fallbacks:
        if fallback.model == model:
            return fallback.provider, model
    prefix, slash, rest = model.partition("/")
    if slash and prefix in PROVIDER_NAMES:
        if prefix not in available:
            raise ApiError(400, f"Unknown provider {prefix!r}. Available: {', '.join(sorted(available))}.",
                           code="model_not_found", param="model")
        if not rest:
            raise ApiError(400, f"Name a model after {prefix}/.", code="model_not_found", param="model")
        return prefix, rest
    return None, model


def form_fields(fields: Mapping[str, str]) -> dict[str, Any]:
    """Multipart text fields as a dict for EditForm (empty strings mean "not given")."""
    return {key: value for key, value in fields.items() if value != ""}
