"""What a studio or gallery page reads through the service: recorded images of every front-end (filtered,
paged by cursor), an image's lineage, a platform's threads and their jobs, thumbnails. Mixed into
``ImageService``, so front-ends keep calling the service and never a store."""

from __future__ import annotations

import logging
from typing import Final

from core.artifacts import ArtifactStore
from core.errors import PixbotError
from core.models import Artifact
from core.stores import (
    ChatSummary,
    GalleryFilters,
    GalleryPage,
    GalleryQuery,
    ImageRow,
    JobRecord,
    JobStore,
    Lineage,
    StateStore,
)
from core.thumbnails import BOX, thumbnail

__all__ = ["BACKFILL_BATCH", "Browsing"]

log = logging.getLogger(__name__)

#: Rows ``backfill`` completes per database read and write.
BACKFILL_BATCH: Final = 500


class Browsing:
    """The read side of ``ImageService`` (its ``store``, ``state`` and ``jobs``)."""

    store: ArtifactStore
    state: StateStore
    jobs: JobStore

    async def gallery(self, query: GalleryQuery) -> GalleryPage:
        """Recorded images of every chat, newest first, filtered; ``page.next_cursor`` is the next
        page's ``query.before``."""
        return await self.state.gallery(query)

    async def image_row(self, artifact_id: str) -> ImageRow | None:
        return await self.state.image(artifact_id)

    async def lineage(self, artifact_id: str, limit: int = 200) -> Lineage:
        """Where an image came from (nearest first) and every edit made from it (parents first)."""
        return await self.state.lineage(artifact_id, limit)

    async def gallery_filters(self) -> GalleryFilters:
        """The platforms and providers a gallery can be filtered on."""
        return await self.state.gallery_filters()

    async def threads(self, platform: str, limit: int = 50) -> list[ChatSummary]:
        """A platform's chats that have jobs, most recently active first."""
        return await self.jobs.chats(platform, limit)

    async def chat_jobs(self, chat_key: str, limit: int = 50) -> list[JobRecord]:
        """A chat's latest ``limit`` jobs, oldest first."""
        return await self.jobs.for_chat(chat_key, limit)

    async def job(self, job_id: str) -> JobRecord | None:
        return await self.jobs.get(job_id)

    async def thumbnail(self, artifact: Artifact, box: int = BOX) -> bytes:
        """A small WebP of a stored image, made once and then read from beside it."""
        return await thumbnail(self.store, artifact, box=box)

    async def backfill(self, batch: int = BACKFILL_BATCH) -> int:
        """Fill provider, model, size and parent of images recorded before the database knew them
        (schema 3) from their sidecars, ``batch`` rows at a time; files are read off the event loop.
        Rows whose files are gone stay as they are. Returns how many rows were filled; a database
        failure is logged and ends the pass (the next start tries again)."""
        filled, after = 0, 0
        try:
            while rows := await self.state.missing_details(after, batch):
                after = rows[-1].seq
                found = await self.store.get_many([row.artifact_id for row in rows])
                filled += await self.state.fill_details(list(found.values()))
        except PixbotError as exc:
            log.warning("could not complete the details of older images: %s", exc)
        if filled:
            log.info("completed provider, model and size of %d older image(s) from their sidecars", filled)
        return filled
