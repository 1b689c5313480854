"""Chat state on PostgreSQL: ``core.state.ChatState``'s behaviour, one statement (one round trip) per call."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from core.db import utc_timestamp
from core.gallery_sql import lineage_of
from core.models import Artifact
from core.postgres.pool import Pool, Row, rowcount
from core.state import _SETTING_NAMES, _check_setting, like_contains, platform_range
from core.stores import (
    ChatSettings,
    GalleryFilters,
    GalleryPage,
    GalleryQuery,
    HistoryEntry,
    ImageRow,
    Lineage,
)

__all__ = ["PostgresChatState", "history_args", "image_row"]

#: An ``ImageRow``'s columns, of the artifacts table aliased ``a``.
_ROW: Final = "a.artifact_id, a.chat_key, a.prompt, a.provider, a.model, a.width, a.height, a.parent_id, a.job_id, " \
              "a.created_at, a.seq"

# Index images in a chat's history (idempotent: a row recorded again is updated, keeping its seq) and make
# the last one the chat's last image. $1 the chat, $2..$11 the artifacts' columns, $12 the last id (None: no
# images, nothing to point at), $13 now;
# ``history_args`` builds them. ``{guard}`` lets a caller make both writes conditional (complete_job).
HISTORY: Final = """
    history AS (
        INSERT INTO artifacts AS a (artifact_id, chat_key, job_id, prompt, path, created_at, provider, model,
                                    width, height, parent_id)
        SELECT u.artifact_id, $1::text, u.job_id, u.prompt, u.path, u.created_at, u.provider, u.model, u.width,
               u.height, u.parent_id
        FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::int[],
                    $10::int[], $11::text[]) WITH ORDINALITY
             AS u(artifact_id, job_id, prompt, path, created_at, provider, model, width, height, parent_id, n)
        WHERE {guard}
        ORDER BY u.n
        ON CONFLICT (artifact_id) DO UPDATE SET chat_key = excluded.chat_key, job_id = excluded.job_id,
            prompt = excluded.prompt, path = excluded.path, created_at = excluded.created_at,
            provider = excluded.provider, model = excluded.model, width = excluded.width,
            height = excluded.height, parent_id = excluded.parent_id),
    last_image AS (
        INSERT INTO chats (chat_key, last_artifact_id, updated_at) SELECT $1::text, $12::text, $13::text
        WHERE {guard} AND $12::text IS NOT NULL
        ON CONFLICT (chat_key) DO UPDATE SET last_artifact_id = excluded.last_artifact_id,
            updated_at = excluded.updated_at)"""

_RECORD: Final = "WITH " + HISTORY.format(guard="true") + " SELECT 1"


def history_args(chat_key: str, artifacts: Sequence[Artifact]) -> tuple[object, ...]:
    """``HISTORY``'s parameters $1..$13. An id given twice is one row, at its first place with its last
    values: what recording them one after another (as SQLite does) leaves."""
    now = utc_timestamp()
    rows = {a.id: a for a in artifacts}.values()
    return (chat_key, [a.id for a in rows], [a.job_id for a in rows], [a.prompt for a in rows],
            [a.path for a in rows], [a.created_at or now for a in rows], [a.provider for a in rows],
            [a.model for a in rows], [a.width for a in rows], [a.height for a in rows],
            [a.parent_id for a in rows], artifacts[-1].id, now)


def image_row(row: Row) -> ImageRow:
    return ImageRow(artifact_id=row["artifact_id"], chat_key=row["chat_key"], prompt=row["prompt"],
                    provider=row["provider"], model=row["model"], width=int(row["width"]), height=int(row["height"]),
                    parent_id=row["parent_id"], job_id=row["job_id"], created_at=row["created_at"], seq=int(row["seq"]))


def _settings(row: Row | None) -> ChatSettings:
    if row is None:
        return ChatSettings()
    return ChatSettings(aspect_ratio=row["aspect_ratio"], count=row["count"], delivery=row["delivery"])


def _utc_today() -> date:
    return datetime.now(UTC).date()


_LINEAGE: Final = f"""
    WITH RECURSIVE up (artifact_id, parent_id, depth) AS (
        SELECT artifact_id, parent_id, 0 FROM artifacts WHERE artifact_id = $1
        UNION ALL
        SELECT a.artifact_id, a.parent_id, up.depth + 1 FROM artifacts a JOIN up ON a.artifact_id = up.parent_id
        WHERE up.depth < $2),
    down (artifact_id, depth) AS (
        SELECT artifact_id, 1 FROM artifacts WHERE parent_id = $1
        UNION
        SELECT a.artifact_id, down.depth + 1 FROM artifacts a JOIN down ON a.parent_id = down.artifact_id
        WHERE down.depth < $2),
    below AS (
        SELECT a.seq, min(down.depth) AS depth FROM down JOIN artifacts a ON a.artifact_id = down.artifact_id
        WHERE a.artifact_id <> $1 GROUP BY a.seq ORDER BY depth, a.seq LIMIT $2)
    SELECT true AS up, up.depth, {_ROW} FROM up JOIN artifacts a ON a.artifact_id = up.artifact_id
    UNION ALL
    SELECT false, below.depth, {_ROW} FROM below JOIN artifacts a ON a.seq = below.seq"""

# The distinct platforms and providers by skipping along the indexes, one probe per value (a loose index
# scan), in one statement: the key after a platform's keys is the first at or above "<platform>;".
_FILTERS: Final = """
    WITH RECURSIVE keys (k) AS (
        (SELECT chat_key FROM artifacts ORDER BY chat_key LIMIT 1)
        UNION ALL
        SELECT (SELECT chat_key FROM artifacts WHERE chat_key >= CASE WHEN strpos(k, ':') > 0
                    THEN split_part(k, ':', 1) || ';' ELSE k || chr(1) END ORDER BY chat_key LIMIT 1)
        FROM keys WHERE k IS NOT NULL),
    providers (p) AS (
        (SELECT provider FROM artifacts WHERE provider > '' ORDER BY provider LIMIT 1)
        UNION ALL
        SELECT (SELECT provider FROM artifacts WHERE provider > p ORDER BY provider LIMIT 1)
        FROM providers WHERE p IS NOT NULL)
    SELECT true AS platform, k AS value FROM keys WHERE k IS NOT NULL
    UNION ALL
    SELECT false, p FROM providers WHERE p IS NOT NULL"""


class PostgresChatState:
    """``StateStore`` on PostgreSQL. ``fold`` is the SQL that lower-cases a prompt for searching, ``{}``
    standing for the column (see ``core.postgres.search_fold``)."""

    def __init__(self, pool: Pool, fold: str = "lower({})") -> None:
        self._pool = pool
        self._fold = fold

    # -- chats ---------------------------------------------------------------------------------
    async def last_artifact(self, chat_key: str) -> str | None:
        value: str | None = await self._pool.fetchval(
            "SELECT last_artifact_id FROM chats WHERE chat_key = $1", chat_key)
        return value

    async def set_last_artifact(self, chat_key: str, artifact_id: str) -> None:
        await self._pool.execute(
            "INSERT INTO chats (chat_key, last_artifact_id, updated_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (chat_key) DO UPDATE SET last_artifact_id = excluded.last_artifact_id, "
            "updated_at = excluded.updated_at", chat_key, artifact_id, utc_timestamp())

    async def settings(self, chat_key: str) -> ChatSettings:
        return _settings(await self._pool.fetchrow(
            "SELECT aspect_ratio, count, delivery FROM chats WHERE chat_key = $1", chat_key))

    async def update_settings(self, chat_key: str, **changes: object) -> ChatSettings:
        unknown = set(changes) - _SETTING_NAMES
        if unknown:
            raise TypeError(f"unknown chat settings: {', '.join(sorted(unknown))}")
        clean = {name: _check_setting(name, value) for name, value in changes.items()}
        if not clean:
            return await self.settings(chat_key)
        names = sorted(clean)  # whitelisted above, so safe to place in SQL
        values = ", ".join(f"${n}" for n in range(2, len(names) + 3))
        row = await self._pool.fetchrow(
            f"INSERT INTO chats (chat_key, {', '.join(names)}, updated_at) VALUES ($1, {values}) "
            "ON CONFLICT (chat_key) DO UPDATE SET "
            + ", ".join(f"{n} = excluded.{n}" for n in [*names, "updated_at"])
            + " RETURNING aspect_ratio, count, delivery",
            chat_key, *(clean[n] for n in names), utc_timestamp())
        return _settings(row)

    # -- history -------------------------------------------------------------------------------
    async def record_artifacts(self, chat_key: str, artifacts: Sequence[Artifact]) -> None:
        if artifacts:
            await self._pool.execute(_RECORD, *history_args(chat_key, artifacts))

    async def forget_artifacts(self, artifact_ids: Sequence[str]) -> None:
        if not artifact_ids:
            return
        await self._pool.execute(
            "WITH gone AS (DELETE FROM artifacts WHERE artifact_id = ANY($1::text[])),"
            " unmapped AS (DELETE FROM messages WHERE artifact_id = ANY($1::text[]))"
            " UPDATE chats SET last_artifact_id = NULL WHERE last_artifact_id = ANY($1::text[])",
            list(artifact_ids))

    async def history(self, chat_key: str | None, limit: int = 10) -> list[HistoryEntry]:
        if limit <= 0:
            return []
        columns = "artifact_id, prompt, created_at, job_id, path, chat_key"
        if chat_key is None:
            rows = await self._pool.fetch(f"SELECT {columns} FROM artifacts ORDER BY seq DESC LIMIT $1", limit)
        else:
            rows = await self._pool.fetch(
                f"SELECT {columns} FROM artifacts WHERE chat_key = $1 ORDER BY seq DESC LIMIT $2", chat_key, limit)
        return [HistoryEntry(**dict(row)) for row in rows]

    # -- gallery -------------------------------------------------------------------------------
    def _gallery_where(self, query: GalleryQuery) -> tuple[str, list[Any]]:
        terms: list[str] = []
        params: list[Any] = []

        def add(sql: str, *values: Any) -> None:
            for value in values:
                params.append(value)
                sql = sql.replace("?", f"${len(params)}", 1)
            terms.append(sql)

        if query.platform is not None:
            add("a.chat_key >= ? AND a.chat_key < ?", *platform_range(query.platform))
        if query.chat_key is not None:
            add("a.chat_key = ?", query.chat_key)
        if query.provider is not None:
            add("a.provider = ?", query.provider)
        # created_at is ISO 8601 in UTC and compares bytewise, so text order is time order.
        if query.since is not None:
            add("a.created_at >= ?", query.since.isoformat())
        if query.until is not None:
            add("a.created_at < ?", (query.until + timedelta(days=1)).isoformat())
        if query.search:
            add(f"{self._fold.format('a.prompt')} LIKE ? ESCAPE '\\'",
                like_contains(query.search.casefold()))
        if query.before is not None:
            add("a.seq < ?", query.before)
        return " AND ".join(terms) or "true", params

    async def gallery(self, query: GalleryQuery) -> GalleryPage:
        where, params = self._gallery_where(query)
        rows = [image_row(row) for row in await self._pool.fetch(
            f"SELECT {_ROW} FROM artifacts a WHERE {where} ORDER BY a.seq DESC LIMIT ${len(params) + 1}",
            *params, query.limit + 1)]
        if len(rows) > query.limit:
            return GalleryPage(rows[:query.limit], rows[query.limit - 1].seq)
        return GalleryPage(rows, None)

    async def image(self, artifact_id: str) -> ImageRow | None:
        row = await self._pool.fetchrow(f"SELECT {_ROW} FROM artifacts a WHERE a.artifact_id = $1", artifact_id)
        return None if row is None else image_row(row)

    async def lineage(self, artifact_id: str, limit: int = 200) -> Lineage:
        if limit <= 0:
            return Lineage(await self.image(artifact_id), [], [])
        rows = await self._pool.fetch(_LINEAGE, artifact_id, limit)  # one statement: both sides agree
        walk = [image_row(row) for row in sorted((r for r in rows if r["up"]), key=lambda r: int(r["depth"]))]
        descendants = [image_row(row) for row in sorted(
            (r for r in rows if not r["up"]), key=lambda r: (int(r["depth"]), int(r["seq"])))]
        return lineage_of(artifact_id, walk, descendants, limit)

    async def gallery_filters(self) -> GalleryFilters:
        rows = await self._pool.fetch(_FILTERS)
        platforms = {str(row["value"]).partition(":")[0] for row in rows if row["platform"]}
        providers = [str(row["value"]) for row in rows if not row["platform"]]
        return GalleryFilters(sorted(platforms), sorted(providers))

    async def missing_details(self, after: int = 0, limit: int = 500) -> list[ImageRow]:
        return [image_row(row) for row in await self._pool.fetch(
            f"SELECT {_ROW} FROM artifacts a WHERE a.provider = '' AND a.seq > $1 ORDER BY a.seq LIMIT $2",
            after, limit)]

    async def fill_details(self, artifacts: Sequence[Artifact]) -> int:
        rows: dict[str, Artifact] = {}
        for a in artifacts:  # the first with a provider fills a row; later ones would find it filled
            if a.provider:
                rows.setdefault(a.id, a)
        if not rows:
            return 0
        given = rows.values()
        return rowcount(await self._pool.execute(
            "UPDATE artifacts a SET provider = u.provider, model = u.model, width = u.width, height = u.height, "
            "parent_id = u.parent_id FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::int[], "
            "$6::text[]) AS u(artifact_id, provider, model, width, height, parent_id) "
            "WHERE a.artifact_id = u.artifact_id AND a.provider = ''",
            [a.id for a in given], [a.provider for a in given], [a.model for a in given],
            [a.width for a in given], [a.height for a in given], [a.parent_id for a in given]))

    # -- messages ------------------------------------------------------------------------------
    async def map_message(self, chat_key: str, message_id: str, artifact_id: str) -> None:
        await self.map_messages(chat_key, [(message_id, artifact_id)])

    async def map_messages(self, chat_key: str, pairs: Sequence[tuple[str, str]]) -> None:
        if not pairs:
            return
        mapped = {str(message_id): artifact_id for message_id, artifact_id in pairs}  # a later mapping wins
        await self._pool.execute(
            "INSERT INTO messages (chat_key, message_id, artifact_id, created_at) "
            "SELECT $1::text, u.message_id, u.artifact_id, $4::text FROM unnest($2::text[], $3::text[]) "
            "AS u(message_id, artifact_id) ON CONFLICT (chat_key, message_id) DO UPDATE SET "
            "artifact_id = excluded.artifact_id, created_at = excluded.created_at",
            chat_key, list(mapped), list(mapped.values()), utc_timestamp())

    async def artifact_for_message(self, chat_key: str, message_id: str) -> str | None:
        value: str | None = await self._pool.fetchval(
            "SELECT artifact_id FROM messages WHERE chat_key = $1 AND message_id = $2", chat_key, str(message_id))
        return value

    # -- usage ---------------------------------------------------------------------------------
    async def usage_today(self, user_key: str, *, today: date | None = None) -> int:
        day = (today or _utc_today()).isoformat()
        used = await self._pool.fetchval("SELECT used FROM usage WHERE user_key = $1 AND day = $2", user_key, day)
        return int(used) if used is not None else 0

    async def try_consume(self, user_key: str, amount: int, limit: int, *, today: date | None = None) -> int | None:
        """Atomic across processes: the insert, or the update of the locked row, applies only within the limit."""
        if amount < 1:
            raise ValueError(f"amount must be at least 1, got {amount}")
        if limit < 0:
            raise ValueError(f"limit must be 0 (unlimited) or positive, got {limit}")
        day = (today or _utc_today()).isoformat()
        total = await self._pool.fetchval(
            "INSERT INTO usage AS u (user_key, day, used) SELECT $1::text, $2::text, $3::int WHERE $4::int = 0 "
            "OR $3::int <= $4::int ON CONFLICT (user_key, day) DO UPDATE SET used = u.used + excluded.used "
            "WHERE $4::int = 0 OR u.used + excluded.used <= $4::int RETURNING used",
            user_key, day, amount, limit)
        return None if total is None else int(total)

    async def refund(self, user_key: str, amount: int, *, today: date | None = None) -> None:
        if amount < 0:
            raise ValueError(f"amount must not be negative, got {amount}")
        if amount == 0:
            return
        day = (today or _utc_today()).isoformat()
        await self._pool.execute("UPDATE usage SET used = greatest(0, used - $1) WHERE user_key = $2 AND day = $3",
                                 amount, user_key, day)

    async def forget_usage_before(self, day: date) -> int:
        return rowcount(await self._pool.execute("DELETE FROM usage WHERE day < $1", day.isoformat()))

    @staticmethod
    def quota_resets_at(now: datetime | None = None) -> datetime:
        """When today's usage stops counting (next UTC midnight)."""
        current = (now or datetime.now(UTC)).astimezone(UTC)
        return datetime.combine(current.date() + timedelta(days=1), time(0), tzinfo=UTC)
