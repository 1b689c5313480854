"""Job ledger on SQLite: each job's lifecycle (queued → generating → stored → delivered | failed), its
transition rules, and the per-chat reads. The multi-process side (leases, ``renew``, ``settle_orphans``,
``claim_deliveries``, ``claim_announcements``, ``unsettled``) lives in ``core.job_claims`` (mixed in as
``LedgerClaims``); the row helpers both use in ``core.job_rows``."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any, Final

from core.db import Database, utc_timestamp
from core.job_claims import LedgerClaims
from core.job_rows import _UNSETTLED, _fetch, _log_change, _select, _write, job_record, new_job
from core.job_rows import _lease_until as _lease_until  # re-exported: core.postgres.jobs uses it
from core.models import Artifact
from core.state import ChatState, platform_range, record_history
from core.stores import TERMINAL, ChatBusy, ChatSummary, JobRecord, JobStatus, JobStore, StateStore

__all__ = ["TERMINAL", "JobLedger", "JobRecord", "JobStatus"]

log = logging.getLogger(__name__)

# A stored job whose delivery failed stays "stored" so it can be retried; giving up on it is an
# explicit stored -> failed with an error.
_NEXT: Final[dict[str, frozenset[str]]] = {
    "queued": frozenset({"generating", "failed"}),
    "generating": frozenset({"stored", "failed"}),
    "stored": frozenset({"delivered", "failed"}),
    "delivered": frozenset(),
    "failed": frozenset(),
}


def _merge(old: Sequence[str], new: Sequence[str]) -> tuple[str, ...]:
    """Append new ids in order, each once. A list that holds every old id also sets the order (the
    service's final, slot-ordered list replaces the arrival order)."""
    if set(old) <= set(new):
        return tuple(dict.fromkeys(new))
    return tuple(dict.fromkeys([*old, *new]))


def _move(conn: sqlite3.Connection, job_id: str, status: JobStatus, new_ids: Sequence[str],
          error: str | None, *, exact: bool = False) -> tuple[str, JobRecord]:
    """The transition rules, inside a transaction: returns the old status and the record after.
    ``exact`` replaces the job's artifact ids with ``new_ids`` instead of merging them in."""
    job = _fetch(conn, job_id)
    ids = tuple(dict.fromkeys(new_ids)) if exact else _merge(job.artifact_ids, new_ids)
    new_error = error if error is not None else job.error
    if status == job.status:
        if ids == job.artifact_ids and new_error == job.error:
            return job.status, job
        return job.status, _write(conn, job_id, status, ids, new_error)
    if status not in _NEXT[job.status]:
        raise ValueError(f"job {job_id}: illegal transition {job.status}->{status}")
    if job.status == "stored" and status == "failed" and not error:
        raise ValueError(f"job {job_id}: giving up on a stored job needs an error")
    if status == "stored" and not ids:
        raise ValueError(f"job {job_id}: cannot be stored without artifacts")
    return job.status, _write(conn, job_id, status, ids, new_error)


class JobLedger(LedgerClaims):
    """The durable record of each job, so nothing is silently lost across a crash or restart.

    The service advances a job as it goes; the front-end marks it delivered once the platform
    message ids are recorded. A running job names its owner (the process) and a lease the owner
    renews; ``settle_orphans`` settles the jobs of owners that are gone, and ``pending_delivery``
    lists what still has to reach its chat.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        *,
        chat_key: str,
        user_key: str | None,
        prompt: str,
        requested: int,
        request: Mapping[str, Any],
        origin: Mapping[str, Any] | None = None,
        started: bool = False,
        owner: str | None = None,
        lease_s: float = 0.0,
        max_running_per_chat: int = 0,
    ) -> JobRecord:
        """Record a new job as "queued", or as "generating" when ``started`` (one write instead of
        two for a job that begins at once), held by ``owner`` for ``lease_s`` seconds.
        ``request`` and ``origin`` must be JSON-serialisable.

        ``max_running_per_chat`` > 0: raise ``ChatBusy`` (nothing written) when the chat already has that
        many unsettled jobs with a live lease. Counted in the write transaction that inserts: SQLite
        serialises writers across processes, so racing callers are counted one after the other."""
        job, request_json, origin_json = new_job(
            chat_key=chat_key, user_key=user_key, prompt=prompt, requested=requested, request=request,
            origin=origin, started=started, owner=owner, lease_s=lease_s)
        now = job.created_at
        row = (job.id, chat_key, user_key, job.status, prompt, requested, request_json, origin_json, now, now,
               owner, job.lease_until)

        def tx(conn: sqlite3.Connection) -> None:
            if max_running_per_chat > 0:
                running = conn.execute(f"SELECT COUNT(*) FROM jobs WHERE chat_key = ? AND {_UNSETTLED} "
                                       "AND lease_until >= ?", (chat_key, utc_timestamp())).fetchone()[0]
                if running >= max_running_per_chat:
                    raise ChatBusy(max_running_per_chat)
            conn.execute(
                "INSERT INTO jobs (id, chat_key, user_key, status, prompt, requested, request, origin, "
                "artifact_ids, error, created_at, updated_at, owner, lease_until) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, '[]', NULL, ?, ?, ?, ?)", row)

        await self._db.run(tx)
        log.info("job %s new->%s chat=%s", job.id, job.status, job.chat_key)
        log.debug("job %s prompt=%.200r", job.id, prompt)
        return job

    async def advance(
        self,
        job_id: str,
        status: JobStatus,
        *,
        error: str | None = None,
        artifact_ids: Sequence[str] | None = None,
    ) -> JobRecord:
        """Move a job to ``status``; ``artifact_ids`` are merged in, ``error`` replaces the old one.

        Advancing to the status a job already has is a no-op apart from merging ids/error. Illegal
        moves (backwards, out of a terminal state, to "stored" with no artifacts, stored -> failed
        without an error) raise ValueError; an unknown job raises KeyError.
        """
        if status not in _NEXT:
            raise ValueError(f"unknown job status {status!r}")
        new_ids = tuple(artifact_ids or ())
        old, job = await self._db.run(lambda conn: _move(conn, job_id, status, new_ids, error))
        if old != job.status:
            _log_change(job, old)
        return job

    async def complete_job(self, job_id: str, chat_key: str, artifacts: Sequence[Artifact]) -> JobRecord:
        """In one transaction: "stored" with exactly these artifacts in this order, indexed in the
        chat's history, the last one the chat's last image. One transaction because a crash between
        the two writes would leave a delivered image missing from /history and "last image".

        Legal from "generating" and "stored" (a job another process settled meanwhile); a queued,
        delivered or failed job, or no artifacts, raise ValueError and change nothing."""
        ids = tuple(a.id for a in artifacts)

        def tx(conn: sqlite3.Connection) -> tuple[str, JobRecord]:
            moved = _move(conn, job_id, "stored", ids, None, exact=True)
            record_history(conn, chat_key, artifacts)
            return moved

        old, job = await self._db.run(tx)
        if old != job.status:
            _log_change(job, old)
        return job

    async def fail(self, job_id: str, error: str) -> JobRecord:
        """A job that made nothing, or a stored job given up on: "failed" with ``error``. Only from
        queued, generating or stored: failing a settled job raises ValueError rather than rewriting
        why it ended (a second give-up, or a job another process already settled)."""
        if not error:
            raise ValueError(f"job {job_id}: failing needs an error")

        def tx(conn: sqlite3.Connection) -> tuple[str, JobRecord]:
            job = _fetch(conn, job_id)
            if job.status in TERMINAL:
                raise ValueError(f"job {job_id}: illegal transition {job.status}->failed")
            return _move(conn, job_id, "failed", (), error)

        old, job = await self._db.run(tx)
        _log_change(job, old)
        return job

    async def annotate(self, job_id: str, origin: Mapping[str, Any]) -> None:
        """Merge keys into the job's origin, in one write; an unknown job is ignored."""
        def tx(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT origin FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is not None:
                merged = json.dumps({**json.loads(row["origin"]), **origin}, ensure_ascii=False)
                conn.execute("UPDATE jobs SET origin = ? WHERE id = ?", (merged, job_id))

        await self._db.run(tx)

    async def deliver(self, job_id: str) -> bool:
        """Mark a stored job delivered, in one write; False when it was not "stored" (already
        delivered, given up on, or unknown), which is not an error for a late or repeated delivery."""
        def tx(conn: sqlite3.Connection) -> JobRecord | None:
            done = conn.execute("UPDATE jobs SET status = 'delivered', updated_at = ? "
                                "WHERE id = ? AND status = 'stored'", (utc_timestamp(), job_id)).rowcount
            return _fetch(conn, job_id) if done else None

        job = await self._db.run(tx)
        if job is not None:
            _log_change(job, "stored")
        return job is not None

    async def add_artifacts(self, job_id: str, artifact_ids: Sequence[str]) -> None:
        """Attach images as they arrive, so a crash mid-job still leaves them deliverable."""
        if not artifact_ids:
            return

        def tx(conn: sqlite3.Connection) -> None:
            job = _fetch(conn, job_id)
            if job.status in TERMINAL:
                raise ValueError(f"job {job_id} is already {job.status}")
            _write(conn, job_id, job.status, _merge(job.artifact_ids, artifact_ids), job.error)

        await self._db.run(tx)

    async def get(self, job_id: str) -> JobRecord | None:
        def tx(conn: sqlite3.Connection) -> JobRecord | None:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return None if row is None else job_record(row)

        return await self._db.run(tx, write=False)

    async def pending_delivery(self, platform: str | None = None) -> list[JobRecord]:
        """Stored but not delivered, oldest first; ``platform`` keeps chats keyed ``"<platform>:…"``."""
        if platform is None:
            return await self._db.run(lambda conn: _select(conn, "status = 'stored'", ()), write=False)
        prefix = f"{platform}:"
        return await self._db.run(
            lambda conn: _select(
                conn, "status = 'stored' AND substr(chat_key, 1, ?) = ?", (len(prefix), prefix)
            ),
            write=False,
        )

    async def forget_before(self, day: date) -> int:
        """Drop settled jobs created before ``day`` (retention). Jobs still running are kept."""
        def tx(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM jobs WHERE status IN ('stored', 'delivered', 'failed') "
                                "AND created_at < ?", (day.isoformat(),)).rowcount

        return await self._db.run(tx)

    async def chats(self, platform: str, limit: int = 50) -> list[ChatSummary]:
        """The chats keyed ``"<platform>:…"`` that have jobs, most recently active first: titled by their
        first job's prompt (the first still recorded, after retention), dated by their latest change."""
        if limit <= 0:
            return []
        low, high = platform_range(platform)

        def tx(conn: sqlite3.Connection) -> list[ChatSummary]:
            rows = conn.execute(
                "SELECT s.chat_key, j.prompt AS title, s.updated_at, s.jobs FROM ("
                " SELECT chat_key, MIN(seq) AS first_seq, MAX(updated_at) AS updated_at, COUNT(*) AS jobs"
                " FROM jobs WHERE chat_key >= ? AND chat_key < ? GROUP BY chat_key) s"
                " JOIN jobs j ON j.seq = s.first_seq ORDER BY s.updated_at DESC, s.chat_key LIMIT ?",
                (low, high, limit))
            return [ChatSummary(row["chat_key"], row["title"], row["updated_at"], int(row["jobs"])) for row in rows]

        return await self._db.run(tx, write=False)

    async def for_chat(self, chat_key: str, limit: int = 50) -> list[JobRecord]:
        """The chat's most recent ``limit`` jobs, oldest first (a thread reads top to bottom)."""
        if limit <= 0:
            return []

        def tx(conn: sqlite3.Connection) -> list[JobRecord]:
            return [job_record(row) for row in conn.execute(
                "SELECT * FROM (SELECT * FROM jobs WHERE chat_key = ? ORDER BY seq DESC LIMIT ?) recent ORDER BY seq",
                (chat_key, limit))]

        return await self._db.run(tx, write=False)


if TYPE_CHECKING:
    def _implements_the_protocols(db: Database) -> tuple[StateStore, JobStore]:
        """Never called: ``mypy core`` proves the SQLite engine still fits the seam the service uses."""
        return ChatState(db), JobLedger(db)
