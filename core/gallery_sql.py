"""ChatState's SQLite gallery queries: the gallery's keyset pages and filters, one image, an image's
lineage, and the backfill of rows recorded before schema 3 (``missing_details``/``fill_details``), plus
the SQL helpers they share with other stores (``platform_range``, ``like_contains``). Mixed into
``core.state.ChatState`` as ``GalleryQueries``."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Final

from core.db import Database
from core.models import Artifact
from core.stores import GalleryFilters, GalleryPage, GalleryQuery, ImageRow, Lineage

__all__ = ["GalleryQueries", "like_contains", "platform_range"]


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
    # Down: every generation of edits; GROUP BY the key keeps each image once, at its nearest depth.
    descendants = [_image(row) for row in conn.execute(
        "WITH RECURSIVE down (artifact_id, depth) AS ("
        " SELECT artifact_id, 1 FROM artifacts WHERE parent_id = ?"
        " UNION SELECT a.artifact_id, down.depth + 1 FROM artifacts a"
        " JOIN down ON a.parent_id = down.artifact_id WHERE down.depth < ?)"
        f" SELECT {_A_ROW}, MIN(down.depth) AS depth FROM down JOIN artifacts a ON a.artifact_id = down.artifact_id"
        " WHERE a.artifact_id <> ? GROUP BY a.seq ORDER BY depth, a.seq LIMIT ?",
        (artifact_id, limit, artifact_id, limit))]
    return lineage_of(artifact_id, walk, descendants, limit)


def lineage_of(artifact_id: str, walk: Sequence[ImageRow], descendants: list[ImageRow], limit: int) -> Lineage:
    """The lineage from the walk up (the image, its parent, …, as either engine reads it) and the edits:
    a cycle in bad data ends the walk, and a parent that is not recorded (an uploaded image) is named."""
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


class GalleryQueries:
    """The recorded images across every chat, read for the gallery and studio; needs ``self._db``."""

    _db: Database

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
