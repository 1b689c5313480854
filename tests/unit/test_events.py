"""The event buses (core/events.py): this process's own, and PostgreSQL ``LISTEN/NOTIFY`` between processes
(core/postgres/events.py) against a real throwaway server: delivery to the other bus, the own echo ignored,
payloads over NOTIFY's limit, a dropped LISTEN connection, and the studio's ``ThreadEvents`` on top."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bots.web.events import ThreadEvents
from core.config import AppConfig
from core.engines import open_storage
from core.events import NOTIFY_LIMIT, EventBus, EventTooLarge, LocalEventBus, encode, trimmed
from core.postgres.events import PostgresEventBus
from tests.storage.postgres_server import postgres_server as postgres_server  # the fixtures
from tests.storage.postgres_server import postgres_url as postgres_url

Received = list[tuple[str, dict[str, Any]]]


def collect(bus: EventBus) -> Received:
    received: Received = []

    def handler(channel: str, event: Mapping[str, Any]) -> None:
        received.append((channel, dict(event)))

    bus.subscribe(handler)
    return received


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


# -- this process's bus -------------------------------------------------------------------------------
async def test_the_local_bus_delivers_at_once_to_every_subscriber_until_it_unsubscribes() -> None:
    bus = LocalEventBus()
    assert isinstance(bus, EventBus)
    first, second = collect(bus), []
    stop = bus.subscribe(lambda channel, event: second.append((channel, dict(event))))
    bus.publish("t1", {"type": "job", "job": "j1"})
    assert first == second == [("t1", {"type": "job", "job": "j1"})]  # before publish returned
    stop()
    stop()  # twice is harmless
    bus.publish("t2", {"type": "done", "job": "j1"})
    assert len(first) == 2 and len(second) == 1
    await bus.start()
    await bus.close()


async def test_a_failing_subscriber_is_logged_and_the_others_still_receive(caplog: pytest.LogCaptureFixture) -> None:
    bus = LocalEventBus()

    def broken(channel: str, event: Mapping[str, Any]) -> None:
        raise RuntimeError("boom")

    bus.subscribe(broken)
    received = collect(bus)
    with caplog.at_level(logging.ERROR, logger="core.events"):
        bus.publish("t1", {"type": "job"})  # never raises to the publisher
    assert received == [("t1", {"type": "job"})]
    assert "a subscriber failed" in caplog.text


def test_an_event_over_the_limit_goes_with_its_ids_only_or_is_refused_clearly() -> None:
    event = {"type": "notice", "job": "a" * 32, "request": None, "n": 3, "text": "x" * 9000}
    payload = encode({"o": "me", "c": "t1"}, event)
    assert len(payload.encode()) <= NOTIFY_LIMIT < 8000
    assert '"text"' not in payload and '"trimmed":true' in payload and "a" * 32 in payload
    assert trimmed(event) == {"type": "notice", "job": "a" * 32, "request": None, "n": 3, "trimmed": True}
    small = {"type": "job", "job": "j1", "text": "é" * 100}
    assert encode({"o": "me", "c": "t1"}, small) == '{"o":"me","c":"t1","e":{"type":"job","job":"j1","text":"' + \
        "é" * 100 + '"}}'
    # The limit is in UTF-8 bytes, not characters.
    assert '"trimmed"' in encode({"o": "me", "c": "t1"}, {"type": "said", "text": "é" * 4000})
    with pytest.raises(EventTooLarge, match="does not fit the 7999-byte limit"):
        encode({"o": "me", "c": "t" * 9000}, {"type": "job"})


async def test_thread_events_on_the_local_bus_reach_only_that_threads_listeners() -> None:
    bus = LocalEventBus()
    events = ThreadEvents(bus)
    with events.listen("t1") as queue, events.listen("t2") as other:
        events.publish("t1", {"type": "job", "job": "j1"})
        bus.publish("t1", {"type": "done", "job": "j1"})  # whoever publishes on the bus
        assert queue.get_nowait() == {"type": "job", "job": "j1"}
        assert queue.get_nowait() == {"type": "done", "job": "j1"}
        assert other.empty()
        events.close()
        assert queue.get_nowait() is None
        events.publish("t1", {"type": "job", "job": "j2"})  # after close: no longer delivered here
        assert queue.empty()
    assert isinstance(ThreadEvents().bus, LocalEventBus)  # the default


async def test_sqlite_storage_has_a_local_bus(tmp_path: Path) -> None:
    async with open_storage(AppConfig(storage={"dataDir": str(tmp_path)})) as storage:
        assert isinstance(storage.events, LocalEventBus)


# -- PostgreSQL ----------------------------------------------------------------------------------------
@pytest.fixture
async def buses(postgres_url: str) -> AsyncIterator[Callable[..., Any]]:
    opened: list[PostgresEventBus] = []

    async def open_bus(**options: Any) -> PostgresEventBus:
        bus = PostgresEventBus(postgres_url, **{"keepalive_s": 1.0, "backoff": (0.05, 0.2), **options})
        await bus.start()
        opened.append(bus)
        return bus

    yield open_bus
    for bus in opened:
        await bus.close()


async def _terminate(url: str, pid: int | None) -> None:
    assert pid is not None
    admin = await asyncpg.connect(url)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


async def test_an_event_published_on_one_process_reaches_the_other_and_its_own_once(
        buses: Callable[..., Any]) -> None:
    a, b = await buses(), await buses()
    assert a.listening and b.listening and a.origin != b.origin
    on_a, on_b = collect(a), collect(b)
    a.publish("thread-1", {"type": "job", "job": "j1", "request": "r1"})
    assert on_a == [("thread-1", {"type": "job", "job": "j1", "request": "r1"})]  # at once, locally
    await until(lambda: len(on_b) == 1)
    assert on_b == [("thread-1", {"type": "job", "job": "j1", "request": "r1"})]
    a.publish("thread-1", {"type": "done", "job": "j1", "request": "r1"})
    await until(lambda: len(on_b) == 2)
    # B's marker is sent after A's events reached the database, so A hears any echo of its own before it.
    b.publish("thread-2", {"type": "marker"})
    await until(lambda: ("thread-2", {"type": "marker"}) in on_a)
    assert [event["type"] for _, event in on_a] == ["job", "done", "marker"]  # no echo
    assert [event["type"] for _, event in on_b] == ["job", "done", "marker"]  # in order, B's own once


async def test_an_event_over_notifys_limit_reaches_the_other_process_with_its_ids_only(
        buses: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    a, b = await buses(), await buses()
    on_a, on_b = collect(a), collect(b)
    big = {"type": "notice", "job": "j1", "request": "r1", "text": "ü" * 6000}
    with caplog.at_level(logging.WARNING):
        a.publish("thread-1", big)
        a.publish("t" * 9000, {"type": "job", "job": "j2"})  # does not fit at all: refused, logged
    assert on_a[0] == ("thread-1", big) and on_a[1][0] == "t" * 9000  # here, whole
    assert "sent with its ids only" in caplog.text
    assert "not sent to the other processes" in caplog.text and "even with its ids only" in caplog.text
    a.publish("thread-1", {"type": "marker"})
    await until(lambda: len(on_b) == 2)
    assert on_b == [("thread-1", {"type": "notice", "job": "j1", "request": "r1", "trimmed": True}),
                    ("thread-1", {"type": "marker"})]


async def test_a_dropped_listen_connection_reconnects_and_says_so_once(
        buses: Callable[..., Any], postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    a, b = await buses(), await buses()
    on_b = collect(b)
    with caplog.at_level(logging.INFO, logger="core.postgres.events"):
        old_pid = b.backend_pid
        await _terminate(postgres_url, old_pid)
        await until(lambda: b.reconnects == 1 and b.listening)
        assert b.backend_pid != old_pid
        a.publish("thread-1", {"type": "job", "job": "j1"})
        await until(lambda: len(on_b) == 1)
        # The sender's connection drops: what it publishes meanwhile goes out once it is back.
        await _terminate(postgres_url, a.backend_pid)
        a.publish("thread-1", {"type": "done", "job": "j1"})
        await until(lambda: len(on_b) == 2)
        assert on_b == [("thread-1", {"type": "job", "job": "j1"}), ("thread-1", {"type": "done", "job": "j1"})]
        await until(lambda: a.reconnects == 1)
    lost = [r for r in caplog.records if "lost the LISTEN connection" in r.getMessage()]
    assert len(lost) == 2 and all(r.levelno == logging.WARNING for r in lost)  # once per drop, per bus
    assert sum("listening to PostgreSQL again" in r.getMessage() for r in caplog.records) == 2


async def test_a_bus_that_cannot_connect_yet_keeps_trying_without_failing_its_process(
        caplog: pytest.LogCaptureFixture) -> None:
    bus = PostgresEventBus("postgresql://nobody@127.0.0.1:9/none", backoff=(0.05, 0.1))
    with caplog.at_level(logging.WARNING, logger="core.postgres.events"):
        await bus.start()
    assert not bus.listening and "cannot listen to PostgreSQL yet" in caplog.text
    received = collect(bus)
    bus.publish("t1", {"type": "job"})
    assert received == [("t1", {"type": "job"})]  # still delivered here
    await asyncio.sleep(0.2)
    await bus.close()
    await bus.close()


async def test_postgres_storage_has_a_bus_shared_by_its_processes(tmp_path: Path, postgres_url: str) -> None:
    config = AppConfig(storage={"dataDir": str(tmp_path), "databaseUrl": postgres_url})
    async with open_storage(config) as one, open_storage(config) as two:
        assert isinstance(one.events, PostgresEventBus) and one.events.listening
        heard = ThreadEvents(two.events)
        with heard.listen("thread-1") as queue:
            ThreadEvents(one.events).publish("thread-1", {"type": "job", "job": "j1", "request": None})
            assert await asyncio.wait_for(queue.get(), 10) == {"type": "job", "job": "j1", "request": None}
        bus = one.events
    assert not bus.listening  # closed with the storage
