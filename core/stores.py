"""The storage seam: what the service needs from a database, as protocols.

``ImageService`` depends on these, never on an engine; ``core/records.py`` holds the values they exchange.
SQLite implements them (``core/state.py``, ``core/jobs.py``, ``core/coordination.py``) and so does
PostgreSQL (``core/postgres/``, for several processes); both pass the same conformance suite
(``tests/storage/``). Every method is one atomic operation: an implementation must not leave half of it
applied.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import date
from typing import Any, Protocol

from core.models import Artifact
from core.records import (
    DELIVERY_STYLES,
    MAX_PAGE,
    TERMINAL,
    ChatBusy,
    ChatSettings,
    ChatSummary,
    GalleryFilters,
    GalleryPage,
    GalleryQuery,
    HistoryEntry,
    ImageRow,
    JobRecord,
    JobStatus,
    Lineage,
    ProcessInfo,
)

__all__ = [
    "DELIVERY_STYLES",
    "MAX_PAGE",
    "TERMINAL",
    "ChatBusy",
    "ChatSettings",
    "ChatStore",
    "ChatSummary",
    "CoordinationStore",
    "GalleryFilters",
    "GalleryPage",
    "GalleryQuery",
    "HistoryEntry",
    "ImageRow",
    "JobRecord",
    "JobStatus",
    "JobStore",
    "Lineage",
    "MessageMap",
    "OwnerCheck",
    "ProcessInfo",
    "StateStore",
    "UsageStore",
]

class ChatStore(Protocol):
    """Per-chat memory: the last image, the chat's defaults, and the images recorded for it."""

    async def last_artifact(self, chat_key: str) -> str | None: ...

    async def settings(self, chat_key: str) -> ChatSettings: ...

    async def update_settings(self, chat_key: str, **changes: object) -> ChatSettings:
        """Change only the given settings (None clears one); unknown names raise TypeError, bad
        values InvalidRequest. Returns the chat's settings afterwards."""
        ...

    async def history(self, chat_key: str | None, limit: int = 10) -> list[HistoryEntry]:
        """Recorded images, newest first; ``chat_key=None`` lists every chat."""
        ...

    async def record_artifacts(self, chat_key: str, artifacts: Sequence[Artifact]) -> None:
        """Index images in the chat's history (idempotent) and make the last one the chat's last image."""
        ...

    async def forget_artifacts(self, artifact_ids: Sequence[str]) -> None:
        """Drop deleted images (retention) from history, the message map and last-image pointers."""
        ...

    async def gallery(self, query: GalleryQuery) -> GalleryPage:
        """Recorded images of every chat matching ``query``, newest (highest ``seq``) first, one page
        after ``query.before`` (keyset paging: pages never repeat or skip a row while rows are added)."""
        ...

    async def image(self, artifact_id: str) -> ImageRow | None: ...

    async def lineage(self, artifact_id: str, limit: int = 200) -> Lineage:
        """The image, its ancestors (nearest first, at most ``limit``) and its descendants (at most
        ``limit``, parents before children); a parent cycle in bad data ends the walk, never loops."""
        ...

    async def gallery_filters(self) -> GalleryFilters:
        """The platforms and providers recorded images have (an unknown provider, ``""``, is left out)."""
        ...

    async def missing_details(self, after: int = 0, limit: int = 500) -> list[ImageRow]:
        """Rows recorded without provider, model, size and parent (written before schema 3), with
        ``seq`` above ``after``, oldest first: what ``fill_details`` should complete from the sidecars."""
        ...

    async def fill_details(self, artifacts: Sequence[Artifact]) -> int:
        """Set provider, model, size and parent of rows that lack them from these artifacts; rows
        already filled are left alone. Returns how many rows changed."""
        ...


class MessageMap(Protocol):
    """Which platform message shows which image (a later mapping of the same message wins)."""

    async def map_messages(self, chat_key: str, pairs: Sequence[tuple[str, str]]) -> None: ...

    async def artifact_for_message(self, chat_key: str, message_id: str) -> str | None: ...


class UsageStore(Protocol):
    """Images per user per UTC day, for ``limits.perUserDaily``."""

    async def usage_today(self, user_key: str, *, today: date | None = None) -> int: ...

    async def try_consume(self, user_key: str, amount: int, limit: int, *, today: date | None = None) -> int | None:
        """Add ``amount`` if the total stays within ``limit`` (0 = unlimited): the new total, or None
        with nothing changed."""
        ...

    async def refund(self, user_key: str, amount: int, *, today: date | None = None) -> None: ...

    async def forget_usage_before(self, day: date) -> int: ...


class StateStore(ChatStore, MessageMap, UsageStore, Protocol):
    """Everything about chats and users, as one object (the SQLite ``ChatState``)."""


