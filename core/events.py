"""Live events between the parts of pixbot, and between pixbot processes sharing one database.

An ``EventBus`` carries small events (ids and short texts, never image bytes) on named channels: a studio
thread's progress, for example, whose pages fetch what changed from their own URLs. ``publish`` never
blocks and never raises: it delivers to this process's subscribers at once and, on a bus that spans
processes (``core/postgres/events.py``: PostgreSQL ``LISTEN/NOTIFY``), sends the event on to the others in
the background. A subscriber is a plain function called on the event loop for every event of every
channel; it must not block (put the event on a queue).

``LocalEventBus`` delivers within the process only: the bus of the SQLite engine (one process), and the
default of a service built without storage."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol, runtime_checkable

__all__ = ["NOTIFY_LIMIT", "EventBus", "EventTooLarge", "Handler", "LocalEventBus", "Subscribers", "encode",
           "trimmed"]

log = logging.getLogger(__name__)

#: A subscriber: called with the channel and the event, for every event published.
Handler = Callable[[str, Mapping[str, Any]], None]

#: PostgreSQL refuses a NOTIFY payload of 8000 bytes or more; a bus spanning processes keeps under this.
NOTIFY_LIMIT: Final = 8000 - 1
#: An event too large to send is sent with its short values only (ids, kinds, numbers): no longer than this.
_ID_MAX: Final = 200


class EventTooLarge(ValueError):
    """An event that does not fit a bus's payload limit, even with its short values only."""


@runtime_checkable
class EventBus(Protocol):
    def publish(self, channel: str, event: Mapping[str, Any]) -> None:
        """Deliver ``event`` to every subscriber (here at once, elsewhere soon). Never blocks or raises."""

    def subscribe(self, handler: Handler) -> Callable[[], None]:
        """Call ``handler`` for every event from now on; returns the function that stops it."""

    async def start(self) -> None:
        """Begin receiving other processes' events (a bus of one process has nothing to start)."""

    async def close(self) -> None:
        """Stop receiving and sending; publishing afterwards delivers here only. Safe to call twice."""


class Subscribers:
    """This process's subscribers: each event reaches each of them once; one that raises is logged and
    the others still receive."""

    def __init__(self) -> None:
        self._handlers: list[Handler] = []

    def add(self, handler: Handler) -> Callable[[], None]:
        self._handlers.append(handler)

        def remove() -> None:
            if handler in self._handlers:
                self._handlers.remove(handler)

        return remove

    def deliver(self, channel: str, event: Mapping[str, Any]) -> None:
        for handler in tuple(self._handlers):
            try:
                handler(channel, event)
            except Exception:
                log.exception("events: a subscriber failed on an event of channel %s", channel)

    def __len__(self) -> int:
        return len(self._handlers)


class LocalEventBus:
    """Subscribers of this process only: ``publish`` calls them before it returns."""

    def __init__(self) -> None:
        self._subscribers = Subscribers()

    def publish(self, channel: str, event: Mapping[str, Any]) -> None:
        self._subscribers.deliver(channel, event)

    def subscribe(self, handler: Handler) -> Callable[[], None]:
        return self._subscribers.add(handler)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


def trimmed(event: Mapping[str, Any]) -> dict[str, Any]:
    """``event`` with its short values only (ids, kinds, numbers, flags), marked ``"trimmed": True``:
    what a receiver needs to fetch the rest from the database."""
    kept = {key: value for key, value in event.items()
            if value is None or isinstance(value, bool | int | float)
            or (isinstance(value, str) and len(value) <= _ID_MAX)}
    kept["trimmed"] = True
    return kept


def encode(envelope: Mapping[str, Any], event: Mapping[str, Any], *, limit: int = NOTIFY_LIMIT) -> str:
    """``envelope`` with ``event`` under ``"e"`` as compact JSON of at most ``limit`` UTF-8 bytes: whole when
    it fits, else with the event ``trimmed``; raises ``EventTooLarge`` when not even that fits."""
    whole = json.dumps({**envelope, "e": dict(event)}, separators=(",", ":"), ensure_ascii=False)
    size = len(whole.encode())
    if size <= limit:
        return whole
    short = json.dumps({**envelope, "e": trimmed(event)}, separators=(",", ":"), ensure_ascii=False)
    if len(short.encode()) <= limit:
        log.warning("events: an event of %d bytes on channel %.60s is over the %d-byte limit: sent with its ids "
                    "only", size, envelope.get("c", "?"), limit)
        return short
    raise EventTooLarge(f"an event of {size} bytes does not fit the {limit}-byte limit of the event bus, "
                        f"even with its ids only ({len(short.encode())} bytes)")
