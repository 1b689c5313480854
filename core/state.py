"""Chat state in one SQLite file (WAL): the database and schema, last image, message map, settings, quotas."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import traceback
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from types import TracebackType
from typing import Final, TypeVar

from core.errors import InternalError, InvalidRequest
from core.models import Artifact

__all__ = [
    "DELIVERY_STYLES",
    "SCHEMA_VERSION",
    "ChatSettings",
    "ChatState",
    "Database",
    "HistoryEntry",
    "open_database",
    "utc_timestamp",
]

T = TypeVar("T")

#: Bumped by every schema change; ``Database.open`` migrates older files step by step.
SCHEMA_VERSION: Final = 1
DELIVERY_STYLES: Final = ("photo", "document", "both")
_MEMORY: Final = ":memory:"
_BUSY_TIMEOUT_MS: Final = 5000
_RATIO = re.compile(r"[1-9]\d{0,2}:[1-9]\d{0,2}")

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
#: _MIGRATIONS[n] takes a file from user_version n to n + 1.
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (_SCHEMA_V1,)


def utc_timestamp() -> str:
    """Now as ISO-8601 UTC, the one timestamp format in the database."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _utc_today() -> date:
    return datetime.now(UTC).date()


def _db_error(exc: sqlite3.Error) -> InternalError:
    return InternalError(detail=f"state database: {type(exc).__name__}: {exc}")


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
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        # Switching to WAL needs an exclusive lock; skip it when another process already did it.
        if path != _MEMORY and conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
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


def _migrate(conn: sqlite3.Connection) -> None:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise InternalError(
            detail=f"state database has schema version {version}; this pixbot knows {SCHEMA_VERSION}"
        )
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


@dataclass(frozen=True, slots=True)
class ChatSettings:
    """A chat's own defaults; None means "use the front-end's / config's default"."""

    aspect_ratio: str | None = None
    count: int | None = None
    #: "photo" | "document" | "both"
    delivery: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    artifact_id: str
    prompt: str
    created_at: str
    job_id: str | None
    path: str


_SETTING_NAMES: Final = frozenset({"aspect_ratio", "count", "delivery"})


def _check_setting(name: str, value: object) -> object:
    """Reject values a chat user could have typed wrongly, with a message they can act on."""
    if value is None:
        return None
    if name == "aspect_ratio":
        if not isinstance(value, str) or not _RATIO.fullmatch(value.strip()):
            raise InvalidRequest("The aspect ratio must look like 16:9.", detail=f"aspect_ratio={value!r}")
        return value.strip()
    if name == "count":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidRequest("The image count must be a whole number of at least 1.",
                                 detail=f"count={value!r}")
        return value
    if value not in DELIVERY_STYLES:
        raise InvalidRequest(
            "The delivery style must be photo, document or both.", detail=f"delivery={value!r}"
        )
    return value


def _read_settings(conn: sqlite3.Connection, chat_key: str) -> ChatSettings:
    row = conn.execute(
        "SELECT aspect_ratio, count, delivery FROM chats WHERE chat_key = ?", (chat_key,)
    ).fetchone()
    if row is None:
        return ChatSettings()
    return ChatSettings(aspect_ratio=row["aspect_ratio"], count=row["count"], delivery=row["delivery"])


def _set_last(conn: sqlite3.Connection, chat_key: str, artifact_id: str) -> None:
    conn.execute(
        "INSERT INTO chats (chat_key, last_artifact_id, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (chat_key) DO UPDATE SET last_artifact_id = excluded.last_artifact_id, "
        "updated_at = excluded.updated_at",
        (chat_key, artifact_id, utc_timestamp()),
    )


def _used(conn: sqlite3.Connection, user_key: str, day: str) -> int:
    row = conn.execute("SELECT used FROM usage WHERE user_key = ? AND day = ?", (user_key, day)).fetchone()
    return int(row["used"]) if row is not None else 0