class JobStore(Protocol):
    """The job ledger: queued → generating → stored → delivered | failed, with an owner and a lease
    while a process works on a job, so another process can tell a dead owner from a live one."""

    async def create(self, *, chat_key: str, user_key: str | None, prompt: str, requested: int,
                     request: Mapping[str, Any], origin: Mapping[str, Any] | None = None,
                     started: bool = False, owner: str | None = None, lease_s: float = 0.0,
                     max_running_per_chat: int = 0) -> JobRecord:
        """A new job, "generating" when ``started`` else "queued", held by ``owner`` for ``lease_s``.

        ``max_running_per_chat`` > 0: when the chat already has that many unsettled jobs (queued or
        generating) whose lease is live, raise ``ChatBusy`` and create nothing. The count and the insert
        are one atomic step across processes: callers racing past the limit never all succeed."""
        ...

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def add_artifacts(self, job_id: str, artifact_ids: Sequence[str]) -> None:
        """Attach images as they arrive, so a crash mid-job still leaves them deliverable."""
        ...

    async def complete_job(self, job_id: str, chat_key: str, artifacts: Sequence[Artifact]) -> JobRecord:
        """In one transaction: the job becomes "stored" with exactly these artifacts in this order,
        they enter the chat's history, and the last one becomes the chat's last image. From
        "generating" or "stored" only, with at least one artifact; otherwise ValueError, nothing changed."""
        ...

    async def fail(self, job_id: str, error: str) -> JobRecord:
        """A job that made nothing, or a stored job given up on (undeliverable): "failed". From
        queued, generating or stored only, with an error; otherwise ValueError. Unknown job: KeyError."""
        ...

    async def deliver(self, job_id: str) -> bool:
        """"stored" → "delivered"; False when it was not "stored" (a late or repeated delivery)."""
        ...

    async def pending_delivery(self, platform: str | None = None) -> list[JobRecord]:
        """Stored but not delivered, oldest first; ``platform`` keeps chats keyed ``"<platform>:…"``."""
        ...

    async def annotate(self, job_id: str, origin: Mapping[str, Any]) -> None:
        """Merge keys into the job's origin (e.g. the progress message a front-end posted, so a later
        run can remove it). JSON-safe values; an unknown job is ignored."""
        ...

    async def unsettled(self) -> list[JobRecord]:
        """Jobs still queued or generating, oldest first, whoever owns them."""
        ...

    async def renew(self, owner: str, lease_s: float) -> int:
        """Extend the lease of every unsettled job ``owner`` holds; returns how many."""
        ...

    async def settle_orphans(self, owner: str, is_dead: OwnerCheck,
                             reason: str = "interrupted by a restart") -> list[JobRecord]:
        """Settle jobs nobody works on any more: unsettled jobs of another owner whose lease has
        lapsed or whose owner ``is_dead`` says is gone. With images they become "stored", without
        they fail with ``reason``. Each job is settled by exactly one caller, even when several
        processes call this at once. Returns the records this call settled."""
        ...

    async def forget_before(self, day: date) -> int:
        """Drop settled jobs created before ``day`` (retention)."""
        ...

    async def claim_deliveries(self, owner: str, lease_s: float, platform: str, is_dead: OwnerCheck,
                               skip: Collection[str] = ()) -> list[JobRecord]:
        """Stored jobs of ``platform`` nobody is delivering (owner gone, lease lapsed, never held, or held
        by ``owner`` itself but not in ``skip``), now held by ``owner`` for ``lease_s``, oldest first; each
        goes to exactly one caller."""
        ...

    async def claim_announcements(self, platform: str) -> list[JobRecord]:
        """Jobs of ``platform`` that ``settle_orphans`` failed (nothing stored) and whose chat has not been
        told yet; each is handed to exactly one caller, once."""
        ...

    async def chats(self, platform: str, limit: int = 50) -> list[ChatSummary]:
        """The chats keyed ``"<platform>:…"`` that have jobs, most recently active first."""
        ...

    async def for_chat(self, chat_key: str, limit: int = 50) -> list[JobRecord]:
        """The chat's most recent ``limit`` jobs, oldest first (a thread reads top to bottom)."""
        ...


class CoordinationStore(Protocol):
    """What several processes sharing one database agree on, each call atomic across processes."""

    async def setting(self, key: str, default: str) -> str:
        """The deployment's value for ``key``; the first caller's ``default`` becomes it."""
        ...

    async def claim_once(self, key: str) -> bool:
        """True for the first caller of ``key`` (any process), False for every later one."""
        ...

    async def forget_once_before(self, day: date) -> int: ...

    async def hold_lease(self, name: str, owner: str, lease_s: float, is_dead: OwnerCheck) -> bool:
        """Take or extend the named role: True when ``owner`` holds it now (it was free, lapsed, held by
        an owner ``is_dead`` says is gone, or already ``owner``'s)."""
        ...

    async def release_lease(self, name: str, owner: str) -> None:
        """Give the role up at once if ``owner`` holds it (a clean shutdown: no waiting for the lapse)."""
        ...

    async def heartbeat(self, owner: str, roles: Sequence[str], started_at: str) -> None: ...

    async def live_processes(self, within_s: float) -> list[ProcessInfo]:
        """Processes seen within ``within_s`` seconds, oldest first."""
        ...

    async def forget_process(self, owner: str) -> None: ...

    async def acquire_slot(self, name: str, capacity: int, owner: str, lease_s: float,
                           is_dead: OwnerCheck) -> int | None:
        """Take one of ``capacity`` numbered slots of ``name`` (``limits.globalConcurrency``) for ``owner``
        for ``lease_s`` seconds: a number 0..capacity-1 that is free, whose lease lapsed or whose holder
        ``is_dead``; None when ``capacity`` slots are held (an owner may hold several). Each slot goes to
        exactly one caller, even when several processes ask at once."""
        ...

    async def release_slot(self, name: str, slot: int, owner: str) -> None:
        """Give the slot back at once if ``owner`` holds it."""
        ...

    async def renew_slots(self, owner: str, lease_s: float) -> int:
        """Extend the lease of every slot ``owner`` holds; returns how many."""
        ...


class OwnerCheck(Protocol):
    def __call__(self, owner: str) -> bool:
        """True when ``owner`` is known to be gone (a dead process on this host)."""
        ...
