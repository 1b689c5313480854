"""Benchmark ``scale``: several pixbot processes on one state (docs/scaling.md), in three parts.

1. **Throughput across API replicas.** 1, 2 and 4 ``pixbot serve --port 0`` processes on one PostgreSQL
   database and one data dir, against the fake provider (its own process) answering after 500 ms. One
   httpx client keeps 64 requests in flight, round-robin over the replicas, for 150 requests (one image
   each). Twice: ``limits.concurrency`` 8 per process and no shared limit (the rate should grow with the
   replicas), and with ``limits.globalConcurrency`` 8 as well (the rate should stay at the shared cap,
   8 / 0.5 s = 16 images/s, whatever the replica count). The provider calls in flight are the rate × 0.5 s
   (Little's law), since the fake answers every call after exactly that long.
2. **Per-job state overhead, SQLite vs PostgreSQL.** In this process, the store calls one delivered job
   of two images makes (``jobs.create`` → ``add_artifacts`` ×2 → ``complete_job`` → ``state.map_messages``
   + ``jobs.deliver`` → ``state.try_consume``), on each engine, alternating blocks so that drift hits both;
   median ms per job after a warm-up, and per call.
3. **Takeover after ``kill -9``.** (a) A job running on API replica A (the provider holds its call) is
   settled by replica B: seconds from the kill until its status leaves "generating" in the database
   (polled every 50 ms). (b) Telegram long polling, two ``pixbot run`` (leader and standby, web off)
   against the fake Telegram: seconds from the kill of the poller until the standby's long poll arrives.
   Each on PostgreSQL and SQLite (the two run side by side), against the documented bounds (jobs within
   30 s, the poller within 10 s).

Without PostgreSQL's server binaries (``apt-get install postgresql``) the PostgreSQL rows are skipped with
a note. The Row columns: part 1 "nanobot" = 1 replica; part 2 "pixbot" = PostgreSQL, "nanobot" = SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import signal
import sqlite3
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    MODEL,
    PROMPT,
    BenchError,
    Benchmark,
    FakeServer,
    Row,
    fmt,
    markdown_table,
    pixbot_cli,
    pixbot_config,
    progress,
    scratch_dir,
)

__all__ = ["BENCHMARK", "run"]

# Part 1
REPLICAS = (1, 2, 4)
LATENCY_MS = 500
IN_FLIGHT = 64
REQUESTS = 150
PER_PROCESS = 8
GLOBAL = 8
SCALING_GOAL = 0.75  # N replicas without a shared limit: at least this × N × the 1-replica rate
FLAT_BAND = (0.8, 1.2)  # with the shared limit: N replicas within this × the 1-replica rate
# Part 2
STATE_JOBS = 300
STATE_WARMUP = 30
STATE_BLOCK = 50
STATE_USERS = 30
STATE_GOAL_MS = 20.0
# Part 3
JOB_SAMPLES = {"postgresql": 1, "sqlite": 1}
POLLER_SAMPLES = {"postgresql": 2, "sqlite": 2}
JOB_BOUND_S = 30.0
POLLER_BOUND_S = 10.0
_POLL_S = 0.05
_START_S = 60.0
_STOP_S = 15.0

_NOTE_NO_PG = "skipped: no PostgreSQL server binaries (apt-get install postgresql)"


# --- processes ------------------------------------------------------------------------------------


@dataclass
class Proc:
    """One ``pixbot`` subprocess with its stderr collected line by line."""

    name: str
    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def wait_for(self, text: str, timeout: float = _START_S) -> str:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for line in self.lines[seen:]:
                if text in line:
                    return line
            seen = len(self.lines)
            if self.process.returncode is not None:
                break
            await asyncio.sleep(0.02)
        raise BenchError(f"{self.name}: no {text!r} in its log:\n" + "".join(self.lines[-30:]))

    async def api_url(self) -> str:
        """The base URL from "pixbot API listening on http://…/v1"."""
        line = await self.wait_for("pixbot API listening on ")
        return line.rsplit("listening on ", 1)[1].split()[0].removesuffix("/v1")

    async def kill(self) -> None:
        """kill -9, and reap it (a zombie counts as gone too, but leave none behind)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
        await self.process.wait()


