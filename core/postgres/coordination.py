"""What processes sharing the database agree on, on PostgreSQL: ``core.coordination.Coordination``'s behaviour.

Things done once and the first setting written rest on the primary keys: ``INSERT … ON CONFLICT DO NOTHING``
waits for a concurrent insert of the same key and then does nothing, so exactly one caller inserts. A lease
is decided under its row's lock (``SELECT … FOR UPDATE`` in a transaction), the holder's liveness checked
in Python meanwhile; two processes taking a free lease at once both insert, and the one that loses the
conflict reads the winner's row and decides again. A slot of a shared limit is taken the same way: the
name's slot rows are read ``FOR UPDATE`` (in slot order, so callers queue on the same first row rather than
deadlock), a lapsed or dead holder's row is taken under its lock, and a free number is inserted with ``ON
CONFLICT DO NOTHING``; a caller that loses that insert to a concurrent one reads the rows again. The primary
key (name, slot) gives each slot one holder. That caller starts a new transaction, so no one waits for rows
while holding rows of an earlier read (which could deadlock).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date

from core.coordination import free_slot, held_slots, lease_end, seen_since
from core.db import utc_timestamp
from core.postgres.pool import Pool, rowcount
from core.stores import OwnerCheck, ProcessInfo

__all__ = ["PostgresCoordination"]


class PostgresCoordination:
    """``CoordinationStore`` on PostgreSQL."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def setting(self, key: str, default: str) -> str:
        value = await self._pool.fetchval(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING RETURNING value", key, default)
        if value is None:  # written before (or by a concurrent caller, committed by now): a new snapshot sees it
            value = await self._pool.fetchval("SELECT value FROM meta WHERE key = $1", key)
        return str(value)

    async def claim_once(self, key: str) -> bool:
        return rowcount(await self._pool.execute(
            "INSERT INTO once_keys (key, created_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            key, utc_timestamp())) == 1

    async def forget_once_before(self, day: date) -> int:
        return rowcount(await self._pool.execute("DELETE FROM once_keys WHERE created_at < $1", day.isoformat()))

    async def hold_lease(self, name: str, owner: str, lease_s: float, is_dead: OwnerCheck) -> bool:
        async with self._pool.transaction() as conn:
            while True:
                row = await conn.fetchrow("SELECT owner, lease_until FROM leases WHERE name = $1 FOR UPDATE", name)
                if row is None:  # free: the first insert takes it; a loser reads the winner's row next round
                    if rowcount(await conn.execute(
                            "INSERT INTO leases (name, owner, lease_until) VALUES ($1, $2, $3) "
                            "ON CONFLICT (name) DO NOTHING", name, owner, lease_end(lease_s))):
                        return True
                    continue
                if row["owner"] != owner and row["lease_until"] >= utc_timestamp() and not is_dead(row["owner"]):
                    return False
                await conn.execute("UPDATE leases SET owner = $2, lease_until = $3 WHERE name = $1",
                                   name, owner, lease_end(lease_s))
                return True

    async def release_lease(self, name: str, owner: str) -> None:
        await self._pool.execute("DELETE FROM leases WHERE name = $1 AND owner = $2", name, owner)

    async def heartbeat(self, owner: str, roles: Sequence[str], started_at: str) -> None:
        await self._pool.execute(
            "INSERT INTO processes (owner, roles, started_at, seen_at) VALUES ($1, $2, $3, $4) ON CONFLICT (owner) "
            "DO UPDATE SET roles = excluded.roles, seen_at = excluded.seen_at",
            owner, json.dumps(list(roles)), started_at, utc_timestamp())

    async def live_processes(self, within_s: float) -> list[ProcessInfo]:
        rows = await self._pool.fetch("SELECT owner, roles, started_at, seen_at FROM processes WHERE seen_at >= $1 "
                                      "ORDER BY started_at, owner", seen_since(within_s))
        return [ProcessInfo(r["owner"], tuple(json.loads(r["roles"])), r["started_at"], r["seen_at"]) for r in rows]

    async def forget_process(self, owner: str) -> None:
        await self._pool.execute("DELETE FROM processes WHERE owner = $1", owner)

    async def acquire_slot(self, name: str, capacity: int, owner: str, lease_s: float,
                           is_dead: OwnerCheck) -> int | None:
        if capacity < 1:
            return None
        while True:
            async with self._pool.transaction() as conn:
                rows = await conn.fetch("SELECT slot, owner, lease_until FROM slots WHERE name = $1 ORDER BY slot "
                                        "FOR UPDATE", name)
                held = held_slots([(int(r["slot"]), r["owner"], r["lease_until"]) for r in rows], utc_timestamp(),
                                  is_dead)
                free = free_slot(held, capacity)
                if free is None:
                    return None
                if any(int(r["slot"]) == free for r in rows):  # lapsed or its holder gone: ours under its lock
                    await conn.execute("UPDATE slots SET owner = $3, lease_until = $4 WHERE name = $1 AND slot = $2",
                                       name, free, owner, lease_end(lease_s))
                    return free
                if rowcount(await conn.execute(
                        "INSERT INTO slots (name, slot, owner, lease_until) VALUES ($1, $2, $3, $4) "
                        "ON CONFLICT (name, slot) DO NOTHING", name, free, owner, lease_end(lease_s))):
                    return free
            # Another caller inserted that number first: read the rows again in a new transaction (holding no
            # locks while waiting for others' rows, so callers never wait for each other in a circle).

    async def release_slot(self, name: str, slot: int, owner: str) -> None:
        await self._pool.execute("DELETE FROM slots WHERE name = $1 AND slot = $2 AND owner = $3", name, slot, owner)

    async def renew_slots(self, owner: str, lease_s: float) -> int:
        # Rows locked in (name, slot) order, as ``acquire_slot`` locks them: the two never wait in a circle.
        return rowcount(await self._pool.execute(
            "UPDATE slots s SET lease_until = $2 FROM (SELECT name, slot FROM slots WHERE owner = $1 "
            "ORDER BY name, slot FOR UPDATE) mine WHERE s.name = mine.name AND s.slot = mine.slot",
            owner, lease_end(lease_s)))
