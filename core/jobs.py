"""Job ledger: each job's lifecycle (queued → generating → stored → delivered | failed), restart recovery."""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from core.db import Database, utc_timestamp
from core.models import Artifact
from core.state import ChatState, platform_range, record_history
from core.stores import TERMINAL, ChatBusy, ChatSummary, JobRecord, JobStatus, JobStore, OwnerCheck, StateStore

__all__ = ["TERMINAL", "JobLedger", "JobRecord", "JobStatus"]

log = logging.getLogger(__name__)

_UNSETTLED = "status IN ('queued', 'generating')"

# A stored job whose delivery failed stays "stored" so it can be retried; giving up on it is an
# explicit stored -> failed with an error.
_NEXT: Final[dict[str, frozenset[str]]] = {
    "queued": frozenset({"generating", "failed"}),
    "generating": frozenset({"stored", "failed"}),
    "stored": frozenset({"delivered", "failed"}),
    "delivered": frozenset(),
    "failed": frozenset(),
}


def _lease_until(lease_s: float) -> str | None:
    if lease_s <= 0:
        return None
    return (datetime.now(UTC) + timedelta(seconds=lease_s)).isoformat(timespec="milliseconds")


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        chat_key=row["chat_key"],
        user_key=row["user_key"],
        status=row["status"],
        prompt=row["prompt"],
        requested=int(row["requested"]),
        origin=json.loads(row["origin"]),
        artifact_ids=tuple(json.loads(row["artifact_ids"])),
        error=row["error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        request=json.loads(row["request"]),
        owner=row["owner"],
        lease_until=row["lease_until"],
    )


def _fetch(conn: sqlite3.Connection, job_id: str) -> JobRecord:
    row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise KeyError(f"unknown job {job_id!r}")
    return _record(row)


def _merge(old: Sequence[str], new: Sequence[str]) -> tuple[str, ...]:
    """Append new ids in order, each once. A list that holds every old id also sets the order (the
    service's final, slot-ordered list replaces the arrival order)."""
    if set(old) <= set(new):
        return tuple(dict.fromkeys(new))
    return tuple(dict.fromkeys([*old, *new]))


def _write(
    conn: sqlite3.Connection, job_id: str, status: str, ids: Sequence[str], error: str | None
) -> JobRecord:
    conn.execute(
        "UPDATE jobs SET status = ?, artifact_ids = ?, error = ?, updated_at = ? WHERE id = ?",
        (status, json.dumps(list(ids)), error, utc_timestamp(), job_id),
    )
    return _fetch(conn, job_id)


def _select(conn: sqlite3.Connection, where: str, params: Sequence[object]) -> list[JobRecord]:
    return [_record(row) for row in conn.execute(f"SELECT * FROM jobs WHERE {where} ORDER BY seq", params)]


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


def _log_change(job: JobRecord, old: str) -> None:
    log.info("job %s %s->%s chat=%s", job.id, old, job.status, job.chat_key)


