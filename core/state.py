"""Chat state on SQLite: last image per chat, the chat history index, platform message → artifact map,
chat settings, daily quotas. The gallery, image, lineage and backfill queries live in
``core.gallery_sql`` (mixed in as ``GalleryQueries``; ``platform_range`` and ``like_contains`` are
re-exported from here)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from core.capabilities import validate_ratio
from core.db import SCHEMA_VERSION, Database, open_database, utc_timestamp
from core.errors import InvalidRequest
from core.gallery_sql import GalleryQueries, like_contains, platform_range
from core.models import Artifact
from core.stores import DELIVERY_STYLES, ChatSettings, HistoryEntry

__all__ = [
    "DELIVERY_STYLES",
    "SCHEMA_VERSION",
    "ChatSettings",
    "ChatState",
    "Database",
    "HistoryEntry",
    "like_contains",
    "open_database",
    "platform_range",
    "record_history",
    "utc_timestamp",
]


def _utc_today() -> date:
    return datetime.now(UTC).date()


_SETTING_NAMES: Final = frozenset({"aspect_ratio", "count", "delivery"})


def _check_setting(name: str, value: object) -> object:
    """Reject values a chat user could have typed wrongly, with a message they can act on."""
    if value is None:
        return None
    if name == "aspect_ratio":
        # The same rule submit applies, so a stored default can never make every later request fail.
        if not isinstance(value, str):
            raise InvalidRequest("The aspect ratio must look like 16:9.", detail=f"aspect_ratio={value!r}")
        return validate_ratio(value)
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


def record_history(conn: sqlite3.Connection, chat_key: str, artifacts: Sequence[Artifact]) -> None:
    """Index ``artifacts`` in the chat's history (idempotent) and make the last one the chat's last
    image; a step of whichever write transaction records them (``JobLedger.complete_job`` too)."""
    now = utc_timestamp()
    conn.executemany(
        "INSERT INTO artifacts (artifact_id, chat_key, job_id, prompt, path, created_at, provider, model, "
        "width, height, parent_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (artifact_id) DO UPDATE SET "
        "chat_key = excluded.chat_key, job_id = excluded.job_id, prompt = excluded.prompt, "
        "path = excluded.path, created_at = excluded.created_at, provider = excluded.provider, "
        "model = excluded.model, width = excluded.width, height = excluded.height, parent_id = excluded.parent_id",
        [(a.id, chat_key, a.job_id, a.prompt, a.path, a.created_at or now, a.provider, a.model, a.width, a.height,
          a.parent_id) for a in artifacts],
    )
    if artifacts:
        _set_last(conn, chat_key, artifacts[-1].id)


def _used(conn: sqlite3.Connection, user_key: str, day: str) -> int:
    row = conn.execute("SELECT used FROM usage WHERE user_key = ? AND day = ?", (user_key, day)).fetchone()
    return int(row["used"]) if row is not None else 0


class ChatState(GalleryQueries):
    """Per-chat memory that must survive restarts: what was last drawn, which message shows what,
    the chat's defaults, and how much each user generated today (UTC). The gallery reads across
    chats come from ``GalleryQueries``."""

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

    async def forget_artifacts(self, artifact_ids: Sequence[str]) -> None:
        """Drop deleted artifacts (retention) from history, the message map and last-image pointers."""
        if not artifact_ids:
            return
        rows = [(artifact_id,) for artifact_id in artifact_ids]

        def tx(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM artifacts WHERE artifact_id = ?", rows)
            conn.executemany("DELETE FROM messages WHERE artifact_id = ?", rows)
            conn.executemany("UPDATE chats SET last_artifact_id = NULL WHERE last_artifact_id = ?", rows)

        await self._db.run(tx)

    async def forget_usage_before(self, day: date) -> int:
        """Drop daily usage rows older than ``day`` (retention); only today's row counts for quotas."""
        def tx(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM usage WHERE day < ?", (day.isoformat(),)).rowcount

        return await self._db.run(tx)

    async def record_artifacts(self, chat_key: str, artifacts: Sequence[Artifact]) -> None:
        """Index stored images for /history and make the last one given the chat's last image."""
        if artifacts:
            await self._db.run(lambda conn: record_history(conn, chat_key, artifacts))

    async def history(self, chat_key: str | None, limit: int = 10) -> list[HistoryEntry]:
        """Recorded images, newest (last recorded) first; ``chat_key=None`` lists every chat."""
        if limit <= 0:
            return []
        columns = "artifact_id, prompt, created_at, job_id, path, chat_key"

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
