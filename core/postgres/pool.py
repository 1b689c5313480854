"""One asyncpg pool, with every driver or server failure surfacing as ``InternalError`` (as core/db.py's do).

Each call is one statement on a pooled connection: asyncpg prepares it once per connection and caches it,
so a repeated call costs one round trip. Connections go back to the pool without asyncpg's reset query
(``RESET ALL``, ``UNLISTEN *``…, a second round trip per call): the stores never change session state,
and an open transaction is still rolled back on release.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final

import asyncpg

from core.errors import InternalError

__all__ = ["DB_ERRORS", "Pool", "Row", "db_error", "rowcount"]

#: A result row: asyncpg's Record, read by column name.
Row = Mapping[str, Any]

#: What a failed statement or connection raises: server errors, driver errors, network errors.
DB_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


def db_error(exc: BaseException) -> InternalError:
    return InternalError(detail=f"state database: {type(exc).__name__}: {exc}")


def rowcount(status: str) -> int:
    """The row count of a command tag (``"UPDATE 3"``, ``"INSERT 0 1"``)."""
    tail = status.rpartition(" ")[2]
    return int(tail) if tail.isdigit() else 0


async def _keep_session(conn: Any) -> None:
    """The pool's reset: nothing beyond asyncpg's own rollback of an unfinished transaction."""


class Pool:
    """The stores' access to the database; build it with ``await Pool.open(url)``."""

    __slots__ = ("_pool",)

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str, *, min_size: int = 1, max_size: int = 4) -> Pool:
        try:
            pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, reset=_keep_session)
        except DB_ERRORS as exc:
            raise db_error(exc) from exc
        return cls(pool)

    async def fetch(self, sql: str, *args: object) -> list[Row]:
        try:
            return list(await self._pool.fetch(sql, *args))
        except DB_ERRORS as exc:
            raise db_error(exc) from exc

    async def fetchrow(self, sql: str, *args: object) -> Row | None:
        try:
            row: Row | None = await self._pool.fetchrow(sql, *args)
        except DB_ERRORS as exc:
            raise db_error(exc) from exc
        return row

    async def fetchval(self, sql: str, *args: object) -> Any:
        try:
            return await self._pool.fetchval(sql, *args)
        except DB_ERRORS as exc:
            raise db_error(exc) from exc

    async def execute(self, sql: str, *args: object) -> str:
        """Run one statement; returns its command tag (see ``rowcount``)."""
        try:
            return str(await self._pool.execute(sql, *args))
        except DB_ERRORS as exc:
            raise db_error(exc) from exc

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A connection of the pool to itself, outside any transaction (migrations take their own)."""
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except DB_ERRORS as exc:
            raise db_error(exc) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """A connection inside a transaction: committed when the block ends, rolled back if it raises."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                yield conn
        except DB_ERRORS as exc:
            raise db_error(exc) from exc

    async def close(self) -> None:
        try:
            await self._pool.close()
        except DB_ERRORS as exc:
            raise db_error(exc) from exc

    def terminate(self) -> None:
        self._pool.terminate()
