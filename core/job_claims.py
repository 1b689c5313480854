"""The SQLite job ledger's multi-process side: leases and their renewal, settling the jobs of owners
that are gone (``settle_orphans``), handing stored jobs and unannounced failures to one caller each
(``claim_deliveries``, ``claim_announcements``), and listing unsettled jobs. Mixed into
``core.jobs.JobLedger`` as ``LedgerClaims``."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection

from core.db import Database, utc_timestamp
from core.job_rows import _UNSETTLED, _fetch, _lease_until, _log_change, _select, _write
from core.owners import Holders
from core.state import platform_range
from core.stores import JobRecord, OwnerCheck

__all__ = ["LedgerClaims"]


class LedgerClaims:
    """Which process holds which job, and what happens to the jobs of one that is gone; needs ``self._db``."""

    _db: Database

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
            # Now is after the write lock is ours: waiting for it may take a while.
            holders = Holders(is_dead, utc_timestamp())
            settled = []
            for job in _select(conn, _UNSETTLED, ()):
                if job.owner == owner or holders.hold(job.owner, job.lease_until):
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
            holders = Holders(is_dead, utc_timestamp())
            claimed = []
            for job in _select(conn, "status = 'stored' AND chat_key >= ? AND chat_key < ?", (low, high)):
                if job.id in skip or (job.owner not in (None, owner) and holders.hold(job.owner, job.lease_until)):
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
