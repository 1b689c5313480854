"""The ``scale`` benchmark's part 3 (see ``bench/bench_scale.py``): takeover after ``kill -9``.

(a) An API replica's held job settled by a surviving replica; (b) a standby ``pixbot run`` taking over
Telegram long polling. Seconds from the kill, on PostgreSQL and SQLite side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bench.common import BenchError, pixbot_config, progress
from bench.scale_fleet import START_S, api_config, database, open_fleet

__all__ = ["JOB_BOUND_S", "POLLER_BOUND_S", "takeovers"]

JOB_SAMPLES = {"postgresql": 1, "sqlite": 1}
POLLER_SAMPLES = {"postgresql": 2, "sqlite": 2}
JOB_BOUND_S = 30.0
POLLER_BOUND_S = 10.0
_POLL_S = 0.05


def _status_reader(engine: str, url: str | None, data_dir: Path) -> Callable[[str], Awaitable[str | None]]:
    """``read(prompt)``: the status of that prompt's job, read as another process would."""
    if engine == "postgresql":
        async def read_pg(prompt: str) -> str | None:
            import asyncpg

            conn = await asyncpg.connect(url)
            try:
                return await conn.fetchval("SELECT status FROM jobs WHERE prompt = $1", prompt)
            finally:
                await conn.close()

        return read_pg

    def read_file(prompt: str) -> str | None:
        path = data_dir / "pixbot.db"
        if not path.exists():
            return None
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
            row = db.execute("SELECT status FROM jobs WHERE prompt = ?", (prompt,)).fetchone()
        return None if row is None else str(row[0])

    async def read_sqlite(prompt: str) -> str | None:
        return read_file(prompt)

    return read_sqlite


async def _poll_status(read: Callable[[str], Awaitable[str | None]], prompt: str, leave: str | None,
                       timeout: float) -> str | None:  # noqa: ASYNC109
    """Every 50 ms until the status is no longer ``leave`` (None: until the job exists); the new status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await read(prompt)
        if status is not None and status != leave:
            return status
        await asyncio.sleep(_POLL_S)
    raise BenchError(f"job {prompt!r} still {leave or 'absent'} after {timeout:.0f} s")


async def _job_takeover(engine: str, url: str | None, root: Path, samples: int) -> list[tuple[float, str]]:
    from tests.fakes.fake_provider import FakeProvider

    results: list[tuple[float, str]] = []
    data_dir = root / "data"
    read = _status_reader(engine, url, data_dir)
    async with FakeProvider() as provider, open_fleet(root) as fleet, httpx.AsyncClient(timeout=120) as client:
        provider.hold()  # every provider call waits: the job stays "generating" until its process dies
        config = api_config(provider.api_base("custom"), data_dir, url)
        names = iter(f"{engine}-api-{i}" for i in range(samples + 1))
        running = await fleet.start(next(names), config, "serve", "--port", "0")
        running_url = await running.api_url()
        survivor = await fleet.start(next(names), config, "serve", "--port", "0")
        survivor_url = await survivor.api_url()
        try:
            for sample in range(samples):
                prompt = f"a held fox {engine} {sample}"
                request = asyncio.create_task(client.post(f"{running_url}/v1/images/generations",
                                                          json={"prompt": prompt, "n": 1, "user": "taker"}))
                await _poll_status(read, prompt, None, 30)
                await provider.wait_for_requests(sample + 1, timeout=30, path_suffix="/images/generations")
                killed = time.perf_counter()
                await running.kill()
                status = await _poll_status(read, prompt, "generating", 3 * JOB_BOUND_S)
                results.append((time.perf_counter() - killed, status))
                with contextlib.suppress(httpx.HTTPError):
                    await request  # the killed replica's connection drops
                progress(f"scale: {engine} API job settled by the survivor in {results[-1][0]:.2f} s ({status})")
                if sample + 1 < samples:  # the survivor runs the next job; a new replica survives it
                    running, running_url = survivor, survivor_url
                    survivor = await fleet.start(next(names), config, "serve", "--port", "0")
                    survivor_url = await survivor.api_url()
        finally:
            provider.release()
    return results


async def _poller_takeover(engine: str, url: str | None, root: Path, samples: int) -> list[float]:
    from tests.fakes.fake_provider import FakeProvider
    from tests.fakes.fake_telegram import FakeTelegramServer

    results: list[float] = []
    async with FakeProvider() as provider, FakeTelegramServer() as telegram, open_fleet(root) as fleet:
        config = pixbot_config(provider.api_base("custom"), root / "data")
        config["bots"] = {"web": {"enabled": False},
                          "telegram": {"token": telegram.token, "apiBase": telegram.base_url}}
        if url:
            config["storage"]["databaseUrl"] = url
        names = iter(f"{engine}-tg-{i}" for i in range(samples + 1))
        poller = await fleet.start(next(names), config, "run")
        await poller.wait_for("telegram: logged in")
        await telegram.wait_until(lambda: telegram.polls_waiting >= 1, timeout=START_S, what="the first poll")
        for _ in range(samples):
            standby = await fleet.start(next(names), config, "run")
            await standby.wait_for("another process polls this bot; standing by")
            await telegram.wait_until(lambda: telegram.polls_waiting >= 1, timeout=START_S, what="a poll")
            handovers = len(telegram.calls_of("deleteWebhook"))  # a poller's first call (the dead one makes none)
            killed = time.perf_counter()
            await poller.kill()
            await telegram.wait_until(
                lambda h=handovers: telegram.polls_waiting >= 1 and len(telegram.calls_of("deleteWebhook")) > h,
                timeout=3 * POLLER_BOUND_S, what="the standby's long poll")
            results.append(time.perf_counter() - killed)
            progress(f"scale: {engine} Telegram standby polls {results[-1]:.2f} s after the kill")
            poller = standby
    return results


async def takeovers(pg: Any, root: Path) -> dict[str, dict[str, Any]]:
    """Both engines at once (each on its own fakes, database and data dir): the measured times are set by
    the survivors' timers (seconds), not by CPU, and waiting for them one engine after the other would
    double this part."""

    async def one_engine(engine: str) -> dict[str, Any]:
        async with contextlib.AsyncExitStack() as stack:
            url = await stack.enter_async_context(database(pg)) if engine == "postgresql" else None
            jobs = await _job_takeover(engine, url, root / f"{engine}-api", JOB_SAMPLES[engine])
        async with contextlib.AsyncExitStack() as stack:
            url = await stack.enter_async_context(database(pg)) if engine == "postgresql" else None
            polls = await _poller_takeover(engine, url, root / f"{engine}-tg", POLLER_SAMPLES[engine])
        return {"jobs": jobs, "poller": polls}

    engines = ["postgresql", "sqlite"] if pg is not None else ["sqlite"]
    return dict(zip(engines, await asyncio.gather(*(one_engine(e) for e in engines)), strict=True))
