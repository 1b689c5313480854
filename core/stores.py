"""The storage seam: what the service needs from a database, as protocols.

``ImageService`` depends on these, never on an engine. ``core/state.py`` and ``core/jobs.py`` are the
SQLite implementation; another engine (PostgreSQL, for several processes) implements the same
protocols and passes the same conformance suite (``tests/storage/``). Every method is one atomic
operation: an implementation must not leave half of it applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final, Literal, Protocol

from core.models import Artifact

__all__ = [
    "DELIVERY_STYLES",
    "TERMINAL",
    "ChatSettings",
    "ChatStore",
    "HistoryEntry",
    "JobRecord",
    "JobStatus",
    "JobStore",
    "MessageMap",
    "OwnerCheck",
    "StateStore",
    "UsageStore",
]

DELIVERY_STYLES: Final = ("photo", "document", "both")

JobStatus = Literal["queued", "generating", "stored", "delivered", "failed"]
TERMINAL: Final = frozenset({"delivered", "failed"})


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
                     started: bool = False, owner: str | None = None, lease_s: float = 0.0) -> JobRecord:
        """A new job, "generating" when ``started`` else "queued", held by ``owner`` for ``lease_s``."""
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


class OwnerCheck(Protocol):
    def __call__(self, owner: str) -> bool:
        """True when ``owner`` is known to be gone (a dead process on this host)."""
        ...
