"""Plain data passed between front-ends, the service and the store. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ASPECT_RATIOS",
    "Artifact",
    "ChatRef",
    "ImageRequest",
    "JobResult",
    "Mode",
    "NormalisationReport",
    "Reference",
    "RequestSummary",
    "SlotError",
]

Mode = Literal["generate", "edit", "auto"]

#: The ratios offered in chat UIs (nanobot's WebUI set). Any ``w:h`` is accepted on input.
ASPECT_RATIOS: tuple[str, ...] = ("1:1", "3:4", "9:16", "4:3", "16:9", "3:2", "2:3", "21:9")


@dataclass(frozen=True, slots=True)
class ChatRef:
    """Who asked, and where the answer goes. ``key`` identifies the chat in ChatState."""

    platform: str
    chat_id: str
    user_id: str | None = None

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.chat_id}"

    @property
    def user_key(self) -> str:
        return f"{self.platform}:{self.user_id if self.user_id is not None else self.chat_id}"

    @classmethod
    def from_key(cls, key: str, user_id: str | None = None) -> ChatRef:
        platform, _, chat_id = key.partition(":")
        if not chat_id:
            platform, chat_id = "cli", key
        return cls(platform, chat_id, user_id)

    @classmethod
    def from_keys(cls, chat_key: str, user_key: str | None) -> ChatRef:
        """The chat and person as a job recorded them (``key`` and ``user_key``)."""
        user_id = user_key.partition(":")[2] if user_key else ""
        return cls.from_key(chat_key, user_id or None)


@dataclass(frozen=True, slots=True)
class Reference:
    """A reference image: exactly one of an artifact id, a local path, or uploaded bytes.

    ``trusted`` paths come from the local operator (the CLI) and may be anywhere; untrusted
    paths (chats, HTTP, LLM tool calls) must lie inside the media or allowed directories.
    """

    artifact_id: str | None = None
    path: str | None = None
    data: bytes | None = field(default=None, repr=False)
    name: str | None = None
    trusted: bool = False

    def describe(self) -> str:
        return self.artifact_id or self.name or self.path or "uploaded image"


@dataclass(frozen=True, slots=True)
class ImageRequest:
    prompt: str
    chat: ChatRef
    references: tuple[Reference, ...] = ()
    aspect_ratio: str | None = None
    size: str | None = None
    count: int | None = None
    provider: str | None = None
    model: str | None = None
    mode: Mode = "auto"
    #: Front-end data needed to deliver after a restart (e.g. reply-to message id); JSON-safe.
    origin: dict[str, Any] = field(default_factory=dict)
    #: Put the chat's last image before ``references`` (refused when the chat has none): the CLI's
    #: ``--edit-last`` and the nanobot tool's ``edit_last``.
    include_last: bool = False


@dataclass(frozen=True, slots=True)
class RequestSummary:
    """What a job was asked to do, as recorded in its ledger entry: enough to run it again (Again,
    another ratio) on any platform after any restart. ``references`` are the images it actually
    used, resolved: artifact ids, stored paths, or ``upload:<name>`` for bytes that were not kept."""

    prompt: str
    mode: Mode
    count: int
    provider: str
    model: str
    aspect_ratio: str | None = None
    size: str | None = None
    references: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "mode": self.mode, "aspect_ratio": self.aspect_ratio, "size": self.size,
                "count": self.count, "provider": self.provider, "model": self.model,
                "references": list(self.references)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestSummary:
        """Tolerant of records written by older versions (missing or odd fields get defaults)."""
        mode = data.get("mode")
        count = data.get("count")
        return cls(
            prompt=str(data.get("prompt") or ""),
            mode=mode if mode in ("generate", "edit", "auto") else "auto",
            count=count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 1,
            provider=str(data.get("provider") or ""),
            model=str(data.get("model") or ""),
            aspect_ratio=_str_or_none(data.get("aspect_ratio")),
            size=_str_or_none(data.get("size")),
            references=tuple(str(r) for r in data.get("references") or () if isinstance(r, str)),
        )


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True, slots=True)
class Artifact:
    """A stored image. ``to_sidecar()`` is nanobot's sidecar plus pixbot's own fields."""

    id: str
    path: str
    mime: str
    prompt: str
    model: str
    provider: str
    source_images: tuple[str, ...]
    created_at: str
    parent_id: str | None = None
    job_id: str | None = None
    chat: str | None = None
    width: int = 0
    height: int = 0
    bytes: int = 0
    applied: dict[str, Any] = field(default_factory=dict)
    ignored: dict[str, str] = field(default_factory=dict)

    def to_sidecar(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "mime": self.mime,
            "prompt": self.prompt,
            "model": self.model,
            "provider": self.provider,
            "source_images": list(self.source_images),
            "created_at": self.created_at,
            "parent_id": self.parent_id,
            "job_id": self.job_id,
            "chat": self.chat,
            "width": self.width,
            "height": self.height,
            "bytes": self.bytes,
            "applied": dict(self.applied),
            "ignored": dict(self.ignored),
        }

    @classmethod
    def from_sidecar(cls, data: dict[str, Any]) -> Artifact:
        return cls(
            id=str(data["id"]),
            path=str(data["path"]),
            mime=str(data["mime"]),
            prompt=str(data.get("prompt", "")),
            model=str(data.get("model", "")),
            provider=str(data.get("provider", "")),
            source_images=tuple(str(s) for s in data.get("source_images") or ()),
            created_at=str(data.get("created_at", "")),
            parent_id=data.get("parent_id"),
            job_id=data.get("job_id"),
            chat=data.get("chat"),
            width=int(data.get("width") or 0),
            height=int(data.get("height") or 0),
            bytes=int(data.get("bytes") or 0),
            applied=dict(data.get("applied") or {}),
            ignored={str(k): str(v) for k, v in (data.get("ignored") or {}).items()},
        )


@dataclass(frozen=True, slots=True)
class NormalisationReport:
    """How a request was mapped onto a provider/model: what was applied, what was ignored and why."""

    provider: str
    model: str
    applied: dict[str, Any] = field(default_factory=dict)
    ignored: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "applied": dict(self.applied),
            "ignored": dict(self.ignored),
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        """One line for a caption: what the user asked for but did not get."""
        return "; ".join(self.ignored.values())


@dataclass(frozen=True, slots=True)
class SlotError:
    slot: int
    category: str
    message: str
    provider: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"slot": self.slot, "category": self.category, "message": self.message,
                "provider": self.provider}


@dataclass(frozen=True, slots=True)
class JobResult:
    """The outcome of one submit: every stored image plus an error per slot that failed."""

    job_id: str
    request: ImageRequest
    artifacts: tuple[Artifact, ...]
    errors: tuple[SlotError, ...]
    report: NormalisationReport
    requested: int
    #: Artifacts (or reference descriptions) this job edited, so the front-end can say which.
    edited: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors and len(self.artifacts) >= self.requested

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "artifacts": [a.to_sidecar() for a in self.artifacts],
            "report": self.report.to_dict(),
            "errors": [{"category": e.category, "message": e.message} for e in self.errors],
            "edited": list(self.edited),
        }
