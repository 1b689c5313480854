"""The PostgreSQL schema's migrations (core/postgres/schema.py) against a real server: processes starting
together migrate once, a reopen changes nothing, older databases are migrated step by step with their rows,
a newer schema is refused, failures are InternalError."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from core import db
from core.errors import InternalError
from core.postgres import SCHEMA_VERSION, PostgresStores, open_postgres
from core.postgres.schema import _MIGRATIONS, MIGRATION_LOCK
from core.stores import ChatBusy
from tests.storage.postgres_server import PostgresServer
from tests.storage.postgres_server import postgres_server as postgres_server  # the fixtures, for this module
from tests.storage.postgres_server import postgres_url as postgres_url


async def _versions(url: str) -> list[tuple[int, str]]:
    conn = await asyncpg.connect(url)
    try:
        return [(row["version"], row["applied_at"])
                for row in await conn.fetch("SELECT version, applied_at FROM schema_version ORDER BY version")]
    finally:
        await conn.close()


def test_version_numbers_mean_the_same_schema_in_both_engines() -> None:
    assert SCHEMA_VERSION == db.SCHEMA_VERSION == len(_MIGRATIONS)


async def _at_version(url: str, version: int, *rows: str) -> None:
    """Leave the database as a pixbot of schema ``version`` would have, holding ``rows`` (SQL inserts)."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            for step in _MIGRATIONS[:version]:
                for statement in step:
                    await conn.execute(statement)
            await conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
            for applied in range(1, version + 1):
                await conn.execute("INSERT INTO schema_version VALUES ($1, 'then')", applied)
            for row in rows:
                await conn.execute(row)
    finally:
        await conn.close()


async def test_processes_opening_a_fresh_database_together_migrate_it_once(postgres_url: str) -> None:
    """Four pools (four server sessions, as four processes would have) open one empty database at once."""
    opened = await asyncio.gather(*(PostgresStores.open(postgres_url) for _ in range(4)))
    try:
        applied = sorted(version for stores in opened for version in stores.migrated)
        assert applied == list(range(1, SCHEMA_VERSION + 1))  # every step once, by whoever held the lock
        assert [version for version, _ in await _versions(postgres_url)] == list(range(1, SCHEMA_VERSION + 1))
        assert all(stores.schema_version == SCHEMA_VERSION for stores in opened)
        # every one of them works on the same tables
        totals = await asyncio.gather(*(stores.state.try_consume("u", 1, 0) for stores in opened))
        assert sorted(totals) == [1, 2, 3, 4]  # type: ignore[type-var]
    finally:
        await asyncio.gather(*(stores.close() for stores in opened))


async def test_reopening_an_up_to_date_database_changes_nothing(postgres_url: str) -> None:
    async with open_postgres(postgres_url) as stores:
        assert stores.migrated == list(range(1, SCHEMA_VERSION + 1))
        await stores.state.record_artifacts("web:1", [])
        await stores.state.update_settings("web:1", count=2)
    before = await _versions(postgres_url)
    stores = await open_postgres(postgres_url)
    try:
        assert stores.migrated == [] and (await stores.state.settings("web:1")).count == 2
    finally:
        await stores.close()
        await stores.close()  # twice is fine
    assert await _versions(postgres_url) == before


async def test_an_older_database_is_migrated_step_by_step(postgres_url: str) -> None:
    """A database left at version 1 (an older pixbot) gets the later steps only, and keeps its rows."""
    await _at_version(postgres_url, 1, "INSERT INTO artifacts (artifact_id, chat_key, prompt, path, created_at) "
                                       "VALUES ('img_000000000001', 'web:1', 'old', '/media/old.png', '2025-01-01')")
    async with open_postgres(postgres_url) as stores:
        assert stores.migrated == list(range(2, SCHEMA_VERSION + 1))
        (row,) = await stores.state.missing_details()  # from before the gallery's details: to be filled
        assert (row.artifact_id, row.provider, row.width) == ("img_000000000001", "", 0)


