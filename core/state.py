"""Chat state: last image per chat, platform message → artifact map, chat settings, daily quotas."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from core.capabilities import validate_ratio
from core.db import SCHEMA_VERSION, Database, open_database, utc_timestamp
from core.errors import InvalidRequest
from core.models import Artifact
from core.stores import (
    DELIVERY_STYLES,
    ChatSettings,
    GalleryFilters,
    GalleryPage,
    GalleryQuery,
    HistoryEntry,
    ImageRow,
    Lineage,
)

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


#: An ``ImageRow``'s columns.
_ROW: Final = "artifact_id, chat_key, prompt, provider, model, width, height, parent_id, job_id, created_at, seq"
#: ``_ROW`` of the artifacts table aliased ``a``.
_A_ROW: Final = ", ".join(f"a.{name.strip()}" for name in _ROW.split(","))


def _image(row: sqlite3.Row) -> ImageRow:
    return ImageRow(artifact_id=row["artifact_id"], chat_key=row["chat_key"], prompt=row["prompt"],
                    provider=row["provider"], model=row["model"], width=int(row["width"]), height=int(row["height"]),
                    parent_id=row["parent_id"], job_id=row["job_id"], created_at=row["created_at"], seq=int(row["seq"]))


def platform_range(platform: str) -> tuple[str, str]:
    """Bounds of the chat keys of ``platform`` (``"<platform>:…"``): ``>= low AND < high``, which an index
    on ``chat_key`` serves (a LIKE would not, and would treat ``_`` in a platform name as a wildcard)."""
    return f"{platform}:", f"{platform};"  # ';' is the character after ':'


def like_contains(text: str) -> str:
    """A LIKE pattern (with ``ESCAPE '\\'``) matching values that contain ``text`` literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _gallery_where(query: GalleryQuery) -> tuple[str, list[Any]]:
    terms: list[str] = []
    params: list[Any] = []
    if query.platform is not None:
        terms.append("chat_key >= ? AND chat_key < ?")
        params += platform_range(query.platform)
    if query.chat_key is not None:
        terms.append("chat_key = ?")
        params.append(query.chat_key)
    if query.provider is not None:
        terms.append("provider = ?")
        params.append(query.provider)
    # created_at is ISO 8601 in UTC, so text order is time order and a day's rows start with the day.
    if query.since is not None:
        terms.append("created_at >= ?")
        params.append(query.since.isoformat())
    if query.until is not None:
        terms.append("created_at < ?")
        params.append((query.until + timedelta(days=1)).isoformat())
    if query.search:
        terms.append("casefold(prompt) LIKE ? ESCAPE '\\'")
        params.append(like_contains(query.search.casefold()))
    if query.before is not None:
        terms.append("seq < ?")
        params.append(query.before)
    return " AND ".join(terms) or "1 = 1", params


def _gallery(conn: sqlite3.Connection, query: GalleryQuery) -> GalleryPage:
    where, params = _gallery_where(query)
    rows = [_image(row) for row in conn.execute(
        f"SELECT {_ROW} FROM artifacts WHERE {where} ORDER BY seq DESC LIMIT ?", (*params, query.limit + 1))]
    if len(rows) > query.limit:
        return GalleryPage(rows[:query.limit], rows[query.limit - 1].seq)
    return GalleryPage(rows, None)


def _lineage(conn: sqlite3.Connection, artifact_id: str, limit: int) -> Lineage:
    # Up: the image (depth 0), its parent (1)… The depth bound ends a parent cycle in bad data too.
    walk = [_image(row) for row in conn.execute(
        "WITH RECURSIVE up (artifact_id, parent_id, depth) AS ("
        " SELECT artifact_id, parent_id, 0 FROM artifacts WHERE artifact_id = ?"
        " UNION ALL SELECT a.artifact_id, a.parent_id, up.depth + 1 FROM artifacts a"
        " JOIN up ON a.artifact_id = up.parent_id WHERE up.depth < ?)"
        f" SELECT {_A_ROW} FROM up JOIN artifacts a ON a.artifact_id = up.artifact_id ORDER BY up.depth",
        (artifact_id, limit))]
    image = walk[0] if walk else None
    ancestors: list[ImageRow] = []
    missing = None
    seen = {artifact_id}
    for row in walk[1:]:
        if row.artifact_id in seen:  # a cycle: the walk went round
            break
        seen.add(row.artifact_id)
        ancestors.append(row)
    else:
        last = walk[-1] if walk else None
        if last is not None and last.parent_id is not None and len(walk) <= limit and last.parent_id not in seen:
            missing = last.parent_id
    # Down: every generation of edits; GROUP BY the key keeps each image once, at its nearest depth.
    descendants = [_image(row) for row in conn.execute(
        "WITH RECURSIVE down (artifact_id, depth) AS ("
        " SELECT artifact_id, 1 FROM artifacts WHERE parent_id = ?"
        " UNION SELECT a.artifact_id, down.depth + 1 FROM artifacts a"
        " JOIN down ON a.parent_id = down.artifact_id WHERE down.depth < ?)"
        f" SELECT {_A_ROW}, MIN(down.depth) AS depth FROM down JOIN artifacts a ON a.artifact_id = down.artifact_id"
        " WHERE a.artifact_id <> ? GROUP BY a.seq ORDER BY depth, a.seq LIMIT ?",
        (artifact_id, limit, artifact_id, limit))]
    return Lineage(image, ancestors, descendants, missing)


