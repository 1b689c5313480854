"""The error taxonomy: one class per category, each with a message a chat user can act on.

    PixbotError                      category      retryable  what the user can do
    ├── ContentPolicy                content_policy   no      rephrase
    ├── AuthFailed                   auth             no      tell the operator (key, verification)
    ├── QuotaExceeded                quota            no      wait for the reset / top up
    ├── RateLimited                  rate_limited     yes     wait a minute
    ├── ProviderTimeout              timeout          yes     retry, smaller size
    ├── InvalidRequest               invalid_request  no      fix the prompt or options
    │   └── NothingToEdit            invalid_request  no      make or send an image first
    ├── Unsupported                  unsupported      no      pick another model / drop references
    ├── ProviderUnavailable          provider_unavailable yes retry later
    ├── BadImage                     bad_image        no      send another image
    ├── Cancelled                    cancelled        no      ask again (stopped by /cancel or a shutdown)
    └── InternalError                internal         no      report it
        └── ConfigError              internal         no      the operator fixes the configuration

``str(error)`` is the message for whoever asked. ``public_message`` is what a chat user or an API
client sees: the same, except for ``ConfigError``, whose message names configuration keys for the
operator (CLI, doctor, the log) while everyone else gets a generic "not set up" text. ``detail``
holds what only the log may see (raw provider text, already truncated and redacted by whoever
raised it).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "CATEGORIES",
    "AuthFailed",
    "BadImage",
    "Cancelled",
    "ConfigError",
    "ContentPolicy",
    "InternalError",
    "InvalidRequest",
    "NothingToEdit",
    "PixbotError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "QuotaExceeded",
    "RateLimited",
    "Unsupported",
    "error_for_category",
]


class PixbotError(Exception):
    category: ClassVar[str] = "internal"
    retryable: ClassVar[bool] = False
    default_message: ClassVar[str] = "Something went wrong on our side. It has been logged; please try again."

    def __init__(
        self,
        message: str | None = None,
        *,
        detail: str | None = None,
        provider: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.detail = detail
        self.provider = provider
        #: Seconds the provider asked us to wait (``Retry-After``), for the retry policy.
        self.retry_after = retry_after
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    @property
    def public_message(self) -> str:
        """What someone on the far side of a chat or the HTTP API is told."""
        return self.message

    def to_dict(self) -> dict[str, str]:
        return {"category": self.category, "message": self.message}


class ContentPolicy(PixbotError):
    category = "content_policy"
    default_message = "The image service refused this prompt under its content policy. Try rephrasing it."


class AuthFailed(PixbotError):
    category = "auth"
    default_message = (
        "The image service rejected the bot's credentials. The bot's operator needs to check the API key."
    )


class QuotaExceeded(PixbotError):
    category = "quota"
    default_message = "The image service's quota or credit is used up. Try again later."


class RateLimited(PixbotError):
    category = "rate_limited"
    retryable = True
    default_message = "The image service is busy right now. Try again in a minute."


class ProviderTimeout(PixbotError):
    category = "timeout"
    retryable = True
    default_message = "The image service took too long to answer. Try again, perhaps with a smaller size."


class InvalidRequest(PixbotError):
    category = "invalid_request"
    default_message = "The request was not valid. Check the prompt and options."


class Unsupported(PixbotError):
    category = "unsupported"
    default_message = "The configured image model cannot do this."


class ProviderUnavailable(PixbotError):
    category = "provider_unavailable"
    retryable = True
    default_message = "The image service is unavailable right now. Try again later."


class BadImage(PixbotError):
    category = "bad_image"
    default_message = "That file is not an image the bot can use (PNG, JPEG, WebP or GIF)."


class Cancelled(PixbotError):
    category = "cancelled"
    default_message = "Stopped before it finished."


class InternalError(PixbotError):
    category = "internal"


class NothingToEdit(InvalidRequest):
    """An edit with no image to work on: the chat has none yet and the request named none."""

    default_message = ("There is no image in this chat to edit yet. Generate one first, or send the image "
                       "you want to change.")


class ConfigError(InternalError):
    """The operator's configuration is wrong or incomplete; the message names the key to fix. A
    server-side problem: chat users and API clients get the generic ``public_message``."""

    default_message = "The bot is not set up for this yet: its operator needs to fix its configuration."

    @property
    def public_message(self) -> str:
        return self.default_message


_BY_CATEGORY: dict[str, type[PixbotError]] = {
    cls.category: cls
    for cls in (
        ContentPolicy,
        AuthFailed,
        QuotaExceeded,
        RateLimited,
        ProviderTimeout,
        InvalidRequest,
        Unsupported,
        ProviderUnavailable,
        BadImage,
        Cancelled,
        InternalError,
    )
}

CATEGORIES: frozenset[str] = frozenset(_BY_CATEGORY)


def error_for_category(category: str) -> type[PixbotError]:
    """The error class for a taxonomy name (``internal`` for anything unknown)."""
    return _BY_CATEGORY.get(category, InternalError)
