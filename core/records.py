"""The values that cross the storage seam (``core/stores.py``): chat settings, job records, gallery rows and
queries, lineage, thread summaries, live processes. Plain frozen data, the same for every engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final, Literal

from core.errors import RateLimited

__all__ = [
    "DELIVERY_STYLES",
    "MAX_PAGE",
    "TERMINAL",
    "ChatBusy",
    "ChatSettings",
    "ChatSummary",
    "GalleryFilters",
    "GalleryPage",
    "GalleryQuery",
    "HistoryEntry",
    "ImageRow",
    "JobRecord",
    "JobStatus",
    "Lineage",
    "ProcessInfo",
]

DELIVERY_STYLES: Final = ("photo", "document", "both")

JobStatus = Literal["queued", "generating", "stored", "delivered", "failed"]
TERMINAL: Final = frozenset({"delivered", "failed"})


class ChatBusy(RateLimited):
    """``JobStore.create`` refused: the chat already runs ``limit`` jobs (``limits.perChatJobs``), counted
    across every process sharing the database. Nothing was created. The message is the one a chat user
    sees for the per-chat limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"This chat already has {limit} jobs running. Wait for one to finish, or cancel it.",
                         detail=f"limits.perChatJobs {limit} reached")
        self.limit = limit


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
    #: The chat the image belongs to (a listing across chats says whose each one is).
    chat_key: str = ""


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: str
    chat_key: str
    user_key: str | None
    status: str
    prompt: str
    requested: int
    #: Front-end data needed to deliver after a restart (reply-to message id, interaction token…).
    origin: dict[str, Any]
    artifact_ids: tuple[str, ...]
    error: str | None
    created_at: str
    updated_at: str
    #: The request as JSON (``core.models.RequestSummary.to_dict``), enough to run it again.
    request: dict[str, Any]
    #: The process running the job (``core.owners.this_owner()``) and when its claim lapses (ISO UTC).
    owner: str | None = None
    lease_until: str | None = None

    @property
    def platform(self) -> str:
        return self.chat_key.partition(":")[0]


@dataclass(frozen=True, slots=True)
class ImageRow:
    """A recorded image as the gallery lists it (the artifacts table; the sidecar has the rest)."""

    artifact_id: str
    chat_key: str
    prompt: str
    provider: str
    model: str
    width: int
    height: int
    #: The image this one edits (an artifact id); None for a new image.
    parent_id: str | None
    job_id: str | None
    created_at: str
    #: Recording order, newest highest: the gallery's cursor (``GalleryQuery.before``).
    seq: int

    @property
    def platform(self) -> str:
        return self.chat_key.partition(":")[0]


#: The most rows one gallery page may ask for.
MAX_PAGE: Final = 500


@dataclass(frozen=True)
class GalleryQuery:
    """Which recorded images a gallery page shows, newest first. Every filter given must match."""

    #: Chats keyed ``"<platform>:…"``.
    platform: str | None = None
    chat_key: str | None = None
    provider: str | None = None
    #: Recorded on or after / on or before these UTC days (both inclusive).
    since: date | None = None
    until: date | None = None
    #: A case-insensitive piece of the prompt, taken literally (``%`` and ``_`` are not wildcards).
    search: str | None = None
    #: The keyset cursor: ``GalleryPage.next_cursor`` of the page before (rows with a lower ``seq``).
    before: int | None = None
    limit: int = 48

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or not 1 <= self.limit <= MAX_PAGE:
            raise ValueError(f"limit must be from 1 to {MAX_PAGE}, got {self.limit!r}")


@dataclass(frozen=True, slots=True)
class GalleryPage:
    images: list[ImageRow]
    #: ``GalleryQuery.before`` for the next page; None on the last page.
    next_cursor: int | None = None


@dataclass(frozen=True, slots=True)
class GalleryFilters:
    """The values a gallery can be filtered on (for its drop-downs), each sorted."""

    platforms: list[str] = field(default_factory=list)
    providers: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Lineage:
    """An image with where it came from and what was made from it (edits of edits)."""

    #: The image itself; None when it has no row (an upload, or a forgotten image): its descendants still count.
    image: ImageRow | None
    #: Its parent, grandparent… nearest first, as far as rows exist.
    ancestors: list[ImageRow]
    #: Every image made from it, directly or through other edits: by generation (children, then
    #: grandchildren…), recording order within one, so each comes after its parent (build the tree
    #: from ``parent_id``).
    descendants: list[ImageRow]
    #: The first parent id along the walk up that has no row (e.g. an uploaded image, which is stored
    #: but not recorded): the artifact store may still have it. None when the walk reached a new image.
    missing_parent: str | None = None


@dataclass(frozen=True, slots=True)
class ChatSummary:
    """One chat as a thread list shows it."""

    chat_key: str
    #: The prompt of its first job still recorded.
    title: str
    #: When any of its jobs last changed.
    updated_at: str
    #: How many jobs it has recorded.
    jobs: int

    @property
    def platform(self) -> str:
        return self.chat_key.partition(":")[0]


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """A live pixbot process, as it reports itself (``pixbot doctor``)."""

    owner: str
    #: What it does: "web", "telegram:poller", "telegram:standby", "discord"…
    roles: tuple[str, ...]
    started_at: str
    seen_at: str
