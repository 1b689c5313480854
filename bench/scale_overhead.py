"""The ``scale`` benchmark's part 2 (see ``bench/bench_scale.py``): per-job state overhead, SQLite vs PostgreSQL.

In this process, the store calls of one delivered two-image job on each engine, in alternating blocks;
seconds per step and job.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import time
from pathlib import Path
from typing import Any

from bench.common import MODEL, PROMPT, BenchError
from bench.scale_fleet import database

__all__ = ["STATE_JOBS", "STATE_WARMUP", "STEPS", "state_overhead"]

STATE_JOBS = 300
STATE_WARMUP = 30
STATE_BLOCK = 50
STATE_USERS = 30

STEPS = ("create", "add_artifacts ×2", "complete_job", "map_messages + deliver", "try_consume")


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


async def state_overhead(pg: Any, root: Path) -> tuple[dict[str, list[list[float]]], bool]:
    """Seconds per step of each timed job, by engine; and whether ``create`` took ``max_running_per_chat``."""
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

            url = await stack.enter_async_context(database(pg))
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
