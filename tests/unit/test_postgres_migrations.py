"""The PostgreSQL schema's migrations (core/postgres/schema.py) against a real server: processes starting
together migrate once, a reopen changes nothing, a newer schema is refused, failures are InternalError."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from core.errors import InternalError
from core.postgres import SCHEMA_VERSION, PostgresStores, open_postgres
from core.postgres.schema import _MIGRATIONS, MIGRATION_LOCK
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
    conn = await asyncpg.connect(postgres_url)
    try:
        async with conn.transaction():
            for statement in _MIGRATIONS[0]:
                await conn.execute(statement)
            await conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
            await conn.execute("INSERT INTO schema_version VALUES (1, 'then')")
            await conn.execute("INSERT INTO artifacts (artifact_id, chat_key, prompt, path, created_at) "
                               "VALUES ('img_000000000001', 'web:1', 'old', '/media/old.png', '2025-01-01')")
    finally:
        await conn.close()
    async with open_postgres(postgres_url) as stores:
        assert stores.migrated == list(range(2, SCHEMA_VERSION + 1))
        (row,) = await stores.state.missing_details()  # from before the gallery's details: to be filled
        assert (row.artifact_id, row.provider, row.width) == ("img_000000000001", "", 0)


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