def _next_value(conn: sqlite3.Connection, sql: str, after: str) -> str | None:
    row = conn.execute(sql, (after,)).fetchone()
    return None if row is None else str(row[0])


def _gallery_filters(conn: sqlite3.Connection) -> GalleryFilters:
    """Distinct values by skipping along the indexes (one probe per value, not a scan of every row)."""
    platforms: list[str] = []
    key = _next_value(conn, "SELECT chat_key FROM artifacts WHERE chat_key >= ? ORDER BY chat_key LIMIT 1", "")
    while key is not None:
        platform, colon, _ = key.partition(":")
        platforms.append(platform)
        if colon:
            after = platform_range(platform)[1]
            key = _next_value(conn, "SELECT chat_key FROM artifacts WHERE chat_key >= ? ORDER BY chat_key LIMIT 1",
                              after)
        else:
            key = _next_value(conn, "SELECT chat_key FROM artifacts WHERE chat_key > ? ORDER BY chat_key LIMIT 1",
                              key)
    providers: list[str] = []
    provider = _next_value(conn, "SELECT provider FROM artifacts WHERE provider > ? ORDER BY provider LIMIT 1", "")
    while provider is not None:
        providers.append(provider)
        provider = _next_value(conn, "SELECT provider FROM artifacts WHERE provider > ? ORDER BY provider LIMIT 1",
                               provider)
    return GalleryFilters(sorted(set(platforms)), providers)


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

    async def gallery(self, query: GalleryQuery) -> GalleryPage:
        """Recorded images of every chat matching ``query``, newest first, one keyset page (never OFFSET:
        a page costs the same however deep, and rows added meanwhile never shift the pages after)."""
        return await self._db.run(lambda conn: _gallery(conn, query), write=False)

    async def image(self, artifact_id: str) -> ImageRow | None:
        def tx(conn: sqlite3.Connection) -> ImageRow | None:
            row = conn.execute(f"SELECT {_ROW} FROM artifacts WHERE artifact_id = ?", (artifact_id,)).fetchone()
            return None if row is None else _image(row)

        return await self._db.run(tx, write=False)

    async def lineage(self, artifact_id: str, limit: int = 200) -> Lineage:
        """The image, its ancestors nearest first and its descendants generation by generation, each
        side at most ``limit`` rows; read in one transaction, so both sides agree."""
        if limit <= 0:
            return Lineage(await self.image(artifact_id), [], [])
        return await self._db.run(lambda conn: _lineage(conn, artifact_id, limit), write=False)

    async def gallery_filters(self) -> GalleryFilters:
        return await self._db.run(_gallery_filters, write=False)

    async def missing_details(self, after: int = 0, limit: int = 500) -> list[ImageRow]:
        """Rows recorded before schema 3 (no provider yet) with ``seq`` above ``after``, oldest first."""
        def tx(conn: sqlite3.Connection) -> list[ImageRow]:
            return [_image(row) for row in conn.execute(
                f"SELECT {_ROW} FROM artifacts WHERE provider = '' AND seq > ? ORDER BY seq LIMIT ?", (after, limit))]

        return await self._db.run(tx, write=False)

    async def fill_details(self, artifacts: Sequence[Artifact]) -> int:
        """Provider, model, size and parent from the sidecars, for rows still without a provider."""
        rows = [(a.provider, a.model, a.width, a.height, a.parent_id, a.id) for a in artifacts if a.provider]
        if not rows:
            return 0

        def tx(conn: sqlite3.Connection) -> int:
            return sum(conn.execute(
                "UPDATE artifacts SET provider = ?, model = ?, width = ?, height = ?, parent_id = ? "
                "WHERE artifact_id = ? AND provider = ''", row).rowcount for row in rows)

        return await self._db.run(tx)

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
