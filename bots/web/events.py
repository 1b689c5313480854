"""Each studio thread's event channel, and the server-sent-event stream a page listens to.

Events carry ids and short texts, never image bytes: the page fetches what changed from its own URL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from typing import Any, Final

from aiohttp import web

__all__ = ["ThreadEvents", "stream"]

log = logging.getLogger(__name__)

#: A quiet stream sends a comment this often, so proxies and the browser keep it open.
KEEPALIVE_S: Final = 15.0
#: A page that stopped reading loses its oldest events past this (it re-renders on reconnect anyway).
_QUEUE_MAX: Final = 256


class ThreadEvents:
    """Publish to a thread; every page open on it receives. In-process: each replica's pages hear the
    jobs that replica runs."""

    def __init__(self) -> None:
        self._listeners: dict[str, set[asyncio.Queue[dict[str, Any] | None]]] = defaultdict(set)
        self.closed = False

    def publish(self, thread: str, event: dict[str, Any]) -> None:
        for queue in tuple(self._listeners.get(thread, ())):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)

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
        """The server is stopping: every stream ends (the browser reconnects to the next run)."""
        self.closed = True
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