class JobLedger:
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
        request_json = json.dumps(dict(request), ensure_ascii=False)
        origin_json = json.dumps(dict(origin or {}), ensure_ascii=False)
        now = utc_timestamp()
        # The record as a later read returns it (JSON round trip: tuples become lists), without that read.
        job = JobRecord(
            id=f"job_{secrets.token_hex(6)}", chat_key=chat_key, user_key=user_key,
            status="generating" if started else "queued", prompt=prompt, requested=requested,
            origin=json.loads(origin_json), artifact_ids=(), error=None, created_at=now, updated_at=now,
            request=json.loads(request_json), owner=owner, lease_until=_lease_until(lease_s))
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
            return None if row is None else _record(row)

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
            return [_record(row) for row in conn.execute(
                "SELECT * FROM (SELECT * FROM jobs WHERE chat_key = ? ORDER BY seq DESC LIMIT ?) recent ORDER BY seq",
                (chat_key, limit))]

        return await self._db.run(tx, write=False)

    async def unsettled(self) -> list[JobRecord]:
        """Jobs still queued or generating, oldest first (their owners may be alive or gone)."""
        return await self._db.run(lambda conn: _select(conn, _UNSETTLED, ()), write=False)

    async def renew(self, owner: str, lease_s: float) -> int:
        """Extend the lease of every job ``owner`` runs or is delivering; returns how many."""
        until = _lease_until(lease_s)

        def tx(conn: sqlite3.Connection) -> int:
            return conn.execute(f"UPDATE jobs SET lease_until = ? WHERE owner = ? AND ({_UNSETTLED} "
                                "OR status = 'stored')", (until, owner)).rowcount

        return await self._db.run(tx)

    async def settle_orphans(self, owner: str, is_dead: OwnerCheck,
                             reason: str = "interrupted by a restart") -> list[JobRecord]:
        """Settle unsettled jobs of other owners whose lease has lapsed (or who never had one) or whose
        owner ``is_dead``: "stored" when images already arrived, else "failed" with ``reason``. One write
        transaction (SQLite serialises writers, across processes too), so each job is settled once."""
        def tx(conn: sqlite3.Connection) -> list[tuple[str, JobRecord]]:
            now = utc_timestamp()  # after the write lock is ours: waiting for it may take a while
            settled = []
            dead: dict[str, bool] = {}  # one check per owner: the write lock is held meanwhile
            for job in _select(conn, _UNSETTLED, ()):
                if job.owner == owner:
                    continue
                if job.lease_until is not None and job.lease_until >= now:  # a live lease: is its owner gone?
                    if job.owner is None:
                        continue
                    if job.owner not in dead:
                        dead[job.owner] = is_dead(job.owner)
                    if not dead[job.owner]:
                        continue
                if job.artifact_ids:
                    updated = _write(conn, job.id, "stored", job.artifact_ids, job.error)
                else:  # its chat still has to hear about it: ``claim_announcements``
                    conn.execute("UPDATE jobs SET announce = 'interrupted' WHERE id = ?", (job.id,))
                    updated = _write(conn, job.id, "failed", job.artifact_ids, reason)
                settled.append((job.status, updated))
            return settled

        settled = await self._db.run(tx)
        for old, job in settled:
            _log_change(job, old)
        return [job for _, job in settled]


    async def claim_deliveries(self, owner: str, lease_s: float, platform: str, is_dead: OwnerCheck,
                               skip: Collection[str] = ()) -> list[JobRecord]:
        """Stored jobs of ``platform`` nobody is delivering (their owner is gone or its lease lapsed, or
        they never had one), now held by ``owner`` for ``lease_s``, oldest first. Each job goes to one
        caller; a job another live owner holds is left alone, and so are ``skip`` (the caller's own)."""
        low, high = platform_range(platform)
        until = _lease_until(lease_s)

        def tx(conn: sqlite3.Connection) -> list[JobRecord]:
            now = utc_timestamp()
            claimed = []
            for job in _select(conn, "status = 'stored' AND chat_key >= ? AND chat_key < ?", (low, high)):
                held = job.owner is not None and job.lease_until is not None and job.lease_until >= now
                if job.id in skip or (job.owner != owner and held and not is_dead(job.owner or "")):
                    continue
                conn.execute("UPDATE jobs SET owner = ?, lease_until = ? WHERE id = ?", (owner, until, job.id))
                claimed.append(_fetch(conn, job.id))
            return claimed

        return await self._db.run(tx)

    async def claim_announcements(self, platform: str) -> list[JobRecord]:
        """Jobs of ``platform`` that settled without an image and whose chat has not heard so yet; each is
        handed to one caller, once."""
        low, high = platform_range(platform)

        def tx(conn: sqlite3.Connection) -> list[JobRecord]:
            jobs = _select(conn, "announce IS NOT NULL AND chat_key >= ? AND chat_key < ?", (low, high))
            conn.executemany("UPDATE jobs SET announce = NULL WHERE id = ?", [(job.id,) for job in jobs])
            return jobs

        return await self._db.run(tx)


if TYPE_CHECKING:
    def _implements_the_protocols(db: Database) -> tuple[StateStore, JobStore]:
        """Never called: ``mypy core`` proves the SQLite engine still fits the seam the service uses."""
        return ChatState(db), JobLedger(db)
