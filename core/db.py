"""The state database: one SQLite file in WAL mode, its schema and migrations, and a single
worker thread that runs every statement off the event loop, serialised."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import traceback
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

from core.errors import InternalError

__all__ = ["SCHEMA_VERSION", "Database", "open_database", "utc_timestamp"]

T = TypeVar("T")

#: Bumped by every schema change; ``Database.open`` migrates older files step by step.
SCHEMA_VERSION: Final = 5
_MEMORY: Final = ":memory:"
_BUSY_TIMEOUT_MS: Final = 5000

# Version 1. CREATE ... IF NOT EXISTS so a half-initialised file is completed, never an error.
_SCHEMA_V1: Final = (
    """CREATE TABLE IF NOT EXISTS chats (
        chat_key TEXT PRIMARY KEY,
        last_artifact_id TEXT,
        aspect_ratio TEXT,
        count INTEGER,
        delivery TEXT,
        updated_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS artifacts (
        seq INTEGER PRIMARY KEY,
        artifact_id TEXT NOT NULL UNIQUE,
        chat_key TEXT NOT NULL,
        job_id TEXT,
        prompt TEXT NOT NULL,
        path TEXT NOT NULL,
        created_at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS artifacts_by_chat ON artifacts (chat_key, seq)",
    """CREATE TABLE IF NOT EXISTS messages (
        chat_key TEXT NOT NULL,
        message_id TEXT NOT NULL,
        artifact_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (chat_key, message_id)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS usage (
        user_key TEXT NOT NULL,
        day TEXT NOT NULL,
        used INTEGER NOT NULL,
        PRIMARY KEY (user_key, day)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS jobs (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        chat_key TEXT NOT NULL,
        user_key TEXT,
        status TEXT NOT NULL,
        prompt TEXT NOT NULL,
        requested INTEGER NOT NULL,
        request TEXT NOT NULL,
        origin TEXT NOT NULL,
        artifact_ids TEXT NOT NULL,
        error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq)",
)
# Version 2: a running job names the process that runs it and how long that claim lasts. The partial
# index holds only unsettled jobs (a handful, however long the history), which every lease renewal and
# every orphan sweep reads; its WHERE must stay the text ``core.jobs`` queries with, or SQLite ignores it.
_OWNERS_V2: Final = (
    "ALTER TABLE jobs ADD COLUMN owner TEXT",
    "ALTER TABLE jobs ADD COLUMN lease_until TEXT",
    "CREATE INDEX IF NOT EXISTS jobs_unsettled ON jobs (owner, seq) WHERE status IN ('queued', 'generating')",
)
# Version 3: what a gallery filters and shows without reading every sidecar, and the indexes its queries
# use: an image's edits (lineage, walked by parent_id; the partial index skips the many new images), one
# provider's images and its distinct providers, and a chat's jobs (a studio thread). Rows from before keep
# the defaults until ``ImageService.backfill`` fills them from their sidecars.
_GALLERY_V3: Final = (
    "ALTER TABLE artifacts ADD COLUMN provider TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE artifacts ADD COLUMN model TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE artifacts ADD COLUMN width INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE artifacts ADD COLUMN height INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE artifacts ADD COLUMN parent_id TEXT",
    "CREATE INDEX IF NOT EXISTS artifacts_by_parent ON artifacts (parent_id) WHERE parent_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS artifacts_by_provider ON artifacts (provider, seq)",
    "CREATE INDEX IF NOT EXISTS jobs_by_chat ON jobs (chat_key, seq)",
)
# Version 4: what several processes agree on. ``meta``: facts of the deployment (the data dir's identity);
# ``once_keys``: things done once across processes (a Telegram update); ``leases``: named roles one process
# holds at a time (the Telegram poller); ``processes``: who is alive, for ``pixbot doctor``; a job's
# ``announce``: a chat that still has to hear its job was cut short (claimed by one process).
_COORDINATION_V4: Final = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS once_keys (key TEXT PRIMARY KEY, created_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, lease_until TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS processes (owner TEXT PRIMARY KEY, roles TEXT NOT NULL, started_at TEXT NOT NULL,
        seen_at TEXT NOT NULL)""",
    "ALTER TABLE jobs ADD COLUMN announce TEXT",
    "CREATE INDEX IF NOT EXISTS jobs_to_announce ON jobs (chat_key) WHERE announce IS NOT NULL",
)
# Version 5: ``slots``: the numbered slots of a limit shared by every process (``limits.globalConcurrency``:
# provider calls in flight per provider), each held by one owner under a lease it renews while the call runs;
# a released slot's row is deleted, a lapsed one is taken over. The primary key gives each slot one holder.
_SLOTS_V5: Final = (
    """CREATE TABLE IF NOT EXISTS slots (name TEXT NOT NULL, slot INTEGER NOT NULL, owner TEXT NOT NULL,
        lease_until TEXT NOT NULL, PRIMARY KEY (name, slot)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS slots_by_owner ON slots (owner)",
)
#: _MIGRATIONS[n] takes a file from user_version n to n + 1.
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (_SCHEMA_V1, _OWNERS_V2, _GALLERY_V3, _COORDINATION_V4,
                                                   _SLOTS_V5)


def utc_timestamp() -> str:
    """Now as ISO-8601 UTC, the one timestamp format in the database."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _db_error(exc: sqlite3.Error) -> InternalError:
    return InternalError(detail=f"state database: {type(exc).__name__}: {exc}")


def _casefold(value: Any) -> Any:
    """SQL ``casefold(text)``: Unicode case folding (SQLite's own ``lower`` and ``LIKE`` fold ASCII only)."""
    return value.casefold() if isinstance(value, str) else value


def _connect(path: str) -> sqlite3.Connection:
    """Open, configure and migrate; runs on the database thread."""
    if path != _MEMORY:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves (see Database.run).
    conn = sqlite3.connect(
        path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    try:
        conn.row_factory = sqlite3.Row
        conn.create_function("casefold", 1, _casefold, deterministic=True)
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        if path != _MEMORY:
            _use_wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("BEGIN IMMEDIATE")
        try:
            _migrate(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except BaseException:
        conn.close()
        raise
    return conn


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL unless another process already did. The switch needs an exclusive lock
    and SQLite does not wait for one (no busy handler), so two processes opening a new file at once
    retry briefly instead of failing."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _migrate(conn: sqlite3.Connection) -> None:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        # Only an operator meets this (at start-up, after a downgrade): say what happened, not "try again".
        detail = f"state database has schema version {version}; this pixbot knows {SCHEMA_VERSION}"
        raise InternalError(f"The {detail}: it was written by a newer pixbot. Upgrade pixbot, or restore "
                            "the backup taken before the upgrade.", detail=detail)
    for step in _MIGRATIONS[version:]:
        for statement in step:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


class Database:
    """One SQLite connection driven by one dedicated thread.

    Every statement runs off the event loop, and statements from this process are serialised by
    the single worker; other processes on the same file are handled by WAL and the busy timeout.
    Build it with ``await Database.open(path)`` (or ``open_database``), not the constructor.
    """

    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor, path: str) -> None:
        self._conn = conn
        self._executor = executor
        self._closed = False
        self.path = path

    @classmethod
    async def open(cls, path: Path | str) -> Database:
        """Open (creating parent directories and the schema); ``":memory:"`` for a private in-memory DB."""
        target = str(path)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixbot-db")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(executor, _connect, target)
        except sqlite3.Error as exc:
            executor.shutdown(wait=False)
            raise _db_error(exc) from exc
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(conn, executor, target)

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """Run ``fn(conn)`` on the database thread inside one transaction; commit, or roll back if it raises.

        ``write=True`` takes the write lock up front (BEGIN IMMEDIATE), so a read-modify-write in
        ``fn`` is atomic across processes too. ``fn`` must not keep the connection or its cursors.
        Return plain values (a returned cursor is closed first). If the awaiting task is cancelled
        after ``fn`` started, the transaction still completes.
        SQLite failures surface as ``InternalError`` (the cause is chained and in ``detail``).
        """
        if self._closed:
            raise InternalError(detail="state database is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._transaction, fn, write)

    def _transaction(self, fn: Callable[[sqlite3.Connection], T], write: bool) -> T:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = fn(conn)
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                # Free fn's locals (cursors among them) here, not on the loop thread: see below.
                traceback.clear_frames(exc.__traceback__)
                raise
            if isinstance(result, sqlite3.Cursor):
                # A cursor freed on the loop thread would reset its statement there, racing this
                # thread ("bad parameter or other API misuse"); close it here instead.
                result.close()
            conn.execute("COMMIT")
            return result
        except sqlite3.Error as exc:
            raise _db_error(exc) from exc

    async def close(self) -> None:
        """Finish the statements already queued, then close the connection. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
        finally:
            self._executor.shutdown(wait=False)

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


@asynccontextmanager
async def open_database(path: Path | str) -> AsyncIterator[Database]:
    """``async with open_database(config.state_path) as db:`` for the composition root."""
    db = await Database.open(path)
    try:
        yield db
    finally:
        await db.close()
