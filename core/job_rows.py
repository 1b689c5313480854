"""The job ledger's row helpers: reading a ``jobs`` row into a ``JobRecord`` and drafting a new job (both
engines: ``core.jobs``, ``core.job_claims`` and ``core.postgres.jobs``), and for SQLite writing a status,
selecting in order, lease deadlines, and the transition log line (logger ``core.jobs``)."""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from core.db import utc_timestamp
from core.stores import JobRecord

log = logging.getLogger("core.jobs")

_UNSETTLED = "status IN ('queued', 'generating')"


def _lease_until(lease_s: float) -> str | None:
    if lease_s <= 0:
        return None
    return (datetime.now(UTC) + timedelta(seconds=lease_s)).isoformat(timespec="milliseconds")


class _Row(Protocol):
    """A ``jobs`` row as either engine returns it (``sqlite3.Row``, ``asyncpg.Record``)."""

    def __getitem__(self, key: str) -> Any: ...


def job_record(row: _Row) -> JobRecord:
    """A ``jobs`` row of either engine as a ``JobRecord``."""
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



def new_job(*, chat_key: str, user_key: str | None, prompt: str, requested: int, request: Mapping[str, Any],
            origin: Mapping[str, Any] | None, started: bool, owner: str | None,
            lease_s: float) -> tuple[JobRecord, str, str]:
    """A new job for either engine to insert: its record (as a later read returns it: JSON round trip,
    tuples become lists, without that read) and its request and origin as JSON."""
    request_json = json.dumps(dict(request), ensure_ascii=False)
    origin_json = json.dumps(dict(origin or {}), ensure_ascii=False)
    now = utc_timestamp()
    job = JobRecord(
        id=f"job_{secrets.token_hex(6)}", chat_key=chat_key, user_key=user_key,
        status="generating" if started else "queued", prompt=prompt, requested=requested,
        origin=json.loads(origin_json), artifact_ids=(), error=None, created_at=now, updated_at=now,
        request=json.loads(request_json), owner=owner, lease_until=_lease_until(lease_s))
    return job, request_json, origin_json


def _fetch(conn: sqlite3.Connection, job_id: str) -> JobRecord:
    row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise KeyError(f"unknown job {job_id!r}")
    return job_record(row)


def _write(
    conn: sqlite3.Connection, job_id: str, status: str, ids: Sequence[str], error: str | None
) -> JobRecord:
    conn.execute(
        "UPDATE jobs SET status = ?, artifact_ids = ?, error = ?, updated_at = ? WHERE id = ?",
        (status, json.dumps(list(ids)), error, utc_timestamp(), job_id),
    )
    return _fetch(conn, job_id)


def _select(conn: sqlite3.Connection, where: str, params: Sequence[object]) -> list[JobRecord]:
    return [job_record(row) for row in conn.execute(f"SELECT * FROM jobs WHERE {where} ORDER BY seq", params)]


def _log_change(job: JobRecord, old: str) -> None:
    log.info("job %s %s->%s chat=%s", job.id, old, job.status, job.chat_key)