class ChatState:
    """Per-chat memory that must survive restarts: what was last drawn, which message shows what,
    the chat's defaults, and how much each user generated today (UTC)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def last_artifact(self, chat_key: str) -> str | None:
        def tx(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT last_artifact_id FROM chats WHERE chat_key = ?", (chat_key,)
            ).fetchone()
            return None if row is None else row["last_artifact_id"]

        return await self._db.run(tx, write=False)

    async def set_last_artifact(self, chat_key: str, artifact_id: str) -> None:
        await self._db.run(lambda conn: _set_last(conn, chat_key, artifact_id))

    async def record_artifacts(self, chat_key: str, artifacts: Sequence[Artifact]) -> None:
        """Index stored images for /history and make the last one given the chat's last image."""
        if not artifacts:
            return
        now = utc_timestamp()
        rows = [(a.id, chat_key, a.job_id, a.prompt, a.path, a.created_at or now) for a in artifacts]

        def tx(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO artifacts (artifact_id, chat_key, job_id, prompt, path, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (artifact_id) DO UPDATE SET "
                "chat_key = excluded.chat_key, job_id = excluded.job_id, prompt = excluded.prompt, "
                "path = excluded.path, created_at = excluded.created_at",
                rows,
            )
            _set_last(conn, chat_key, artifacts[-1].id)

        await self._db.run(tx)

    async def history(self, chat_key: str | None, limit: int = 10) -> list[HistoryEntry]:
        """Recorded images, newest (last recorded) first; ``chat_key=None`` lists every chat."""
        if limit <= 0:
            return []
        columns = "artifact_id, prompt, created_at, job_id, path"

        def tx(conn: sqlite3.Connection) -> list[HistoryEntry]:
            if chat_key is None:
                cursor = conn.execute(f"SELECT {columns} FROM artifacts ORDER BY seq DESC LIMIT ?", (limit,))
            else:
                cursor = conn.execute(
                    f"SELECT {columns} FROM artifacts WHERE chat_key = ? ORDER BY seq DESC LIMIT ?",
                    (chat_key, limit),
                )
            return [HistoryEntry(**dict(row)) for row in cursor]

        return await self._db.run(tx, write=False)

    async def map_message(self, chat_key: str, message_id: str, artifact_id: str) -> None:
        await self.map_messages(chat_key, [(message_id, artifact_id)])

    async def map_messages(self, chat_key: str, pairs: Sequence[tuple[str, str]]) -> None:
        """Remember which artifact each delivered platform message shows (a later mapping wins)."""
        if not pairs:
            return
        now = utc_timestamp()
        rows = [(chat_key, str(message_id), artifact_id, now) for message_id, artifact_id in pairs]

        def tx(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO messages (chat_key, message_id, artifact_id, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (chat_key, message_id) DO UPDATE SET artifact_id = excluded.artifact_id, "
                "created_at = excluded.created_at",
                rows,
            )

        await self._db.run(tx)

    async def artifact_for_message(self, chat_key: str, message_id: str) -> str | None:
        def tx(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT artifact_id FROM messages WHERE chat_key = ? AND message_id = ?",
                (chat_key, str(message_id)),
            ).fetchone()
            return None if row is None else row["artifact_id"]

        return await self._db.run(tx, write=False)

    async def settings(self, chat_key: str) -> ChatSettings:
        return await self._db.run(lambda conn: _read_settings(conn, chat_key), write=False)

    async def update_settings(self, chat_key: str, **changes: object) -> ChatSettings:
        """Change only the given settings (None clears one); returns the chat's settings afterwards.

        Unknown names are a programming error (TypeError); bad values are ``InvalidRequest``.
        """
        unknown = set(changes) - _SETTING_NAMES
        if unknown:
            raise TypeError(f"unknown chat settings: {', '.join(sorted(unknown))}")
        clean = {name: _check_setting(name, value) for name, value in changes.items()}

        def tx(conn: sqlite3.Connection) -> ChatSettings:
            if clean:
                names = sorted(clean)  # whitelisted above, so safe to place in SQL
                conn.execute(
                    f"INSERT INTO chats (chat_key, {', '.join(names)}, updated_at) "
                    f"VALUES (?, {', '.join('?' for _ in names)}, ?) ON CONFLICT (chat_key) DO UPDATE SET "
                    + ", ".join(f"{n} = excluded.{n}" for n in [*names, "updated_at"]),
                    (chat_key, *(clean[n] for n in names), utc_timestamp()),
                )
            return _read_settings(conn, chat_key)

        return await self._db.run(tx)

    async def usage_today(self, user_key: str, *, today: date | None = None) -> int:
        day = (today or _utc_today()).isoformat()
        return await self._db.run(lambda conn: _used(conn, user_key, day), write=False)

    async def try_consume(
        self, user_key: str, amount: int, limit: int, *, today: date | None = None
    ) -> int | None:
        """Atomically add ``amount`` to today's usage if it stays within ``limit`` (0 = unlimited).

        Returns the new total, or None (and changes nothing) when it would go over the limit.
        """
        if amount < 1:
            raise ValueError(f"amount must be at least 1, got {amount}")
        if limit < 0:
            raise ValueError(f"limit must be 0 (unlimited) or positive, got {limit}")
        day = (today or _utc_today()).isoformat()

        def tx(conn: sqlite3.Connection) -> int | None:
            total = _used(conn, user_key, day) + amount
            if limit and total > limit:
                return None
            conn.execute(
                "INSERT INTO usage (user_key, day, used) VALUES (?, ?, ?) "
                "ON CONFLICT (user_key, day) DO UPDATE SET used = excluded.used",
                (user_key, day, total),
            )
            return total

        return await self._db.run(tx)

    async def refund(self, user_key: str, amount: int, *, today: date | None = None) -> None:
        """Give back images that were consumed but not produced; usage never goes below 0."""
        if amount < 0:
            raise ValueError(f"amount must not be negative, got {amount}")
        if amount == 0:
            return
        day = (today or _utc_today()).isoformat()

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE usage SET used = max(0, used - ?) WHERE user_key = ? AND day = ?",
                (amount, user_key, day),
            )

        await self._db.run(tx)

    @staticmethod
    def quota_resets_at(now: datetime | None = None) -> datetime:
        """When today's usage stops counting (next UTC midnight), for the "try again at …" message."""
        current = (now or datetime.now(UTC)).astimezone(UTC)
        return datetime.combine(current.date() + timedelta(days=1), time(0), tzinfo=UTC)
