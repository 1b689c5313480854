"""The storage protocols (core/stores.py) on PostgreSQL, for several pixbot processes sharing one database.

``stores = await open_postgres(url)`` opens a small asyncpg pool, migrates the schema (see ``schema``) and
gives ``stores.state`` (a ``StateStore``), ``stores.jobs`` (a ``JobStore``) and ``stores.coordination`` (a
``CoordinationStore``) on it; ``await stores.close()`` or ``async with stores:`` ends it. It behaves as the
SQLite engine does (``tests/storage`` runs the same tests on both), with PostgreSQL's own primitives for what
must hold across processes: quotas are one ``INSERT … ON CONFLICT DO UPDATE … WHERE … RETURNING``, a job's
transitions read its row ``FOR UPDATE`` in the statement that writes it, orphaned jobs and stored jobs to
deliver are claimed with ``FOR UPDATE SKIP LOCKED``, things done once rest on ``INSERT … ON CONFLICT DO
NOTHING``, and a lease is decided under its row's lock. Failures of the database or the connection surface
as ``core.errors.InternalError``.

Searching folds case with PostgreSQL's ``lower`` under the ICU root collation where the server has ICU
(else the database's own, which in a "C" database folds ASCII only), with ``ß`` → ``ss`` and ``ς`` → ``σ``:
that is Python's ``casefold`` (SQLite's search) for all but rare characters (ligatures such as ``ﬁ``,
Cherokee, ``µ``/``ſ`` and the like), which then match only as typed.
"""

from __future__ import annotations

from collections.abc import Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from core.postgres.coordination import PostgresCoordination
from core.postgres.jobs import PostgresJobLedger
from core.postgres.pool import Pool
from core.postgres.schema import SCHEMA_VERSION, migrate
from core.postgres.state import PostgresChatState
from core.stores import CoordinationStore, JobStore, StateStore

__all__ = ["SCHEMA_VERSION", "Opening", "PostgresChatState", "PostgresCoordination", "PostgresJobLedger",
           "PostgresStores", "open_postgres"]

#: Connections per process: every call holds one for a single statement, so a few serve many tasks.
POOL_MIN: Final = 1
POOL_MAX: Final = 4

_ICU_ROOT: Final = "und-x-icu"


class PostgresStores:
    """The PostgreSQL engine: ``state``, ``jobs`` and ``coordination`` on one pool. Build it with
    ``await PostgresStores.open(url)`` (or ``open_postgres``)."""

    def __init__(self, pool: Pool, state: PostgresChatState, jobs: PostgresJobLedger,
                 coordination: PostgresCoordination) -> None:
        self._pool = pool
        self._closed = False
        self.state = state
        self.jobs = jobs
        self.coordination = coordination
        #: The database's schema version (this code's: ``open`` migrated it, or refused it).
        self.schema_version = SCHEMA_VERSION
        #: The schema versions this open applied (empty when the database was up to date).
        self.migrated: list[int] = []

    @classmethod
    async def open(cls, url: str, *, min_size: int = POOL_MIN, max_size: int = POOL_MAX) -> PostgresStores:
        """Connect to ``url`` (``postgresql://user:password@host:port/database``) and migrate the schema.
        Several processes may open one database at once: migrations take turns under an advisory lock."""
        pool = await Pool.open(url, min_size=min_size, max_size=max_size)
        try:
            async with pool.connection() as conn:
                migrated = await migrate(conn)
                has_icu = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collname = $1)",
                                              _ICU_ROOT)
        except BaseException:
            pool.terminate()
            raise
        fold = f'lower({{}} COLLATE "{_ICU_ROOT}")' if has_icu else "lower({})"
        fold = f"replace(replace({fold}, 'ß', 'ss'), 'ς', 'σ')"  # the foldings German and Greek text meets
        stores = cls(pool, PostgresChatState(pool, fold), PostgresJobLedger(pool), PostgresCoordination(pool))
        stores.migrated = migrated
        return stores

    async def close(self) -> None:
        """Close the pool once the calls under way finish. Safe to call twice."""
        if not self._closed:
            self._closed = True
            await self._pool.close()

    async def __aenter__(self) -> PostgresStores:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


class Opening:
    """What ``open_postgres`` returns: await it for the stores (closing them is then the caller's), or
    ``async with`` it to have them closed when the block ends."""

    __slots__ = ("_max_size", "_min_size", "_stores", "_url")

    def __init__(self, url: str, min_size: int, max_size: int) -> None:
        self._url, self._min_size, self._max_size = url, min_size, max_size
        self._stores: PostgresStores | None = None

    def __await__(self) -> Generator[Any, None, PostgresStores]:
        return PostgresStores.open(self._url, min_size=self._min_size, max_size=self._max_size).__await__()

    async def __aenter__(self) -> PostgresStores:
        self._stores = await self
        return self._stores

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._stores is not None:
            await self._stores.close()


def open_postgres(url: str, *, min_size: int = POOL_MIN, max_size: int = POOL_MAX) -> Opening:
    """Open the PostgreSQL engine at ``url`` (``postgresql://user:password@host:port/database``), migrated:
    ``stores = await open_postgres(url)`` … ``await stores.close()``, or
    ``async with open_postgres(url) as stores:``. ``stores.state``, ``stores.jobs`` and ``stores.coordination``
    are the stores."""
    return Opening(url, min_size, max_size)


if TYPE_CHECKING:
    def _implements_the_protocols(stores: PostgresStores) -> tuple[StateStore, JobStore, CoordinationStore]:
        """Never called: ``mypy core`` proves the PostgreSQL engine fits the seam the service uses."""
        return stores.state, stores.jobs, stores.coordination
