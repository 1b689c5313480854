"""Network: shared httpx clients, the retry policy, log hygiene (redaction, Retry-After), and which hosts
are loopback. The SSRF-safe image downloader is core/download.py."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final, TypeVar

import httpx

from core.errors import PixbotError

__all__ = [
    "LOOPBACK_HOSTS",
    "RetryPolicy",
    "create_client",
    "is_loopback_host",
    "parse_retry_after",
    "redact",
    "with_retries",
]

#: Host names that reach only this machine: a server bound to one of them needs no API key.
LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})

_KEYLIKE = re.compile(r"(?i)(bearer\s+|sk-|key=|api[_-]?key[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9._\-]{6,}")


def redact(text: str, secrets: Iterable[str] = (), *, limit: int | None = None) -> str:
    """Remove known secrets and anything shaped like a key from text bound for a log, then keep at most
    ``limit`` characters. Cut here, not before: text cut first can end inside a secret, whose prefix
    the replacement would then no longer recognise."""
    known = [secret for secret in secrets if secret and len(secret) >= 4]
    if limit is not None:  # bound the work, keeping room for a secret that starts just before the cut
        text = text[: limit + max((len(secret) for secret in known), default=0) + 64]
    for secret in known:
        text = text.replace(secret, "***")
    text = _KEYLIKE.sub(lambda m: m[1] + "***", text)
    return text if limit is None else text[:limit]


def is_loopback_host(host: str) -> bool:
    """Whether a configured listen host is loopback (exactly one of LOOPBACK_HOSTS)."""
    return host in LOOPBACK_HOSTS


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# --- clients -----------------------------------------------------------------------------------------

_API_LIMITS: Final = httpx.Limits(max_connections=32, max_keepalive_connections=8, keepalive_expiry=30.0)


def create_client(*, timeout: float, proxy: str | None = None) -> httpx.AsyncClient:
    """The one client a provider reuses for its API calls (keep-alive, one TLS handshake per host).

    With an explicit proxy the environment is ignored (``trust_env=False``), as nanobot does; without
    one, ``HTTP(S)_PROXY`` from the environment still applies to API calls.
    """
    if proxy:
        return httpx.AsyncClient(timeout=timeout, limits=_API_LIMITS, proxy=proxy, trust_env=False)
    return httpx.AsyncClient(timeout=timeout, limits=_API_LIMITS)


# --- retries -----------------------------------------------------------------------------------------

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a retryable provider error.

    ``total`` bounds when a new attempt may start (measured from the first one); each attempt is
    bounded by its own HTTP timeout. ``jitter`` is fractional: 0.25 spreads a delay by ±25 %.
    """

    attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    total: float = 90.0
    jitter: float = 0.25

    def backoff(self, attempt: int) -> float:
        """Delay after failed attempt ``attempt`` (1-based): exponential, jittered, capped."""
        delay = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        delay *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, min(self.max_delay, delay))


async def with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_retry: Callable[[PixbotError, int, float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``call``, retrying only errors marked ``retryable`` (rate limits, timeouts, 5xx, resets).

    A provider's ``retry_after`` is honoured exactly; if it does not fit in what is left of the
    budget the error is raised at once rather than sleeping for nothing. ``on_retry`` receives the
    error, the number of the attempt that failed and the delay before the next one.
    """
    started = clock()
    attempt = 1
    while True:
        try:
            return await call()
        except PixbotError as err:
            if not err.retryable or attempt >= policy.attempts:
                raise
            remaining = policy.total - (clock() - started)
            delay = err.retry_after if err.retry_after is not None else policy.backoff(attempt)
            if delay >= remaining:
                raise
            if on_retry is not None:
                on_retry(err, attempt, delay)
            await sleep(delay)
            attempt += 1
