"""What a chat platform must offer the chat flow (``ChatSurface``), and the values that cross that line.

A surface answers one gesture, or one restart delivery: it knows where its answers go and how that
platform shows things (busy sign, plain text, images with buttons), and its own size and text limits.
It never decides what to say or which image is meant; the flow does."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.models import Artifact, ChatRef, Mode, Reference
from core.service import Progress

__all__ = ["Ask", "ChatSurface", "ResultText", "Sent"]


@dataclass(frozen=True, slots=True)
class Ask:
    """A gesture, parsed: what to draw or change, and the images it points at."""

    prompt: str
    mode: Mode = "auto"
    references: tuple[Reference, ...] = ()
    #: How the answer names the image(s) being edited ("the image you replied to (img_…)").
    target: str | None = None
    aspect_ratio: str | None = None
    size: str | None = None
    count: int | None = None
    #: What kind of answer this is, shown with the result ("🔁 Again", "📐 16:9").
    note: str | None = None
    #: A provider and model the asker chose (None: the configured default chain).
    provider: str | None = None
    model: str | None = None
    #: Edit the chat's last image too (a follow-up in a thread), before ``references``.
    include_last: bool = False


@dataclass(frozen=True, slots=True)
class ResultText:
    """The words that go with delivered images, before a platform fits them to its limits."""

    prompt: str
    #: "✏️ Edited …": which image the job changed.
    edited: str | None = None
    #: Settings asked for but not applied, in one line ("size 4K not supported; used 2K").
    ignored: str = ""
    #: "⚠️ 1 of 2 images failed: …" when some images of the job failed.
    failed: str | None = None
    #: Delivered by a later run of the bot than the one that was asked.
    late: bool = False
    #: What kind of answer this is ("🔁 Again", "📐 16:9"), first of the extra lines.
    note: str | None = None

    def lines(self, *, with_ignored: bool = True, notes: Sequence[str] = ()) -> list[str]:
        """Everything but the prompt, one line each, in the order people should read them. A platform
        that shows ignored settings elsewhere leaves them out; ``notes`` are its own (e.g. "re-encoded
        to fit the upload limit")."""
        extras: list[str] = [self.note] if self.note else []
        if self.edited:
            extras.append(f"✏️ Edited {self.edited}")
        if self.ignored and with_ignored:
            extras.append(f"ℹ️ {self.ignored}")
        extras += notes
        if self.failed:
            extras.append(self.failed)
        if self.late:
            extras.append("⏱ Delivered after the bot restarted.")
        return extras


@dataclass(slots=True)
class Sent:
    """What a delivery put in the chat: ``(message key, artifact id)`` for every message that shows an
    image; why something did not go out, in words for the chat ("Telegram said: …"); and ``gone`` when
    trying again later cannot help (the chat is gone, the images can never fit), so the job is given up."""

    shown: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None
    gone: bool = False


class ChatSurface(Protocol):
    """One platform's way of answering one gesture (or one restart delivery)."""

    @property
    def chat(self) -> ChatRef:
        """Where the answer goes and who asked (quota, access)."""
        ...

    @property
    def origin(self) -> dict[str, Any]:
        """JSON-safe data recorded with the job, enough to build this surface again after a restart."""
        ...

    def busy(self) -> AbstractAsyncContextManager[None]:
        """Around resolving and generating: keeps the platform's "working" sign up."""
        ...

    async def progress(self, update: Progress) -> None:
        """The service accepted the job (first call), then each image stored or failed."""
        ...

    async def tell(self, text: str) -> None:
        """A plain answer (a refusal, a failure, a confirmation), fitted to the platform's limits.
        Never raises: a chat that cannot be reached is logged."""
        ...

    async def send_images(self, artifacts: Sequence[Artifact], text: ResultText) -> Sent:
        """The images with their words and result buttons, fitted to the platform's limits. Never
        raises for the platform's refusals: they are reported in ``Sent``."""
        ...

    async def send_original(self, artifact: Artifact, data: bytes) -> str | None:
        """The untouched file; the key of the message that shows it (None when nothing is mapped).
        Raises PixbotError when the platform cannot take it (too large)."""
        ...

    async def offer_again(self, text: str, job_id: str) -> None:
        """After a restart: remove or replace this job's progress sign, then ``text`` with a 🔁 Again
        button that repeats the job. Never raises for the platform's refusals."""
        ...

    async def forget_progress(self) -> None:
        """After a restart: remove or close the progress sign an earlier run left for this job (a status
        message, an unanswered "thinking…"). Never raises."""
        ...

    def explain(self, error: Exception) -> str | None:
        """A plain sentence for the platform's own exceptions (None: not one of ours)."""
        ...
