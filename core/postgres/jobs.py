"""The job ledger on PostgreSQL: ``core.jobs.JobLedger``'s behaviour, one statement per call where it can be.

A transition that depends on the job's current state reads it ``FOR UPDATE`` in a CTE of the statement
that writes it, so it is decided on the latest committed row and nothing else changes the job meanwhile;
the old status comes back with the new row, and the error to raise (unknown job, illegal move) is worked
out from it afterwards, nothing having been written. ``settle_orphans`` and ``claim_deliveries`` claim
their jobs with ``FOR UPDATE SKIP LOCKED``: two processes sweeping at once split the jobs, and each is
taken once. ``claim_announcements`` is one ``UPDATE … WHERE announce IS NOT NULL RETURNING``: a concurrent
claim waits for the row, re-reads it, finds it taken and passes it by. ``create`` under ``limits.perChatJobs``
counts the chat's running jobs and inserts in one transaction holding the chat's advisory lock
(``pg_advisory_xact_lock(CHAT_LOCK, hashtext(chat_key))``), so racing creations in one chat take turns.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping, Sequence
from datetime import date
from typing import Any, Final

from core.db import utc_timestamp
from core.job_rows import _lease_until, job_record, new_job
from core.models import Artifact
from core.owners import Holders
from core.postgres.pool import Pool, rowcount
from core.postgres.state import HISTORY, history_args
from core.state import platform_range
from core.stores import TERMINAL, ChatBusy, ChatSummary, JobRecord, OwnerCheck

__all__ = ["CHAT_LOCK", "PostgresJobLedger"]

log = logging.getLogger("core.jobs")

_UNSETTLED: Final = "status IN ('queued', 'generating')"


def _log_change(job: JobRecord, old: str) -> None:
    log.info("job %s %s->%s chat=%s", job.id, old, job.status, job.chat_key)


# "stored" with exactly the ids $14 (JSON $15), and the chat's history ($1..$13, see HISTORY), when legal:
# from "generating" with images, or from "stored" (a job settled meanwhile; rewritten only if the ids differ).
# $16 the job. The first row is the job before (old = true), a second one the job after, if it was written.
_COMPLETE: Final = f"""
    WITH old AS (SELECT * FROM jobs WHERE id = $16 FOR UPDATE),
    legal AS (SELECT 1 FROM old WHERE status = 'stored' OR (status = 'generating' AND cardinality($14::text[]) > 0)),
    stored AS (
        UPDATE jobs j SET status = 'stored', artifact_ids = $15::text, updated_at = $13::text FROM old
        WHERE j.id = old.id AND ((old.status = 'generating' AND cardinality($14::text[]) > 0)
            OR (old.status = 'stored' AND old.artifact_ids::jsonb <> $15::text::jsonb))
        RETURNING j.*),
    {HISTORY.format(guard="EXISTS (SELECT 1 FROM legal)")}
    SELECT true AS old, * FROM old UNION ALL SELECT false, * FROM stored"""

# Append ids to a job that is not settled, each once: a list holding every id it has also sets the order.
_ADD: Final = """
    WITH old AS (
        SELECT id, status, ARRAY(SELECT x FROM jsonb_array_elements_text(artifact_ids::jsonb) WITH ORDINALITY
                                 AS e(x, n) ORDER BY n) AS ids
        FROM jobs WHERE id = $1 FOR UPDATE),
    added AS (
        UPDATE jobs j SET updated_at = $3, artifact_ids = to_jsonb(CASE WHEN old.ids <@ $2::text[] THEN $2::text[]
            ELSE old.ids || ARRAY(SELECT x FROM unnest($2::text[]) WITH ORDINALITY AS u(x, n)
                                  WHERE x <> ALL (old.ids) ORDER BY n) END)::text
        FROM old WHERE j.id = old.id AND old.status NOT IN ('delivered', 'failed'))
    SELECT status FROM old"""

_CREATE: Final = ("INSERT INTO jobs (id, chat_key, user_key, status, prompt, requested, request, origin, "
                  "artifact_ids, error, created_at, updated_at, owner, lease_until) "
                  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '[]', NULL, $9, $9, $10, $11)")

#: The first key of the advisory lock a chat's job creation holds (``pg_advisory_xact_lock(CHAT_LOCK,
#: hashtext(chat_key))``) under ``limits.perChatJobs``: b"pixc"; two-key locks never meet one-key ones.
CHAT_LOCK: Final = 0x70697863

_FAIL: Final = """
    WITH old AS (SELECT id, status FROM jobs WHERE id = $1 FOR UPDATE),
    failed AS (
        UPDATE jobs j SET status = 'failed', error = $2, updated_at = $3 FROM old
        WHERE j.id = old.id AND old.status IN ('queued', 'generating', 'stored') RETURNING j.*)
    SELECT old.status AS old_status, failed.* FROM old LEFT JOIN failed ON true"""


class PostgresJobLedger:
    """``JobStore`` on PostgreSQL."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def create(self, *, chat_key: str, user_key: str | None, prompt: str, requested: int,
                     request: Mapping[str, Any], origin: Mapping[str, Any] | None = None, started: bool = False,
                     owner: str | None = None, lease_s: float = 0.0, max_running_per_chat: int = 0) -> JobRecord:
        """A new job. With ``max_running_per_chat``, the count of the chat's running jobs and the insert run in
        one transaction holding the chat's advisory lock: a caller racing on the same chat waits for it and
        then counts the job this one inserted (READ COMMITTED: each statement sees what was committed)."""
        job, request_json, origin_json = new_job(
            chat_key=chat_key, user_key=user_key, prompt=prompt, requested=requested, request=request,
            origin=origin, started=started, owner=owner, lease_s=lease_s)
        now = job.created_at
        row = (job.id, chat_key, user_key, job.status, prompt, requested, request_json, origin_json, now, owner,
               job.lease_until)
        if max_running_per_chat <= 0:
            await self._pool.execute(_CREATE, *row)
        else:
            async with self._pool.transaction() as conn:
                await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", CHAT_LOCK, chat_key)
                running = await conn.fetchval(f"SELECT count(*) FROM jobs WHERE chat_key = $1 AND {_UNSETTLED} "
                                              "AND lease_until >= $2", chat_key, utc_timestamp())
                if running >= max_running_per_chat:
                    raise ChatBusy(max_running_per_chat)
                await conn.execute(_CREATE, *row)
        log.info("job %s new->%s chat=%s", job.id, job.status, job.chat_key)
        log.debug("job %s prompt=%.200r", job.id, prompt)
        return job

    async def get(self, job_id: str) -> JobRecord | None:
        row = await self._pool.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
        return None if row is None else job_record(row)

    async def add_artifacts(self, job_id: str, artifact_ids: Sequence[str]) -> None:
        if not artifact_ids:
            return
        status = await self._pool.fetchval(_ADD, job_id, list(dict.fromkeys(artifact_ids)), utc_timestamp())
        if status is None:
            raise KeyError(f"unknown job {job_id!r}")
        if status in TERMINAL:
            raise ValueError(f"job {job_id} is already {status}")

    async def complete_job(self, job_id: str, chat_key: str, artifacts: Sequence[Artifact]) -> JobRecord:
        ids = list(dict.fromkeys(a.id for a in artifacts))
        history = history_args(chat_key, artifacts) if artifacts else (chat_key, *([[]] * 10), None, utc_timestamp())
        rows = await self._pool.fetch(_COMPLETE, *history, ids, json.dumps(ids), job_id)
        if not rows:
            raise KeyError(f"unknown job {job_id!r}")
        old = job_record(next(row for row in rows if row["old"]))
        if old.status not in ("generating", "stored"):
            raise ValueError(f"job {job_id}: illegal transition {old.status}->stored")
        if old.status == "generating" and not ids:
            raise ValueError(f"job {job_id}: cannot be stored without artifacts")
        job = next((job_record(row) for row in rows if not row["old"]), old)
        if old.status != job.status:
            _log_change(job, old.status)
        return job

    async def fail(self, job_id: str, error: str) -> JobRecord:
        if not error:
            raise ValueError(f"job {job_id}: failing needs an error")
        row = await self._pool.fetchrow(_FAIL, job_id, error, utc_timestamp())
        if row is None:
            raise KeyError(f"unknown job {job_id!r}")
        if row["id"] is None:
            raise ValueError(f"job {job_id}: illegal transition {row['old_status']}->failed")
        job = job_record(row)
        _log_change(job, row["old_status"])
        return job

    async def deliver(self, job_id: str) -> bool:
        row = await self._pool.fetchrow("UPDATE jobs SET status = 'delivered', updated_at = $2 "
                                        "WHERE id = $1 AND status = 'stored' RETURNING *", job_id, utc_timestamp())
        if row is None:
            return False
        _log_change(job_record(row), "stored")
        return True

    async def pending_delivery(self, platform: str | None = None) -> list[JobRecord]:
        if platform is None:
            rows = await self._pool.fetch("SELECT * FROM jobs WHERE status = 'stored' ORDER BY seq")
        else:
            rows = await self._pool.fetch("SELECT * FROM jobs WHERE status = 'stored' AND chat_key >= $1 "
                                          "AND chat_key < $2 ORDER BY seq", *platform_range(platform))
        return [job_record(row) for row in rows]

    async def annotate(self, job_id: str, origin: Mapping[str, Any]) -> None:
        """Merge keys into the origin: read it, write the merge only if it is still what was read (else again)."""
        while True:
            current = await self._pool.fetchval("SELECT origin FROM jobs WHERE id = $1", job_id)
            if current is None:
                return
            merged = json.dumps({**json.loads(current), **origin}, ensure_ascii=False)
            if rowcount(await self._pool.execute("UPDATE jobs SET origin = $2 WHERE id = $1 AND origin = $3",
                                                 job_id, merged, current)):
                return

    async def unsettled(self) -> list[JobRecord]:
        rows = await self._pool.fetch(f"SELECT * FROM jobs WHERE {_UNSETTLED} ORDER BY seq")
        return [job_record(row) for row in rows]

    async def renew(self, owner: str, lease_s: float) -> int:
        """Extend the lease of every job ``owner`` runs or is delivering; returns how many."""
        return rowcount(await self._pool.execute(
            f"UPDATE jobs SET lease_until = $1 WHERE owner = $2 AND ({_UNSETTLED} OR status = 'stored')",
            _lease_until(lease_s), owner))

    async def settle_orphans(self, owner: str, is_dead: OwnerCheck,
                             reason: str = "interrupted by a restart") -> list[JobRecord]:
        """One transaction: lock the unsettled jobs of other owners that no one else holds (``SKIP LOCKED``:
        a concurrent sweep takes the others), settle those whose lease lapsed or whose owner is dead. Those
        failed (no images) are marked for ``claim_announcements``: their chat still has to hear of it."""
        settled: list[tuple[str, JobRecord]] = []
        async with self._pool.transaction() as conn:
            rows = await conn.fetch(f"SELECT * FROM jobs WHERE {_UNSETTLED} AND owner IS DISTINCT FROM $1 "
                                    "ORDER BY seq FOR UPDATE SKIP LOCKED", owner)
            holders = Holders(is_dead, utc_timestamp())  # now: after the locks are ours
            chosen = [job for job in map(job_record, rows) if not holders.hold(job.owner, job.lease_until)]
            if chosen:
                old = {job.id: job.status for job in chosen}
                updated = await conn.fetch(
                    "UPDATE jobs SET status = CASE WHEN id = ANY($2::text[]) THEN 'stored' ELSE 'failed' END, "
                    "error = CASE WHEN id = ANY($2::text[]) THEN error ELSE $3 END, updated_at = $4, "
                    "announce = CASE WHEN id = ANY($2::text[]) THEN announce ELSE 'interrupted' END "
                    "WHERE id = ANY($1::text[]) RETURNING *",
                    list(old), [job.id for job in chosen if job.artifact_ids], reason, utc_timestamp())
                for row in sorted(updated, key=lambda r: int(r["seq"])):
                    settled.append((old[row["id"]], job_record(row)))
        for status, job in settled:
            _log_change(job, status)
        return [job for _, job in settled]

    async def claim_deliveries(self, owner: str, lease_s: float, platform: str, is_dead: OwnerCheck,
                               skip: Collection[str] = ()) -> list[JobRecord]:
        """One transaction: lock the stored jobs of ``platform`` no one else is claiming or settling
        (``SKIP LOCKED``), take those not held by a live lease of another owner, nor in ``skip``."""
        low, high = platform_range(platform)
        async with self._pool.transaction() as conn:
            rows = await conn.fetch("SELECT * FROM jobs WHERE status = 'stored' AND chat_key >= $1 AND chat_key < $2 "
                                    "ORDER BY seq FOR UPDATE SKIP LOCKED", low, high)
            holders = Holders(is_dead, utc_timestamp())  # now: after the locks are ours
            chosen = [job.id for job in map(job_record, rows) if job.id not in skip
                      and not (job.owner not in (None, owner) and holders.hold(job.owner, job.lease_until))]
            if not chosen:
                return []
            claimed = await conn.fetch("UPDATE jobs SET owner = $2, lease_until = $3 WHERE id = ANY($1::text[]) "
                                       "RETURNING *", chosen, owner, _lease_until(lease_s))
        return [job_record(row) for row in sorted(claimed, key=lambda r: int(r["seq"]))]

    async def claim_announcements(self, platform: str) -> list[JobRecord]:
        rows = await self._pool.fetch(
            "WITH told AS (UPDATE jobs SET announce = NULL WHERE announce IS NOT NULL AND chat_key >= $1 "
            "AND chat_key < $2 RETURNING *) SELECT * FROM told ORDER BY seq", *platform_range(platform))
        return [job_record(row) for row in rows]

    async def forget_before(self, day: date) -> int:
        return rowcount(await self._pool.execute(
            "DELETE FROM jobs WHERE status IN ('stored', 'delivered', 'failed') AND created_at < $1", day.isoformat()))

    async def chats(self, platform: str, limit: int = 50) -> list[ChatSummary]:
        if limit <= 0:
            return []
        rows = await self._pool.fetch(
            "SELECT s.chat_key, j.prompt AS title, s.updated_at, s.jobs FROM ("
            " SELECT chat_key, min(seq) AS first_seq, max(updated_at) AS updated_at, count(*) AS jobs"
            " FROM jobs WHERE chat_key >= $1 AND chat_key < $2 GROUP BY chat_key) s"
            " JOIN jobs j ON j.seq = s.first_seq ORDER BY s.updated_at DESC, s.chat_key LIMIT $3",
            *platform_range(platform), limit)
        return [ChatSummary(row["chat_key"], row["title"], row["updated_at"], int(row["jobs"])) for row in rows]

    async def for_chat(self, chat_key: str, limit: int = 50) -> list[JobRecord]:
        if limit <= 0:
            return []
        return [job_record(row) for row in await self._pool.fetch(
            "SELECT * FROM (SELECT * FROM jobs WHERE chat_key = $1 ORDER BY seq DESC LIMIT $2) recent ORDER BY seq",
            chat_key, limit)]