class Fleet:
    """The pixbot processes of one case; ``stop()`` ends every one still running (SIGTERM, then SIGKILL)."""

    def __init__(self, root: Path) -> None:
        from tests.e2e.cli_support import clean_env

        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.env = clean_env(root)  # no bot tokens, provider keys or PIXBOT_* from the caller's environment
        self.procs: list[Proc] = []

    async def start(self, name: str, config: dict[str, Any], *args: str) -> Proc:
        path = self.root / f"{name}.json"
        path.write_text(json.dumps(config))
        process = await asyncio.create_subprocess_exec(
            *pixbot_cli(), *args, "--config", str(path), cwd=self.root, env=self.env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        proc = Proc(name, process)

        async def read() -> None:
            assert process.stderr is not None
            while line := await process.stderr.readline():
                proc.lines.append(line.decode(errors="replace"))

        proc.reader = asyncio.create_task(read())
        self.procs.append(proc)
        return proc

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.process.returncode is None:
                proc.process.send_signal(signal.SIGTERM)
        for proc in self.procs:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.process.wait(), _STOP_S)
            await proc.kill()
            if proc.reader is not None:
                await proc.reader


@contextlib.asynccontextmanager
async def _fleet(root: Path) -> AsyncIterator[Fleet]:
    fleet = Fleet(root)
    try:
        yield fleet
    finally:
        await fleet.stop()


@contextlib.asynccontextmanager
async def _database(pg: Any) -> AsyncIterator[str]:
    """A fresh PostgreSQL database on the benchmark's server; its URL."""
    name = await pg.create_database()
    try:
        yield pg.url(name)
    finally:
        await pg.drop_database(name)


def _api_config(api_base: str, data_dir: Path, url: str | None) -> dict[str, Any]:
    config = pixbot_config(api_base, data_dir)
    config["bots"] = {"api": {"enabled": True, "host": "127.0.0.1", "port": 0}}
    if url:
        config["storage"]["databaseUrl"] = url
    return config


# --- part 1: images/s across API replicas ---------------------------------------------------------


def _has_global_limit() -> bool:
    from core.config import LimitsConfig

    return "global_concurrency" in LimitsConfig.model_fields