async def test_a_version_3_database_gains_coordination_and_keeps_its_jobs(postgres_url: str) -> None:
    """Version 4 adds the coordination tables and a job's ``announce``: jobs settled before it are not
    announced again, a stored one is still delivered, and the new tables work at once."""
    columns = ("(id, chat_key, status, prompt, requested, request, origin, artifact_ids, created_at, updated_at, "
               "owner, lease_until)")
    await _at_version(
        postgres_url, 3,
        f"INSERT INTO jobs {columns} VALUES ('job_stored', 'telegram:1', 'stored', 'a fox', 1, '{{}}', '{{}}', "
        "'[\"img_000000000001\"]', '2025-01-01', '2025-01-01', 'Z', NULL)",
        f"INSERT INTO jobs {columns} VALUES ('job_failed', 'telegram:1', 'failed', 'a cat', 1, '{{}}', '{{}}', "
        "'[]', '2025-01-01', '2025-01-01', NULL, NULL)")
    async with open_postgres(postgres_url) as stores:
        assert stores.migrated == [4, 5] and [v for v, _ in await _versions(postgres_url)] == [1, 2, 3, 4, 5]
        assert await stores.jobs.claim_announcements("telegram") == []
        (claimed,) = await stores.jobs.claim_deliveries("me", 30, "telegram", lambda owner: False)
        assert (claimed.id, claimed.owner, claimed.artifact_ids) == ("job_stored", "me", ("img_000000000001",))
        assert await stores.coordination.claim_once("k") is True
        assert await stores.coordination.setting("data_dir_id", "x") == "x"
        assert await stores.coordination.hold_lease("poller", "me", 30, lambda owner: False) is True
        await stores.coordination.heartbeat("me", ["web"], "2026-01-01T00:00:00.000+00:00")
        assert [p.roles for p in await stores.coordination.live_processes(30)] == [("web",)]


async def test_a_version_4_database_gains_shared_slots_and_keeps_its_running_jobs(postgres_url: str) -> None:
    """Version 5 adds ``slots`` (``limits.globalConcurrency``); jobs running under version 4 still count against
    the per-chat limit, and a lease taken under version 4 still holds."""
    columns = ("(id, chat_key, status, prompt, requested, request, origin, artifact_ids, created_at, updated_at, "
               "owner, lease_until)")
    await _at_version(
        postgres_url, 4,
        f"INSERT INTO jobs {columns} VALUES ('job_running', 'telegram:1', 'generating', 'a fox', 1, '{{}}', '{{}}', "
        "'[]', '2025-01-01', '2025-01-01', 'other', '2999-01-01T00:00:00.000+00:00')",
        "INSERT INTO leases (name, owner, lease_until) VALUES ('poller', 'other', '2999-01-01T00:00:00.000+00:00')")
    async with open_postgres(postgres_url) as stores:
        assert stores.migrated == [5] and [v for v, _ in await _versions(postgres_url)] == [1, 2, 3, 4, 5]
        assert await stores.coordination.acquire_slot("provider:openai", 1, "me", 30, lambda owner: False) == 0
        assert await stores.coordination.acquire_slot("provider:openai", 1, "you", 30, lambda owner: False) is None
        assert await stores.coordination.renew_slots("me", 30) == 1
        with pytest.raises(ChatBusy):
            await stores.jobs.create(chat_key="telegram:1", user_key=None, prompt="p", requested=1, request={},
                                     started=True, owner="me", lease_s=30, max_running_per_chat=1)
        assert await stores.coordination.hold_lease("poller", "me", 30, lambda owner: False) is False
    async with open_postgres(postgres_url) as stores:
        assert stores.migrated == []


async def test_a_database_from_a_newer_pixbot_is_refused(postgres_url: str) -> None:
    async with open_postgres(postgres_url):
        pass
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute("INSERT INTO schema_version VALUES ($1, 'later')", SCHEMA_VERSION + 1)
    finally:
        await conn.close()
    with pytest.raises(InternalError) as refused:
        await open_postgres(postgres_url)
    detail = f"state database has schema version {SCHEMA_VERSION + 1}; this pixbot knows {SCHEMA_VERSION}"
    assert refused.value.detail == detail
    assert str(refused.value) == (f"The {detail}: it was written by a newer pixbot. Upgrade pixbot, or restore "
                                  "the backup taken before the upgrade.")


async def test_migrations_wait_for_the_lock_another_process_holds(postgres_url: str) -> None:
    """While another session holds the migration lock, an open waits, then finds the work done or does it."""
    holder = await asyncpg.connect(postgres_url)
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        opening = asyncio.ensure_future(PostgresStores.open(postgres_url))
        await asyncio.sleep(0.3)
        assert not opening.done()
        await transaction.commit()
        stores = await asyncio.wait_for(opening, 10)
        assert stores.migrated == list(range(1, SCHEMA_VERSION + 1))
        await stores.close()
    finally:
        await holder.close()


async def test_database_failures_are_internal_errors(postgres_server: PostgresServer, postgres_url: str) -> None:
    with pytest.raises(InternalError) as missing:
        await open_postgres(postgres_server.url("no_such_database"))
    assert missing.value.detail is not None and missing.value.detail.startswith("state database: ")
    async with open_postgres(postgres_url) as stores:
        conn = await asyncpg.connect(postgres_url)
        try:
            await conn.execute("DROP TABLE usage, jobs")
        finally:
            await conn.close()
        with pytest.raises(InternalError) as broken:
            await stores.state.usage_today("u")
        assert "UndefinedTableError" in (broken.value.detail or "")
        with pytest.raises(InternalError):  # inside a transaction too
            await stores.jobs.settle_orphans("me", lambda owner: False)
