"""The SQLite job ledger's row helpers, shared by ``core.jobs`` (the transitions) and ``core.job_claims``
(leases, orphans and claims): reading a ``jobs`` row into a ``JobRecord``, writing a status, selecting
in order, lease deadlines, and the transition log line (logger ``core.jobs``)."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from core.db import utc_timestamp
from core.stores import JobRecord

log = logging.getLogger("core.jobs")

_UNSETTLED = "status IN ('queued', 'generating')"


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


def _log_change(job: JobRecord, old: str) -> None:
    log.info("job %s %s->%s chat=%s", job.id, old, job.status, job.chat_key)