async def _drive(urls: list[str]) -> float:
    """REQUESTS requests, IN_FLIGHT at a time, request i to replica i mod N; images per second."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(REQUESTS):
        queue.put_nowait(index)
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def one(url: str, index: int) -> None:
            response = await client.post(f"{url}/v1/images/generations",
                                         json={"model": MODEL, "prompt": PROMPT, "n": 1, "user": f"u{index}"})
            if response.status_code != 200 or not response.json()["data"][0].get("b64_json"):
                raise BenchError(f"{url} answered {response.status_code}: {response.text[:300]}")

        async def worker() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                await one(urls[index % len(urls)], index)

        await asyncio.gather(*(one(url, -1 - i) for i, url in enumerate(urls)))  # warm-up, one per replica
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        return REQUESTS / (time.perf_counter() - started)


async def _throughput_variant(pg: Any, api_base: str, root: Path, shared: bool) -> dict[int, float]:
    """One variant: the most replicas started once; 1, 2, then 4 of them driven (the rest stay idle)."""
    rates: dict[int, float] = {}
    async with _database(pg) as url, _fleet(root) as fleet:
        config = _api_config(api_base, root / "data", url)
        config["limits"]["concurrency"] = PER_PROCESS
        if shared:
            config["limits"]["globalConcurrency"] = GLOBAL
        first = await fleet.start("r1", config, "serve", "--port", "0")
        urls = [await first.api_url()]  # the first migrates and records the data dir's identity alone
        others = [await fleet.start(f"r{i}", config, "serve", "--port", "0") for i in range(2, max(REPLICAS) + 1)]
        urls += await asyncio.gather(*(proc.api_url() for proc in others))
        for count in REPLICAS:
            rates[count] = await _drive(urls[:count])
            progress(f"scale: {count} replica(s), {'global limit' if shared else 'per-process limit'}: "
                     f"{rates[count]:.1f} images/s")
    return rates


async def _throughput(pg: Any, root: Path) -> dict[str, dict[int, float]]:
    variants = {"per-process": False}
    if _has_global_limit():
        variants["global"] = True
    results: dict[str, dict[int, float]] = {}
    with FakeServer(latency_ms=LATENCY_MS) as fake:
        for name, shared in variants.items():
            results[name] = await _throughput_variant(pg, fake.api_base(), root / name, shared)
    return results


def _part_throughput(pg: Any, rows: list[Row]) -> None:
    progress(f"scale: API replicas on PostgreSQL, provider latency {LATENCY_MS} ms, {IN_FLIGHT} in flight, "
             f"{REQUESTS} requests")
    cap = GLOBAL / (LATENCY_MS / 1000)
    if pg is None:
        rows.append(Row("scale", "images/s across API replicas (PostgreSQL)", "images/s", note=_NOTE_NO_PG))
        return
    with scratch_dir("scale-api") as tmp:
        results = asyncio.run(_throughput(pg, Path(tmp)))
    table = []
    for name, rates in results.items():
        base = rates[1]
        limit = (f"concurrency {PER_PROCESS}/process" if name == "per-process"
                 else f"concurrency {PER_PROCESS}/process, globalConcurrency {GLOBAL}")
        for count, rate in rates.items():
            ideal = (GLOBAL if name == "global" else count * PER_PROCESS) / (LATENCY_MS / 1000)
            table.append([limit, count, rate, rate / base, rate * LATENCY_MS / 1000, ideal])
            if name == "per-process":
                goal = f"≥ {SCALING_GOAL} × {count} × 1 replica" if count > 1 else ""
                met = rate / base >= SCALING_GOAL * count if count > 1 else None
            else:
                goal = f"{FLAT_BAND[0]}–{FLAT_BAND[1]} × 1 replica, ≤ {1.1 * cap:.1f}/s" if count > 1 else \
                    f"≤ {1.1 * cap:.1f}/s (cap {GLOBAL} / {LATENCY_MS / 1000:g} s)"
                met = rate <= 1.1 * cap and (count == 1 or FLAT_BAND[0] <= rate / base <= FLAT_BAND[1])
            rows.append(Row("scale", f"images/s, {count} API replica(s), {limit}", "images/s",
                            pixbot=rate, nanobot=base if count > 1 else None, goal=goal, met=met,
                            note="PostgreSQL; 'nanobot' column = 1 replica" if count > 1 else "PostgreSQL",
                            extra={"replicas": count, "latency_ms": LATENCY_MS, "in_flight": IN_FLIGHT,
                                   "requests": REQUESTS, "provider_calls_in_flight": rate * LATENCY_MS / 1000}))
    if "global" not in results:
        rows.append(Row("scale", f"images/s across API replicas, globalConcurrency {GLOBAL}", "images/s",
                        note="not available: core.config.LimitsConfig has no global_concurrency"))
    print(f"\n### scale — images/s through 1, 2, 4 `pixbot serve` replicas (PostgreSQL, one data dir; provider "
          f"latency {LATENCY_MS} ms; {IN_FLIGHT} requests in flight round-robin; {REQUESTS} requests)\n")
    print(markdown_table(["limit", "replicas", "images/s", "× 1 replica",
                          f"provider calls in flight (rate × {LATENCY_MS / 1000:g} s)", "ideal images/s"], table))


# --- part 2: per-job state overhead ---------------------------------------------------------------

_STEPS = ("create", "add_artifacts ×2", "complete_job", "map_messages + deliver", "try_consume")


def _artifact(job_id: str, chat_key: str, index: int) -> Any:
    import secrets

    from core.db import utc_timestamp
    from core.models import Artifact

    artifact_id = f"img_{secrets.token_hex(6)}"
    return Artifact(id=artifact_id, path=f"2026-01-01/{artifact_id}.png", mime="image/png", prompt=PROMPT,
                    model=MODEL, provider="custom", source_images=(), created_at=utc_timestamp(),
                    job_id=job_id, chat=chat_key, width=1024, height=1024, bytes=1_500_000 + index)


async def _one_job(state: Any, jobs: Any, index: int, owner: str, per_chat: bool) -> list[float]:
    """The store calls of one delivered two-image job; seconds per step."""
    chat_key, user_key = f"bench:{index % STATE_USERS}", f"bench:u{index % STATE_USERS}"
    request = {"prompt": PROMPT, "mode": "generate", "count": 2, "provider": "custom", "model": MODEL,
               "aspect_ratio": None, "size": None, "references": []}
    extra = {"max_running_per_chat": 2} if per_chat else {}
    marks = [time.perf_counter()]
    job = await jobs.create(chat_key=chat_key, user_key=user_key, prompt=PROMPT, requested=2, request=request,
                            origin={"message_id": index}, started=True, owner=owner, lease_s=30.0, **extra)
    marks.append(time.perf_counter())
    artifacts = [_artifact(job.id, chat_key, i) for i in range(2)]
    for artifact in artifacts:
        await jobs.add_artifacts(job.id, [artifact.id])
    marks.append(time.perf_counter())
    await jobs.complete_job(job.id, chat_key, artifacts)
    marks.append(time.perf_counter())
    await state.map_messages(chat_key, [(f"{index}-{i}", a.id) for i, a in enumerate(artifacts)])
    if not await jobs.deliver(job.id):
        raise BenchError(f"job {job.id} was not deliverable")
    marks.append(time.perf_counter())
    if await state.try_consume(user_key, 2, 50) is None:
        raise BenchError(f"quota refused for {user_key}")
    marks.append(time.perf_counter())
    return [b - a for a, b in itertools.pairwise(marks)]


async def _state_overhead(pg: Any, root: Path) -> tuple[dict[str, list[list[float]]], bool]:
    from core.jobs import JobLedger
    from core.owners import this_owner
    from core.state import ChatState, open_database

    per_chat = "max_running_per_chat" in inspect.signature(JobLedger.create).parameters
    owner = this_owner()
    samples: dict[str, list[list[float]]] = {"sqlite": []}
    async with contextlib.AsyncExitStack() as stack:
        db = await stack.enter_async_context(open_database(root / "pixbot.db"))
        engines: dict[str, tuple[Any, Any]] = {"sqlite": (ChatState(db), JobLedger(db))}
        if pg is not None:
            from core.postgres import open_postgres

            url = await stack.enter_async_context(_database(pg))
            stores = await stack.enter_async_context(open_postgres(url))
            engines["postgresql"] = (stores.state, stores.jobs)
            samples["postgresql"] = []
        counter = 0
        for state, jobs in engines.values():  # warm-up: connections, statement caches, pages
            for _ in range(STATE_WARMUP):
                await _one_job(state, jobs, counter, owner, per_chat)
                counter += 1
        for _ in range(STATE_JOBS // STATE_BLOCK):
            for name, (state, jobs) in engines.items():
                for _ in range(STATE_BLOCK):
                    samples[name].append(await _one_job(state, jobs, counter, owner, per_chat))
                    counter += 1
    return samples, per_chat


def _part_state(pg: Any, rows: list[Row]) -> None:
    progress(f"scale: per-job state overhead, {STATE_JOBS} jobs per engine")
    with scratch_dir("scale-state") as tmp:
        samples, per_chat = asyncio.run(_state_overhead(pg, Path(tmp)))
    medians = {name: {step: statistics.median(s[i] for s in runs) * 1000 for i, step in enumerate(_STEPS)}
               for name, runs in samples.items()}
    totals = {name: sorted(sum(s) * 1000 for s in runs) for name, runs in samples.items()}
    table = []
    for step in [*_STEPS, "whole job (median)", "whole job (p95)"]:
        values = {}
        for name in ("sqlite", "postgresql"):
            if name not in samples:
                values[name] = None
            elif step == "whole job (median)":
                values[name] = statistics.median(totals[name])
            elif step == "whole job (p95)":
                values[name] = totals[name][int(0.95 * (len(totals[name]) - 1))]
            else:
                values[name] = medians[name][step]
        ratio = values["postgresql"] / values["sqlite"] if values["postgresql"] and values["sqlite"] else None
        table.append([step, values["sqlite"], values["postgresql"], ratio])
    create = "create" + (" (max_running_per_chat=2)" if per_chat else "")
    print(f"\n### scale — per-job state overhead, ms (store calls of one delivered two-image job; median of "
          f"{STATE_JOBS} jobs per engine after {STATE_WARMUP} warm-up; in-process, PostgreSQL over loopback TCP)\n")
    print(markdown_table(["store calls", "SQLite (ms)", "PostgreSQL (ms)", "PG ÷ SQLite"],
                         [[create if r[0] == "create" else r[0], *r[1:]] for r in table]))
    sqlite_ms = statistics.median(totals["sqlite"])
    if "postgresql" not in samples:
        rows.append(Row("scale", "state overhead per job, SQLite", "ms", pixbot=sqlite_ms,
                        goal=f"≤ {STATE_GOAL_MS:g} ms", met=sqlite_ms <= STATE_GOAL_MS, note=_NOTE_NO_PG))
        return
    pg_ms = statistics.median(totals["postgresql"])
    rows.append(Row("scale", "state overhead per job: PostgreSQL vs SQLite", "ms", pixbot=pg_ms, nanobot=sqlite_ms,
                    goal=f"each ≤ {STATE_GOAL_MS:g} ms", met=max(pg_ms, sqlite_ms) <= STATE_GOAL_MS,
                    note="'pixbot' = PostgreSQL, 'nanobot' = SQLite; median ms per job",
                    extra={"steps_ms": medians, "jobs": STATE_JOBS}))


# --- part 3: takeover after kill -9 ---------------------------------------------------------------


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
    async with FakeProvider() as provider, _fleet(root) as fleet, httpx.AsyncClient(timeout=120) as client:
        provider.hold()  # every provider call waits: the job stays "generating" until its process dies
        config = _api_config(provider.api_base("custom"), data_dir, url)
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
    async with FakeProvider() as provider, FakeTelegramServer() as telegram, _fleet(root) as fleet:
        config = pixbot_config(provider.api_base("custom"), root / "data")
        config["bots"] = {"web": {"enabled": False},
                          "telegram": {"token": telegram.token, "apiBase": telegram.base_url}}
        if url:
            config["storage"]["databaseUrl"] = url
        names = iter(f"{engine}-tg-{i}" for i in range(samples + 1))
        poller = await fleet.start(next(names), config, "run")
        await poller.wait_for("telegram: logged in")
        await telegram.wait_until(lambda: telegram.polls_waiting >= 1, timeout=_START_S, what="the first poll")
        for _ in range(samples):
            standby = await fleet.start(next(names), config, "run")
            await standby.wait_for("another process polls this bot; standing by")
            await telegram.wait_until(lambda: telegram.polls_waiting >= 1, timeout=_START_S, what="a poll")
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


async def _takeovers(pg: Any, root: Path) -> dict[str, dict[str, Any]]:
    """Both engines at once (each on its own fakes, database and data dir): the measured times are set by
    the survivors' timers (seconds), not by CPU, and waiting for them one engine after the other would
    double this part."""

    async def one_engine(engine: str) -> dict[str, Any]:
        async with contextlib.AsyncExitStack() as stack:
            url = await stack.enter_async_context(_database(pg)) if engine == "postgresql" else None
            jobs = await _job_takeover(engine, url, root / f"{engine}-api", JOB_SAMPLES[engine])
        async with contextlib.AsyncExitStack() as stack:
            url = await stack.enter_async_context(_database(pg)) if engine == "postgresql" else None
            polls = await _poller_takeover(engine, url, root / f"{engine}-tg", POLLER_SAMPLES[engine])
        return {"jobs": jobs, "poller": polls}

    engines = ["postgresql", "sqlite"] if pg is not None else ["sqlite"]
    return dict(zip(engines, await asyncio.gather(*(one_engine(e) for e in engines)), strict=True))


def _watch_every() -> float:
    from core.service import LEASE_S

    return LEASE_S / 3  # core.watch.watch's default period


def _standby_retry() -> float:
    from bots.telegram.runner import STANDBY_RETRY_S

    return STANDBY_RETRY_S


def _part_takeover(pg: Any, rows: list[Row]) -> None:
    progress("scale: takeover after kill -9 (API job, Telegram poller)")
    with scratch_dir("scale-takeover") as tmp:
        results = asyncio.run(_takeovers(pg, Path(tmp)))
    table = []
    for engine, found in results.items():
        label = "PostgreSQL" if engine == "postgresql" else "SQLite"
        jobs = [seconds for seconds, _ in found["jobs"]]
        statuses = sorted({status for _, status in found["jobs"]})
        table.append([label, "API job leaves \"generating\" (settled by the survivor)",
                      ", ".join(fmt(s) for s in jobs), max(jobs), f"≤ {JOB_BOUND_S:g} s", "/".join(statuses)])
        table.append([label, "standby's long poll arrives", ", ".join(fmt(s) for s in found["poller"]),
                      max(found["poller"]), f"≤ {POLLER_BOUND_S:g} s", "—"])
        rows.append(Row("scale", f"takeover of a killed API replica's job, {label}", "s", pixbot=max(jobs),
                        goal=f"≤ {JOB_BOUND_S:g} s (docs/scaling.md)", met=max(jobs) <= JOB_BOUND_S,
                        note=f"{', '.join(fmt(s) for s in jobs)} s, became {'/'.join(statuses)}; survivor checks every "
                             f"{fmt(_watch_every())} s, killed just after its check (near worst case)",
                        extra={"samples_s": jobs, "statuses": statuses}))
        rows.append(Row("scale", f"Telegram poller takeover after kill -9, {label}", "s", pixbot=max(found["poller"]),
                        goal=f"≤ {POLLER_BOUND_S:g} s (docs/scaling.md)", met=max(found["poller"]) <= POLLER_BOUND_S,
                        note=f"{', '.join(fmt(s) for s in found['poller'])} s; standby retries every "
                             f"{fmt(_standby_retry())} s, killed just after its try (near worst case)",
                        extra={"samples_s": found["poller"]}))
    if pg is None:
        rows.append(Row("scale", "takeover after kill -9, PostgreSQL", "s", note=_NOTE_NO_PG))
    print("\n### scale — takeover after kill -9 (seconds from the kill; jobs table polled every 50 ms)\n")
    print(markdown_table(["engine", "what", "samples (s)", "worst (s)", "bound", "job became"], table))
    print(f"\nEach kill comes right after the survivor started and made its first check, so the samples sit near the "
          f"worst phase: a process checks for dead processes' jobs every {fmt(_watch_every())} s (same machine: at "
          f"once when it checks), a standby tries for the poller role every {fmt(_standby_retry())} s.")


# --- the benchmark --------------------------------------------------------------------------------


def run() -> list[Row]:
    from tests.storage.postgres_server import find_binaries, start_server

    bin_dir = find_binaries()
    pg = None
    if bin_dir is None:
        progress(f"scale: {_NOTE_NO_PG}")
    else:
        progress(f"scale: starting a PostgreSQL server from {bin_dir}")
        pg = start_server(bin_dir)
    rows: list[Row] = []
    try:
        _part_throughput(pg, rows)
        _part_state(pg, rows)
        _part_takeover(pg, rows)
    finally:
        if pg is not None:
            pg.stop()
    return rows


BENCHMARK = Benchmark("scale", "several processes on one state: API replicas, SQLite vs PostgreSQL, takeover",
                      run)

if __name__ == "__main__":
    sys.exit(0 if all(row.met is not False for row in run()) else 1)
