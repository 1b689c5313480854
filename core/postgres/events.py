"""The event bus across the processes sharing one PostgreSQL database: ``LISTEN/NOTIFY`` on one channel.

Each process holds one dedicated connection (outside the stores' pool) that listens on ``pixbot_events``
and sends with ``SELECT pg_notify('pixbot_events', $1)``. A payload is compact JSON
``{"o": <this bus's id>, "c": <channel>, "e": <event>}`` under PostgreSQL's 8000-byte limit (an event over
it goes with its ids only, see ``core.events.encode``). What this process publishes reaches its own
subscribers at once, and its echo from PostgreSQL is recognised by the id and ignored, so each event
arrives once everywhere.

``publish`` never waits for the database: events wait in a bounded outbox, in order, for the sending task.
When the connection drops (a restarted server, a failover, ``pg_terminate_backend``) the bus says so once
in the log and reconnects with backoff; events published meanwhile are sent once it is back, and what other
processes published meanwhile is missed (pages re-render from the database on their next event or reload).
A connection that stays silent is checked every ``keepalive_s``, so a half-open one is noticed too."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final

import asyncpg

from core.events import NOTIFY_LIMIT, EventTooLarge, Handler, Subscribers, encode
from core.postgres.pool import DB_ERRORS

__all__ = ["CHANNEL", "PostgresEventBus"]

log = logging.getLogger(__name__)

#: The one PostgreSQL notification channel every pixbot process listens on.
CHANNEL: Final = "pixbot_events"
#: Events kept while the connection is down; past this the oldest go (their pages catch up on reload).
OUTBOX_MAX: Final = 1000
#: How long ``close`` lets queued events go out before it stops.
FLUSH_S: Final = 2.0
_CONNECT_TIMEOUT_S: Final = 10.0
_ERRORS: Final = (*DB_ERRORS, TimeoutError)
#: Tries (each on a fresh connection) before an event that keeps failing is dropped.
_SEND_ATTEMPTS: Final = 5


class PostgresEventBus:
    """An ``EventBus`` (``core/events.py``) over PostgreSQL ``LISTEN/NOTIFY``. ``await start()`` connects
    (retrying in the background if it cannot yet); ``await close()`` ends it."""

    def __init__(self, url: str, *, origin: str | None = None, limit: int = NOTIFY_LIMIT,
                 keepalive_s: float = 15.0, backoff: tuple[float, float] = (0.2, 10.0),
                 outbox_max: int = OUTBOX_MAX) -> None:
        self._url = url
        #: This bus's tag on what it sends: its own events come back from PostgreSQL and are ignored.
        self.origin = origin or secrets.token_hex(8)
        self._limit = limit
        self._keepalive_s = keepalive_s
        self._backoff = backoff
        self._subscribers = Subscribers()
        self._outbox: deque[str] = deque(maxlen=outbox_max)
        self._queued = asyncio.Event()
        self._sent = asyncio.Event()
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._lock = asyncio.Lock()  # one statement at a time on the connection
        self._conn: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._dropped = 0
        self._started = self._closed = False
        #: Times the connection was re-established after a loss (for tests and diagnostics).
        self.reconnects = 0

    # -- EventBus --------------------------------------------------------------------------------
    def publish(self, channel: str, event: Mapping[str, Any]) -> None:
        self._subscribers.deliver(channel, event)
        if self._closed:
            return
        try:
            payload = encode({"o": self.origin, "c": channel}, event, limit=self._limit)
        except EventTooLarge as exc:
            log.error("events: not sent to the other processes (channel %.60s): %s", channel, exc)
            return
        if len(self._outbox) == self._outbox.maxlen:
            if not self._dropped:
                log.warning("events: %d events wait for the database; the oldest are dropped", len(self._outbox))
            self._dropped += 1
        self._outbox.append(payload)
        self._sent.clear()
        self._queued.set()

    def subscribe(self, handler: Handler) -> Callable[[], None]:
        return self._subscribers.add(handler)

    async def start(self) -> None:
        """Connect and listen; when the database cannot be reached yet, keep trying in the background."""
        if self._started or self._closed:
            return
        self._started = True
        try:
            await self._connect()
        except _ERRORS as exc:
            log.warning("events: cannot listen to PostgreSQL yet (%s: %s); retrying. Live progress from other "
                        "processes waits until then.", type(exc).__name__, exc)
        self._tasks = [asyncio.create_task(self._supervise(), name="events:listen"),
                       asyncio.create_task(self._send(), name="events:send")]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._outbox and self._connected.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sent.wait(), FLUSH_S)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        conn, self._conn = self._conn, None
        self._connected.clear()
        if conn is not None:
            try:
                await conn.close(timeout=FLUSH_S)
            except Exception:
                conn.terminate()

    # -- state, for tests and diagnostics ------------------------------------------------------------
    @property
    def listening(self) -> bool:
        return self._connected.is_set()

    async def wait_listening(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        await asyncio.wait_for(self._connected.wait(), timeout)

    @property
    def backend_pid(self) -> int | None:
        """The server process of the listening connection (``pg_terminate_backend`` it to test a drop)."""
        return None if self._conn is None else int(self._conn.get_server_pid())

    # -- the connection ----------------------------------------------------------------------------
    async def _connect(self) -> None:
        conn = await asyncpg.connect(self._url, timeout=_CONNECT_TIMEOUT_S,
                                     server_settings={"application_name": "pixbot events"})
        try:
            await conn.add_listener(CHANNEL, self._received)
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._terminated)
        self._conn = conn
        self._lost.clear()
        self._connected.set()

    def _terminated(self, conn: Any) -> None:
        self._mark_lost(conn, "the connection closed")

    def _mark_lost(self, conn: Any, reason: str) -> None:
        if conn is None or conn is not self._conn:
            return
        if not self._closed:
            log.warning("events: lost the LISTEN connection to PostgreSQL (%s); reconnecting. Live progress "
                        "from other processes is missed until then.", reason)
        self._conn = None
        self._connected.clear()
        self._lost.set()
        conn.terminate()

    async def _supervise(self) -> None:
        """Reconnect whenever the connection is lost; check a quiet one every ``keepalive_s``."""
        while True:
            if self._conn is None:
                await self._reconnect()
            conn = self._conn
            if conn is None:
                continue
            try:
                await asyncio.wait_for(self._lost.wait(), self._keepalive_s)
                continue
            except TimeoutError:
                pass
            try:
                async with self._lock:
                    await conn.fetchval("SELECT 1", timeout=self._keepalive_s)
            except Exception as exc:  # lost, timed out, or a protocol state we cannot trust: start afresh
                self._mark_lost(conn, f"{type(exc).__name__}: {exc}")

    async def _reconnect(self) -> None:
        delay, longest = self._backoff
        attempts = 0
        while True:
            attempts += 1
            try:
                await self._connect()
            except Exception as exc:  # an unreachable server, one starting up or shutting down: try again
                log.debug("events: reconnecting failed (attempt %d): %s: %s", attempts, type(exc).__name__, exc)
            else:
                self.reconnects += 1
                log.info("events: listening to PostgreSQL again (after %d attempt(s))", attempts)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)

    def _received(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            origin, target, event = message["o"], message["c"], message["e"]
        except (ValueError, TypeError, KeyError) as exc:
            log.debug("events: ignored a notification that is not pixbot's: %s", exc)
            return
        if origin == self.origin or not isinstance(target, str) or not isinstance(event, dict):
            return  # our own echo (delivered here already), or not an event
        self._subscribers.deliver(target, event)

    async def _send(self) -> None:
        """Send the outbox in order; a payload waits while the connection is down."""
        failures = 0
        while True:
            if not self._outbox:
                self._dropped = 0
                self._sent.set()
                self._queued.clear()
                await self._queued.wait()
                continue
            await self._connected.wait()
            conn, payload = self._conn, self._outbox[0]
            try:
                async with self._lock:
                    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
            except Exception as exc:  # the sending task must outlive any failure
                failures += 1
                reason = f"{type(exc).__name__}: {exc}"
                if _refused(exc, conn):
                    log.error("events: PostgreSQL refused an event (%s); dropped", reason)
                elif failures < _SEND_ATTEMPTS:
                    self._mark_lost(conn, reason)  # a dropped connection (or one in a state we cannot trust)
                    continue  # sent once the connection is back
                else:
                    log.error("events: an event failed %d times (%s); dropped", failures, reason)
            failures = 0
            if self._outbox and self._outbox[0] is payload:
                self._outbox.popleft()


def _refused(exc: Exception, conn: Any) -> bool:
    """The server answered "no" to this statement on a healthy connection (not a shutdown or a lost link)."""
    state = getattr(exc, "sqlstate", None) or ""
    return (isinstance(exc, asyncpg.PostgresError) and not conn.is_closed()
            and not state.startswith(("08", "57")))  # connection exceptions, operator intervention
