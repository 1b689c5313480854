"""JobLedger: legal and illegal transitions, delivery backlog, owners and leases, restart recovery."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import get_args

import pytest

from core import jobs as jobs_module
from core.errors import InternalError
from core.jobs import JobLedger, JobRecord, JobStatus
from core.models import Artifact
from core.owners import owner_is_dead, this_owner
from core.state import ChatState, Database, open_database


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "pixbot.db"


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[Database]:
    async with open_database(db_path) as database:
        yield database


@pytest.fixture
def ledger(db: Database) -> JobLedger:
    return JobLedger(db)


async def new_job(ledger: JobLedger, chat_key: str = "telegram:1", prompt: str = "a fox") -> JobRecord:
    return await ledger.create(
        chat_key=chat_key, user_key="telegram:u", prompt=prompt, requested=2,
        request={"prompt": prompt, "count": 2, "aspect_ratio": "16:9"}, origin={"reply_to": 42},
    )


async def job_in(ledger: JobLedger, status: str, chat_key: str = "telegram:1") -> JobRecord:
    job = await new_job(ledger, chat_key)
    paths: dict[str, list[JobStatus]] = {
        "queued": [], "generating": ["generating"], "stored": ["generating", "stored"],
        "delivered": ["generating", "stored", "delivered"], "failed": ["failed"],
    }
    for step in paths[status]:
        job = await ledger.advance(job.id, step, artifact_ids=["a1"] if step == "stored" else None)
    assert job.status == status
    return job


def test_transition_table_covers_every_status() -> None:
    assert set(jobs_module._NEXT) == set(get_args(JobStatus))


async def test_create_records_a_queued_job(ledger: JobLedger) -> None:
    job = await new_job(ledger, prompt="ünïcode fox")
    assert re.fullmatch(r"job_[0-9a-f]{12}", job.id)
    assert (job.status, job.chat_key, job.user_key) == ("queued", "telegram:1", "telegram:u")
    assert job.requested == 2
    assert job.request == {"prompt": "ünïcode fox", "count": 2, "aspect_ratio": "16:9"}
    assert job.origin == {"reply_to": 42}
    assert (job.artifact_ids, job.error, job.platform) == ((), None, "telegram")
    assert job.created_at.endswith("+00:00")
    assert await ledger.get(job.id) == job


async def test_create_without_origin_and_unknown_get(ledger: JobLedger) -> None:
    job = await ledger.create(chat_key="cli:x", user_key=None, prompt="p", requested=1, request={})
    assert job.origin == {} and job.user_key is None
    assert await ledger.get("job_000000000000") is None


async def test_request_must_be_json(ledger: JobLedger) -> None:
    with pytest.raises(TypeError):
        await ledger.create(
            chat_key="cli:x", user_key=None, prompt="p", requested=1, request={"data": b"\x89"}
        )


async def test_happy_path_to_delivered(ledger: JobLedger, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="core.jobs")
    job = await new_job(ledger)
    await ledger.advance(job.id, "generating")
    await ledger.add_artifacts(job.id, ["a1"])
    await ledger.add_artifacts(job.id, ["a1", "a2"])
    stored = await ledger.advance(job.id, "stored", artifact_ids=["a2", "a3"])
    assert stored.artifact_ids == ("a1", "a2", "a3")
    delivered = await ledger.advance(job.id, "delivered")
    assert delivered.status == "delivered" and delivered.artifact_ids == ("a1", "a2", "a3")
    assert delivered.updated_at >= job.updated_at
    changes = [r.getMessage() for r in caplog.records if "->" in r.getMessage()]
    assert changes == [
        f"job {job.id} new->queued chat=telegram:1",
        f"job {job.id} queued->generating chat=telegram:1",
        f"job {job.id} generating->stored chat=telegram:1",
        f"job {job.id} stored->delivered chat=telegram:1",
    ]


@pytest.mark.parametrize(
    ("start", "target"),
    [("queued", "stored"), ("queued", "delivered"), ("generating", "queued"), ("generating", "delivered"),
     ("stored", "generating"), ("stored", "queued"), ("delivered", "failed"), ("delivered", "stored"),
     ("failed", "generating"), ("failed", "delivered")],
)
async def test_illegal_transitions_raise(ledger: JobLedger, start: str, target: JobStatus) -> None:
    job = await job_in(ledger, start)
    with pytest.raises(ValueError, match="illegal transition"):
        await ledger.advance(job.id, target, artifact_ids=["a9"], error="x")
    assert (await ledger.get(job.id)) == job


@pytest.mark.parametrize(
    ("start", "target"), [("queued", "failed"), ("generating", "failed"), ("stored", "failed")]
)
async def test_failing_from_any_live_state_with_an_error(
    ledger: JobLedger, start: str, target: JobStatus
) -> None:
    job = await job_in(ledger, start)
    failed = await ledger.advance(job.id, target, error="provider timed out")
    assert (failed.status, failed.error) == ("failed", "provider timed out")


async def test_same_status_is_idempotent(ledger: JobLedger, caplog: pytest.LogCaptureFixture) -> None:
    job = await job_in(ledger, "generating")
    caplog.set_level(logging.INFO, logger="core.jobs")
    again = await ledger.advance(job.id, "generating")
    assert again == job
    merged = await ledger.advance(job.id, "generating", artifact_ids=["a1"])
    assert merged.status == "generating" and merged.artifact_ids == ("a1",)
    assert not [r for r in caplog.records if "->" in r.getMessage()]


async def test_stored_needs_artifacts(ledger: JobLedger) -> None:
    job = await job_in(ledger, "generating")
    with pytest.raises(ValueError, match="without artifacts"):
        await ledger.advance(job.id, "stored")


async def test_giving_up_on_a_stored_job_needs_an_error(ledger: JobLedger) -> None:
    job = await job_in(ledger, "stored")
    with pytest.raises(ValueError, match="needs an error"):
        await ledger.advance(job.id, "failed")
    assert (await ledger.get(job.id)).status == "stored"  # type: ignore[union-attr]


async def test_unknown_job_and_status(ledger: JobLedger) -> None:
    with pytest.raises(KeyError):
        await ledger.advance("job_nope", "generating")
    with pytest.raises(KeyError):
        await ledger.add_artifacts("job_nope", ["a1"])
    job = await new_job(ledger)
    with pytest.raises(ValueError, match="unknown job status"):
        await ledger.advance(job.id, "done")  # type: ignore[arg-type]


async def test_no_artifacts_added_to_a_finished_job(ledger: JobLedger) -> None:
    job = await job_in(ledger, "failed")
    with pytest.raises(ValueError, match="already failed"):
        await ledger.add_artifacts(job.id, ["a1"])


async def test_pending_delivery_lists_stored_jobs_oldest_first_by_platform(ledger: JobLedger) -> None:
    tg_old = await job_in(ledger, "stored", "telegram:1")
    await job_in(ledger, "delivered", "telegram:1")
    await job_in(ledger, "generating", "telegram:2")
    dc = await job_in(ledger, "stored", "discord:7")
    tg_new = await job_in(ledger, "stored", "telegram:3")
    lookalike = await job_in(ledger, "stored", "telegramx:1")

    assert [j.id for j in await ledger.pending_delivery()] == [tg_old.id, dc.id, tg_new.id, lookalike.id]
    assert [j.id for j in await ledger.pending_delivery("telegram")] == [tg_old.id, tg_new.id]
    assert [j.id for j in await ledger.pending_delivery("discord")] == [dc.id]
    assert await ledger.pending_delivery("api") == []


def _never_dead(owner: str) -> bool:
    return False


async def test_orphans_are_settled_with_and_without_artifacts(ledger: JobLedger) -> None:
    queued = await job_in(ledger, "queued")
    bare = await job_in(ledger, "generating")
    partial = await job_in(ledger, "generating", "discord:7")
    await ledger.add_artifacts(partial.id, ["p1"])
    done = await job_in(ledger, "delivered")

    assert {j.id for j in await ledger.unsettled()} == {queued.id, bare.id, partial.id}
    settled = {j.id: j for j in await ledger.settle_orphans("me", _never_dead)}  # no owner, no lease: orphans
    assert set(settled) == {queued.id, bare.id, partial.id}
    assert (settled[queued.id].status, settled[queued.id].error) == ("failed", "interrupted by a restart")
    assert settled[bare.id].status == "failed"
    assert (settled[partial.id].status, settled[partial.id].artifact_ids) == ("stored", ("p1",))
    assert await ledger.unsettled() == []
    assert [j.id for j in await ledger.pending_delivery()] == [partial.id]
    assert await ledger.get(done.id) == done
    assert await ledger.settle_orphans("me", _never_dead, "again") == []


async def test_a_live_lease_is_left_alone_until_it_lapses_or_its_owner_dies(ledger: JobLedger) -> None:
    live = await ledger.create(chat_key="cli:x", user_key=None, prompt="p", requested=1, request={},
                               started=True, owner="other/1/1", lease_s=30)
    mine = await ledger.create(chat_key="cli:x", user_key=None, prompt="p", requested=1, request={},
                               started=True, owner="me", lease_s=0.01)
    assert live.owner == "other/1/1" and live.lease_until is not None
    assert await ledger.settle_orphans("me", _never_dead) == []  # lease running; my own job is never an orphan
    (settled,) = await ledger.settle_orphans("me", lambda owner: owner == "other/1/1")  # its process is gone
    assert settled.id == live.id and settled.status == "failed"
    assert [j.id for j in await ledger.unsettled()] == [mine.id]


async def test_renewing_keeps_a_lease_from_lapsing(ledger: JobLedger) -> None:
    job = await ledger.create(chat_key="cli:x", user_key=None, prompt="p", requested=1, request={},
                              started=True, owner="other", lease_s=0.05)
    assert await ledger.renew("other", 30) == 1
    await asyncio.sleep(0.1)  # the first lease would have lapsed by now
    assert await ledger.settle_orphans("me", _never_dead) == []
    renewed = await ledger.get(job.id)
    assert renewed is not None and renewed.lease_until is not None and job.lease_until is not None
    assert renewed.lease_until > job.lease_until
    assert await ledger.renew("nobody", 30) == 0


async def test_ledger_survives_a_restart(db_path: Path) -> None:
    async with open_database(db_path) as first:
        ledger = JobLedger(first)
        running = await job_in(ledger, "generating")
        await ledger.add_artifacts(running.id, ["a1", "a2"])
        stored = await job_in(ledger, "stored", "discord:7")

    async with open_database(db_path) as second:
        ledger = JobLedger(second)
        assert [j.id for j in await ledger.unsettled()] == [running.id]
        recovered = await ledger.settle_orphans("next-process", _never_dead, "restart")
        assert [(j.id, j.status, j.artifact_ids) for j in recovered] == [(running.id, "stored", ("a1", "a2"))]
        pending = await ledger.pending_delivery()
        assert [j.id for j in pending] == [running.id, stored.id]  # by creation
        assert pending[1].request == stored.request and pending[1].origin == {"reply_to": 42}


async def test_a_complete_artifact_list_sets_the_order(ledger: JobLedger) -> None:
    job = await ledger.create(chat_key="cli:x", user_key=None, prompt="p", requested=2, request={})
    await ledger.advance(job.id, "generating")
    await ledger.add_artifacts(job.id, ["img_bbbbbbbbbbbb"])
    await ledger.add_artifacts(job.id, ["img_aaaaaaaaaaaa"])
    stored = await ledger.advance(job.id, "stored", artifact_ids=["img_aaaaaaaaaaaa", "img_bbbbbbbbbbbb"])
    assert stored.artifact_ids == ("img_aaaaaaaaaaaa", "img_bbbbbbbbbbbb")


async def test_a_started_job_is_created_generating_in_one_write(ledger: JobLedger) -> None:
    job = await ledger.create(chat_key="cli:x", user_key=None, prompt="p", requested=1, request={}, started=True)
    assert job.status == "generating" and await ledger.get(job.id) == job
    assert (await ledger.advance(job.id, "stored", artifact_ids=["a1"])).status == "stored"


async def test_deliver_moves_only_stored_jobs(ledger: JobLedger) -> None:
    stored = await job_in(ledger, "stored")
    assert await ledger.deliver(stored.id)
    assert (await ledger.get(stored.id)).status == "delivered"  # type: ignore[union-attr]
    assert not await ledger.deliver(stored.id)  # a repeated delivery is not an error
    for status in ("generating", "failed"):
        job = await job_in(ledger, status)
        assert not await ledger.deliver(job.id)
        assert (await ledger.get(job.id)).status == status  # type: ignore[union-attr]
    assert not await ledger.deliver("job_000000000000")


async def test_complete_job_stores_and_records_the_history_in_one_transaction(ledger: JobLedger,
                                                                                db: Database) -> None:
    state = ChatState(db)
    job = await job_in(ledger, "generating")
    made = _artifact("img_aaaaaaaaaaaa", job.id)
    stored = await ledger.complete_job(job.id, "telegram:1", [made])
    assert stored.status == "stored" and stored.artifact_ids == (made.id,)
    assert await state.last_artifact("telegram:1") == made.id
    assert [e.artifact_id for e in await state.history("telegram:1")] == [made.id]

    other = await job_in(ledger, "generating")
    await ledger.add_artifacts(other.id, ["img_bbbbbbbbbbbb"])
    before = await ledger.get(other.id)
    await db.run(lambda conn: conn.execute(  # the history write fails, as a full disk would make it
        "CREATE TEMP TRIGGER refuse BEFORE INSERT ON artifacts BEGIN SELECT RAISE(ABORT, 'disk full'); END"))
    with pytest.raises(InternalError) as failure:
        await ledger.complete_job(other.id, "telegram:2", [_artifact("img_bbbbbbbbbbbb", other.id)])
    assert "disk full" in (failure.value.detail or "")
    assert await ledger.get(other.id) == before  # still generating: the job's write was rolled back too
    assert await state.last_artifact("telegram:2") is None and await state.history("telegram:2") == []
    assert await ledger.pending_delivery() == [stored]


async def test_a_settled_job_cannot_be_failed_again(ledger: JobLedger, caplog: pytest.LogCaptureFixture) -> None:
    job = await job_in(ledger, "generating")
    caplog.set_level(logging.INFO, logger="core.jobs")
    failed = await ledger.fail(job.id, "provider_unavailable")
    assert [r.getMessage() for r in caplog.records] == [f"job {job.id} generating->failed chat=telegram:1"]
    with pytest.raises(ValueError, match="illegal transition failed->failed"):
        await ledger.fail(job.id, "internal")
    assert await ledger.get(job.id) == failed


async def test_settling_asks_about_each_owner_once(ledger: JobLedger) -> None:
    for _ in range(3):
        await ledger.create(chat_key="cli:x", user_key=None, prompt="p", requested=1, request={},
                            started=True, owner="other/1/1/s", lease_s=30)
    asked: list[str] = []

    def is_dead(owner: str) -> bool:
        asked.append(owner)
        return True

    assert len(await ledger.settle_orphans("me", is_dead)) == 3
    assert asked == ["other/1/1/s"]


async def test_the_unsettled_jobs_index_serves_lease_renewal(db: Database) -> None:
    plan = await db.run(lambda conn: conn.execute(
        "EXPLAIN QUERY PLAN UPDATE jobs SET lease_until = ? WHERE owner = ? AND " + jobs_module._UNSETTLED,
        ("t", "o")).fetchall())
    assert "jobs_unsettled" in str([tuple(row) for row in plan])


def _artifact(artifact_id: str, job_id: str) -> Artifact:
    return Artifact(id=artifact_id, path=f"/m/{artifact_id}.png", mime="image/png", prompt="a fox", model="m",
                    provider="p", source_images=(), created_at="2026-12-05T10:00:00+00:00", job_id=job_id)


# -- owners ----------------------------------------------------------------------------------
needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="owners are only told apart via /proc")


def test_this_process_is_one_owner_and_alive() -> None:
    owner = this_owner()
    assert owner == this_owner() and owner.startswith(f"{socket.gethostname()}/{os.getpid()}/")
    assert not owner_is_dead(owner)


def test_what_this_host_cannot_tell_is_not_called_dead() -> None:
    host, _, rest = this_owner().partition("/")
    assert not owner_is_dead(f"elsewhere-{host}/{rest}")  # another machine: its lease decides
    assert not owner_is_dead(f"{host}/{os.getpid()}/x0123abcd")  # a random-token owner (no /proc there)
    assert not owner_is_dead("")
    assert not owner_is_dead("me")


@needs_proc
def test_a_reused_pid_is_a_dead_owner() -> None:
    host, pid, start, scope = this_owner().split("/")
    assert owner_is_dead(f"{host}/{pid}/{int(start) + 1}/{scope}")  # same pid, another process
    assert not owner_is_dead(f"{host}/{pid}/{int(start) + 1}/{scope}x")  # another pid namespace: cannot tell


@needs_proc
def test_an_owner_whose_process_exited_is_dead() -> None:
    code = "import sys\nfrom core.owners import this_owner\nprint(this_owner(), flush=True)\nsys.stdin.read()\n"
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    try:
        assert child.stdout is not None and child.stdin is not None
        owner = child.stdout.readline().decode().strip()
        assert owner.split("/")[:2] == [socket.gethostname(), str(child.pid)]
        assert not owner_is_dead(owner)  # running
        child.stdin.close()
        stat = Path(f"/proc/{child.pid}/stat")
        deadline = time.monotonic() + 20
        while stat.read_text().rpartition(")")[2].split()[0] != "Z":  # exited, not yet reaped by us
            assert time.monotonic() < deadline, "child did not exit"
            time.sleep(0.01)
        assert owner_is_dead(owner)
        child.wait(timeout=20)
        assert owner_is_dead(owner)  # gone from the process table
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


async def test_a_chats_jobs_are_read_through_their_index(db: Database) -> None:
    """A studio thread and the thread list read one chat's / one platform's jobs, not the whole ledger."""
    async def plan(sql: str, params: tuple[object, ...]) -> str:
        rows = await db.run(lambda conn: conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall())
        return str([tuple(row) for row in rows])

    assert "jobs_by_chat (chat_key=?)" in await plan(
        "SELECT * FROM jobs WHERE chat_key = ? ORDER BY seq DESC LIMIT ?", ("web:a", 50))
    assert "jobs_by_chat (chat_key>? AND chat_key<?)" in await plan(
        "SELECT chat_key, COUNT(*) FROM jobs WHERE chat_key >= ? AND chat_key < ? GROUP BY chat_key", ("web:", "web;"))
