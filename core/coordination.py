"""What processes sharing the state database agree on (SQLite engine): the deployment's settings, things
done once, named roles held by one process at a time (leases), numbered slots of a shared limit, and who
is alive. Each method is one write
transaction, and SQLite serialises writers across processes, so every promise holds across processes."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from core.db import Database, utc_timestamp
from core.owners import Holders
from core.stores import CoordinationStore, OwnerCheck, ProcessInfo

__all__ = ["Coordination", "free_slot", "held_slots", "lease_end", "seen_since"]


def lease_end(lease_s: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=lease_s)).isoformat(timespec="milliseconds")


def seen_since(within_s: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=within_s)).isoformat(timespec="milliseconds")


class Coordination:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def setting(self, key: str, default: str) -> str:
        def tx(conn: sqlite3.Connection) -> str:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, default))
            return str(conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

        return await self._db.run(tx)

    async def claim_once(self, key: str) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            return conn.execute("INSERT INTO once_keys (key, created_at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                                (key, utc_timestamp())).rowcount == 1

        return await self._db.run(tx)

    async def forget_once_before(self, day: date) -> int:
        return await self._db.run(lambda conn: conn.execute(
            "DELETE FROM once_keys WHERE created_at < ?", (day.isoformat(),)).rowcount)

    async def hold_lease(self, name: str, owner: str, lease_s: float, is_dead: OwnerCheck) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            now = utc_timestamp()
            row = conn.execute("SELECT owner, lease_until FROM leases WHERE name = ?", (name,)).fetchone()
            if row is not None and row["owner"] != owner and row["lease_until"] >= now and not is_dead(row["owner"]):
                return False
            conn.execute("INSERT INTO leases (name, owner, lease_until) VALUES (?, ?, ?) ON CONFLICT (name) "
                         "DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until",
                         (name, owner, lease_end(lease_s)))
            return True

        return await self._db.run(tx)

    async def release_lease(self, name: str, owner: str) -> None:
        await self._db.run(lambda conn: conn.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner)))

    async def heartbeat(self, owner: str, roles: Sequence[str], started_at: str) -> None:
        await self._db.run(lambda conn: conn.execute(
            "INSERT INTO processes (owner, roles, started_at, seen_at) VALUES (?, ?, ?, ?) ON CONFLICT (owner) "
            "DO UPDATE SET roles = excluded.roles, seen_at = excluded.seen_at",
            (owner, json.dumps(list(roles)), started_at, utc_timestamp())))

    async def live_processes(self, within_s: float) -> list[ProcessInfo]:
        def tx(conn: sqlite3.Connection) -> list[ProcessInfo]:
            rows = conn.execute("SELECT owner, roles, started_at, seen_at FROM processes WHERE seen_at >= ? "
                                "ORDER BY started_at, owner", (seen_since(within_s),))
            return [ProcessInfo(r["owner"], tuple(json.loads(r["roles"])), r["started_at"], r["seen_at"])
                    for r in rows]

        return await self._db.run(tx, write=False)

    async def forget_process(self, owner: str) -> None:
        await self._db.run(lambda conn: conn.execute("DELETE FROM processes WHERE owner = ?", (owner,)))

    async def acquire_slot(self, name: str, capacity: int, owner: str, lease_s: float,
                           is_dead: OwnerCheck) -> int | None:
        if capacity < 1:
            return None

        def tx(conn: sqlite3.Connection) -> int | None:
            now = utc_timestamp()  # after the write lock is ours
            rows = conn.execute("SELECT slot, owner, lease_until FROM slots WHERE name = ?", (name,)).fetchall()
            held = held_slots([(int(r["slot"]), r["owner"], r["lease_until"]) for r in rows], now, is_dead)
            free = free_slot(held, capacity)
            if free is not None:
                conn.execute("INSERT INTO slots (name, slot, owner, lease_until) VALUES (?, ?, ?, ?) "
                             "ON CONFLICT (name, slot) DO UPDATE SET owner = excluded.owner, "
                             "lease_until = excluded.lease_until", (name, free, owner, lease_end(lease_s)))
            return free

        return await self._db.run(tx)

    async def release_slot(self, name: str, slot: int, owner: str) -> None:
        await self._db.run(lambda conn: conn.execute(
            "DELETE FROM slots WHERE name = ? AND slot = ? AND owner = ?", (name, slot, owner)))

    async def renew_slots(self, owner: str, lease_s: float) -> int:
        return await self._db.run(lambda conn: conn.execute(
            "UPDATE slots SET lease_until = ? WHERE owner = ?", (lease_end(lease_s), owner)).rowcount)


def held_slots(rows: Iterable[tuple[int, str, str]], now: str, is_dead: OwnerCheck) -> set[int]:
    """The slot numbers of ``(slot, owner, lease_until)`` rows still held: a live lease of an owner not
    known to be gone (each owner checked once)."""
    holders = Holders(is_dead, now)
    return {slot for slot, holder, until in rows if holders.hold(holder, until)}


def free_slot(held: Collection[int], capacity: int) -> int | None:
    """The lowest slot number below ``capacity`` not ``held``; None when ``capacity`` slots are held (slots
    numbered above it, held since a larger capacity was configured, count too)."""
    if len(held) >= capacity:
        return None
    return next(n for n in range(capacity) if n not in held)


if TYPE_CHECKING:
    def _implements_the_protocol(db: Database) -> CoordinationStore:
        return Coordination(db)
