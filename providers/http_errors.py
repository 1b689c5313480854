"""How a provider's HTTP error becomes a taxonomy error: the one status → PixbotError mapping
(``error_for_response``), the well-known signals in error text (``classify_message``: content policy,
quota, an unverified organisation), the request option a 400 names, and nanobot's error detail
(``http_error_detail``). providers/base.py re-exports the public names."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

import httpx

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
from core.net import parse_retry_after, redact

__all__ = ["classify_message", "error_for_response", "http_error_detail"]

#: Under the adapters' logger name, so operators' log lines (docs/operations.md) read as before.
log = logging.getLogger("providers.base")

_POLICY = ("content_policy", "content policy", "moderation", "safety system", "safety_violation",
           "responsible ai", "blocked by", "prohibited", "sensitive", "nsfw", "inappropriate")
_QUOTA = ("insufficient_quota", "quota", "billing", "credit", "balance", "payment required",
          "insufficient balance", "exceeded your current")
_VERIFY = ("organization must be verified", "must be verified", "verify your organization")


def classify_message(text: str) -> type[PixbotError] | None:
    """Map a provider's error text onto a category by its well-known signals, or None."""
    lowered = text.lower()
    if any(s in lowered for s in _VERIFY):
        return AuthFailed
    if any(s in lowered for s in _POLICY):
        return ContentPolicy
    if any(s in lowered for s in _QUOTA):
        return QuotaExceeded
    return None


def error_for_response(provider: str, response: httpx.Response, secrets: Iterable[str] = (), *,
                       text: str | None = None) -> PixbotError:
    """The one place an HTTP error status becomes a taxonomy error. Raw text goes to ``detail``.

    ``text`` (e.g. ``http_error_detail``) replaces the raw body in ``detail``; both are classified.
    """
    status = response.status_code
    raw = _body_text(response)[:1000]
    body = redact(raw if text is None else text, secrets, limit=500)
    detail = f"{provider} HTTP {status}: {body}"
    log.warning("%s", detail)
    signalled = classify_message(body if text is None else f"{text}\n{raw}")
    if status == 429:
        if signalled is QuotaExceeded:
            return QuotaExceeded(detail=detail, provider=provider)
        return RateLimited(detail=detail, provider=provider,
                           retry_after=parse_retry_after(response.headers.get("Retry-After")))
    if status in (401, 403):
        if signalled is ContentPolicy:
            return ContentPolicy(detail=detail, provider=provider)
        return AuthFailed(detail=detail, provider=provider)
    if status == 402:
        return QuotaExceeded(detail=detail, provider=provider)
    if status in (408, 504, 524):
        return ProviderTimeout(detail=detail, provider=provider)
    if status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return ProviderUnavailable(detail=detail, provider=provider, retry_after=retry_after)
    if signalled is not None:
        return signalled(detail=detail, provider=provider)
    if status == 404:
        return InvalidRequest(
            "The image service does not know this model or endpoint. The operator should check "
            "the model name and apiBase.", detail=detail, provider=provider)
    if status == 413:
        return InvalidRequest("The request was too large for the image service (try fewer or smaller "
                              "reference images).", detail=detail, provider=provider)
    option = _named_option(f"{text or ''}\n{raw}")
    if option is not None:
        return InvalidRequest(f"The image service rejected the {option}. Try another {option}, or leave it "
                              "out.", detail=detail, provider=provider)
    return InvalidRequest("The image service rejected the request. Try a different prompt or options.",
                          detail=detail, provider=provider)


#: "Invalid value for size: 4K", "invalid 'aspect_ratio'", "size must be one of …": the option a 400 names.
_OPTION_NAMED = re.compile(r"(?i)\b(?:invalid\s+(?:value\s+for\s+)?['\"`]?|unsupported\s+['\"`]?)"
                           r"(size|aspect[_ ]ratio|image[_ ]size|resolution|quality|n)\b"
                           r"|\b(size|aspect[_ ]ratio|image[_ ]size|resolution)['\"`]?\s+(?:must|is not|should)\b")
_OPTION_WORDS = {"size": "size", "image_size": "size", "image size": "size", "resolution": "size",
                 "aspect_ratio": "aspect ratio", "aspect ratio": "aspect ratio", "quality": "quality",
                 "n": "number of images"}


def _named_option(text: str) -> str | None:
    """The request option a provider's 400 names (in words for the chat), if it names one."""
    match = _OPTION_NAMED.search(text)
    if match is None:
        return None
    return _OPTION_WORDS.get((match[1] or match[2]).lower())


def http_error_detail(response: httpx.Response) -> str:
    """nanobot's error detail (gemini, ollama, modelscope): ``error.message`` of a JSON body whose
    ``error`` is an object (else that object as text), otherwise the body's start; ``error_for_response``
    redacts it, then cuts it to 500 characters (cutting first could leave part of a key)."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        message = data["error"].get("message")
        return message if isinstance(message, str) else str(data["error"])
    return _body_text(response)[:1000]


def _body_text(response: httpx.Response) -> str:
    try:
        return response.text or "<empty response body>"
    except (UnicodeDecodeError, httpx.ResponseNotRead):
        return "<unreadable response body>"
