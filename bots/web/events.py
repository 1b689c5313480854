"""Each studio thread's event channel, and the server-sent-event stream a page listens to.

Events carry ids and short texts, never image bytes: the page fetches what changed from its own URL. They
travel on the storage's event bus (``core/events.py``, channel = the thread id): within the process on
SQLite, and to every replica on PostgreSQL, so a page open on one replica follows a job another runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from core.events import EventBus, LocalEventBus

__all__ = ["ThreadEvents", "stream"]

log = logging.getLogger(__name__)

#: A quiet stream sends a comment this often, so proxies and the browser keep it open.
KEEPALIVE_S: Final = 15.0
#: A page that stopped reading loses its oldest events past this (it re-renders on reconnect anyway).
_QUEUE_MAX: Final = 256


class ThreadEvents:
    """Publish to a thread; every page open on it receives, on whichever replica shares ``bus`` (a bus of
    this process only when none is given)."""

    def __init__(self, bus: EventBus | None = None) -> None:
        self._listeners: dict[str, set[asyncio.Queue[dict[str, Any] | None]]] = defaultdict(set)
        self.closed = False
        self.bus: EventBus = bus if bus is not None else LocalEventBus()
        self._unsubscribe = self.bus.subscribe(self._deliver)

    def publish(self, thread: str, event: dict[str, Any]) -> None:
        self.bus.publish(thread, event)

    def _deliver(self, thread: str, event: Mapping[str, Any]) -> None:
        item = event if isinstance(event, dict) else dict(event)
        for queue in tuple(self._listeners.get(thread, ())):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(item)

    @contextlib.contextmanager
    def listen(self, thread: str) -> Any:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(_QUEUE_MAX)
        self._listeners[thread].add(queue)
        try:
            yield queue
        finally:
            listeners = self._listeners.get(thread)
            if listeners is not None:
                listeners.discard(queue)
                if not listeners:
                    del self._listeners[thread]

    def close(self) -> None:
        """The server is stopping: every stream ends (the browser reconnects to the next run). Events
        published afterwards (jobs finishing in the grace period) still go out on the bus."""
        self.closed = True
        self._unsubscribe()
        for listeners in self._listeners.values():
            for queue in listeners:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)


async def stream(request: web.Request, events: ThreadEvents, thread: str) -> web.StreamResponse:
    """``text/event-stream`` for one thread until the page goes away or the server stops."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    with events.listen(thread) as queue:
        await response.write(b"retry: 2000\n: connected\n\n")
        while not events.closed:
            try:
                event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if event is None:
                break
            try:
                await response.write(f"data: {json.dumps(event)}\n\n".encode())
            except ConnectionResetError:
                break
    return response
