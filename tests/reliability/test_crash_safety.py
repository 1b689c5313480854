"""Crash safety: what a restart or a SIGKILL leaves behind is settled and, where images exist, delivered.

Service level only: the front-end suites check that a restarted bot actually sends what
``pending_deliveries`` lists. The SIGKILL test runs the real ``pixbot generate`` as a child process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

from core.db import SCHEMA_VERSION
from core.errors import InternalError
from core.models import ChatRef, ImageRequest
from tests.e2e.cli_support import RUN_TIMEOUT, Cli
from tests.fakes.fake_provider import FakeProvider
from tests.images import png_bytes
from tests.reliability.conftest import ONE_SHOT, Harness

TELEGRAM = ChatRef("telegram", "100", "7")
DISCORD = ChatRef("discord", "555", "9")


async def test_stored_but_undelivered_jobs_are_listed_after_a_restart(harness: Harness, fake: FakeProvider) -> None:
    origin = {"reply_to": 42, "thread": "t-1"}
    async with harness.open(retry=ONE_SHOT) as service:
        fake.fail_next(503)
        partial = await service.submit(ImageRequest("a red fox", TELEGRAM, count=3, origin=origin))
        delivered = await service.submit(ImageRequest("a blue fox", TELEGRAM))
        await service.mark_delivered(delivered.job_id, TELEGRAM.key, [("m1", delivered.artifacts[0].id)])
        other = await service.submit(ImageRequest("a green fox", DISCORD))
    stored_bytes = {a.id: Path(a.path).read_bytes() for a in partial.artifacts}

    async with harness.open() as service:  # a new process on the same data dir
        pending = await service.pending_deliveries("telegram")
        assert [(record.id, record.status, record.origin) for record, _ in pending] == [
            (partial.job_id, "stored", origin)]
        record, artifacts = pending[0]
        assert {a.id for a in artifacts} == set(stored_bytes) and len(artifacts) == 2
        assert {a.id: await service.store.read(a) for a in artifacts} == stored_bytes
        assert record.request["prompt"] == "a red fox" and record.request["count"] == 3
        assert [r.id for r, _ in await service.pending_deliveries("discord")] == [other.job_id]
        await service.mark_delivered(partial.job_id, TELEGRAM.key, [(f"m{i + 2}", a.id)
                                                                   for i, a in enumerate(artifacts)])

    async with harness.open() as service:
        assert await service.pending_deliveries("telegram") == []
        assert await service.state.artifact_for_message(TELEGRAM.key, "m2") in stored_bytes
        assert await service.state.last_artifact(TELEGRAM.key) == delivered.artifacts[0].id  # the newest job's
    assert fake.requests_of("images/generations") and len(fake.requests) == 5


def _jobs(db: Path) -> dict[str, tuple[str, str | None, list[str]]]:
    with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
        rows = conn.execute("SELECT prompt, status, error, artifact_ids FROM jobs").fetchall()
    return {prompt: (status, error, json.loads(ids)) for prompt, status, error, ids in rows}


async def _wait_until_an_image_is_recorded(db: Path, prompt: str, child: asyncio.subprocess.Process) -> None:
    """Poll the child's ledger (a condition, bounded; the child is another process) for its first image."""
    async with asyncio.timeout(RUN_TIMEOUT):
        while True:
            if child.returncode is not None:
                out, err = await child.communicate()
                raise AssertionError(f"pixbot exited early ({child.returncode}): {out!r} {err!r}")
            with contextlib.suppress(sqlite3.OperationalError):  # the child may still be creating the schema
                job = (await asyncio.to_thread(_jobs, db)).get(prompt) if db.exists() else None
                if job is not None and job[2]:
                    return
            await asyncio.sleep(0.02)


async def test_sigkill_mid_job_leaves_a_ledger_the_next_start_settles(harness: Harness, fake: FakeProvider) -> None:
    """Two ``pixbot generate`` processes are killed mid-job: one after its first image was stored, one
    before any image came. The next open_service keeps the first (stored, deliverable) and fails the second."""
    cli = Cli(harness.root, fake)
    config = harness.write_config(harness.raw_config())
    db = harness.root / "pixbot.db"
    fake.stall_next()  # one of the first job's two slots hangs; the other stores its image
    first = await cli.start("generate", "two foxes", "-n", "2", "--chat", "telegram:100", config=config)
    second = None
    try:
        await _wait_until_an_image_is_recorded(db, "two foxes", first)
        fake.stall_next()  # the second job's only slot hangs
        second = await cli.start("generate", "one fox", "--chat", "telegram:200", config=config)
        await fake.wait_for_requests(3, timeout=RUN_TIMEOUT, path_suffix="/images/generations")
    finally:
        for child in (first, second):
            if child is not None:
                child.kill()  # SIGKILL: no cleanup of any kind
                await child.communicate()
        fake.release_stalled()
    assert first.returncode == -9 and second is not None and second.returncode == -9
    before = await asyncio.to_thread(_jobs, db)
    assert before["two foxes"][0] == before["one fox"][0] == "generating"

    async with harness.open() as service:
        after = await asyncio.to_thread(_jobs, db)
        pending = await service.pending_deliveries("telegram")
    (image_id,) = before["two foxes"][2]
    assert after["two foxes"] == ("stored", None, [image_id])
    assert after["one fox"] == ("failed", "interrupted by a restart", [])
    assert [(r.chat_key, [a.id for a in arts]) for r, arts in pending] == [("telegram:100", [image_id])]
    stored = pending[0][1][0]
    assert Path(stored.path).read_bytes()[:8] == png_bytes()[:8]
    assert not list(Path(stored.path).parent.glob(".*")), "no partial files are left"


def _set_user_version(db: Path, version: int) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute(f"PRAGMA user_version = {version}")


async def test_a_database_from_a_newer_pixbot_is_refused_and_left_as_it_is(harness: Harness) -> None:
    async with harness.open():
        pass
    db = harness.root / "pixbot.db"
    await asyncio.to_thread(_set_user_version, db, SCHEMA_VERSION + 1)
    with pytest.raises(InternalError, match=f"schema version {SCHEMA_VERSION + 1}; this pixbot knows "
                                            f"{SCHEMA_VERSION}: it was written by a newer pixbot"):
        async with harness.open():
            pass
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
