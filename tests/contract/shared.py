"""Helpers for provider contract tests: the per-provider spec the generic cases run on, the HTTP error
table every adapter must map, multipart parsing."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

import httpx
import pytest
import respx

from core.errors import (
    AuthFailed,
    ContentPolicy,
    InvalidRequest,
    PixbotError,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExceeded,
    RateLimited,
)
from providers.base import HttpProvider

__all__ = [
    "HTTP_ERRORS",
    "SECRET",
    "TRANSPORT_ERRORS",
    "Part",
    "ProviderSpec",
    "assert_no_secret",
    "b64",
    "header_order",
    "json_body",
    "multipart_parts",
]

#: The API key every contract test configures; it must never reach a user-facing message.
SECRET = "sk-test-SECRET-0123456789"


def _post_answer(router: respx.MockRouter, spec: ProviderSpec, body: Any) -> None:
    router.post(spec.url).respond(200, json=body)


@dataclass(frozen=True)
class ProviderSpec:
    """How tests/contract/test_generic.py drives one adapter; each provider's test file states its own.

    ``url`` takes the first (for most, the only) request, a POST; HTTP and transport errors and unreadable
    answers are served there. ``answer`` serves a JSON object as the provider's final answer (ModelScope's
    comes from polling a task). ``image_answer`` is that answer carrying one base64 image, given as text,
    where the provider puts it.
    """

    cls: type[HttpProvider]
    model: str
    url: str
    image_answer: Callable[[str], dict[str, Any]]
    #: The ConfigError an unconfigured adapter raises before any request; None when it needs nothing.
    config_error: str | None
    config: Mapping[str, Any] = field(default_factory=lambda: {"api_key": SECRET})
    #: The error detail of an HTTP error is ``error.message`` of the body (nanobot's ``http_error_detail``)
    #: rather than the raw body.
    detail_is_error_message: bool = False
    answer: Callable[[respx.MockRouter, ProviderSpec, Any], None] = _post_answer
    #: Run on each new adapter (ModelScope: poll without real sleeps).
    prepare: Callable[[Any], None] | None = None


def _error(message: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "code": code}}


#: (status, headers, JSON body, expected class, expected retry_after)
HTTP_ERRORS = [
    pytest.param(400, {}, _error("Invalid size"), InvalidRequest, None, id="400"),
    pytest.param(
        400,
        {},
        _error("Your request was rejected by the safety system", "content_policy_violation"),
        ContentPolicy,
        None,
        id="400-content-policy",
    ),
    pytest.param(
        400, {}, _error("Request blocked", "moderation_blocked"), ContentPolicy, None, id="400-moderation"
    ),
    pytest.param(401, {}, _error(f"Incorrect API key provided: {SECRET}"), AuthFailed, None, id="401"),
    pytest.param(
        403,
        {},
        _error("Your organization must be verified to use this model"),
        AuthFailed,
        None,
        id="403-verify",
    ),
    pytest.param(
        429, {"Retry-After": "7"}, _error("Rate limit reached"), RateLimited, 7.0, id="429-retry-after"
    ),
    pytest.param(
        429,
        {},
        _error("You exceeded your current quota", "insufficient_quota"),
        QuotaExceeded,
        None,
        id="429-quota",
    ),
    pytest.param(500, {}, _error("server error"), ProviderUnavailable, None, id="500"),
    pytest.param(503, {"Retry-After": "3"}, _error("overloaded"), ProviderUnavailable, 3.0, id="503"),
]

#: (exception raised by the transport, expected class)
TRANSPORT_ERRORS = [
    pytest.param(httpx.ReadTimeout("read timed out"), ProviderTimeout, id="timeout"),
    pytest.param(httpx.ConnectTimeout("connect timed out"), ProviderTimeout, id="connect-timeout"),
    pytest.param(httpx.ConnectError("connection refused"), ProviderUnavailable, id="connect-error"),
]


def assert_no_secret(error: PixbotError) -> None:
    assert SECRET not in str(error)
    assert SECRET not in (error.detail or "")
    assert SECRET not in repr(error.args)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def json_body(request: httpx.Request) -> Any:
    return json.loads(request.content)


def header_order(request: httpx.Request, *names: str) -> list[str]:
    """The lower-cased names among ``names`` in the order the request carries them."""
    wanted = {n.lower() for n in names}
    return [k.lower() for k in request.headers if k.lower() in wanted]


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def multipart_parts(request: httpx.Request) -> list[Part]:
    """Every part of a multipart/form-data request, in order."""
    content_type = request.headers["content-type"]
    assert content_type.startswith("multipart/form-data; boundary="), content_type
    message = message_from_bytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + request.content)
    parts: list[Part] = []
    for part in message.get_payload():
        assert isinstance(part, Message)
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        parts.append(
            Part(
                name=str(part.get_param("name", header="content-disposition")),
                filename=part.get_filename(),
                content_type=part.get("content-type"),
                data=payload,
            )
        )
    return parts
