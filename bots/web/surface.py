"""The studio's ChatSurface: a thread (chat ``web:<thread id>``) whose page renders from the job ledger.

Answers are recorded on the job (so a reload shows them) and announced on the thread's event channel
(so an open page fetches what changed at once). An image is "shown" as soon as it is stored: the page
displays it from its own URL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

from bots.chat import ResultText, Sent
from bots.web.events import ThreadEvents
from core.errors import PixbotError
from core.models import Artifact, ChatRef
from core.service import ImageService, Progress

__all__ = ["PLATFORM", "STUDIO_USER", "WebSurface", "thread_key"]

log = logging.getLogger(__name__)

PLATFORM: Final = "web"
#: Whoever holds the studio token: one person (or team) with one quota.
STUDIO_USER: Final = "studio"


def thread_key(thread: str) -> str:
    return f"{PLATFORM}:{thread}"


class WebSurface:
    def __init__(self, service: ImageService, events: ThreadEvents, thread: str, *,
                 request_id: str | None = None, recorded: Mapping[str, Any] | None = None,
                 job_id: str | None = None) -> None:
        self.service, self.events, self.thread = service, events, thread
        self.request_id = request_id
        self._chat = ChatRef(PLATFORM, thread, STUDIO_USER)
        self.job_id = job_id
        self._said: list[str] = list((recorded or {}).get("said") or ())
        #: Resolved when the service accepts the gesture as a job, or it is refused (``refusal``).
        self.accepted: asyncio.Future[None] | None = None
        self.refusal: str | None = None

    @property
    def chat(self) -> ChatRef:
        return self._chat

    @property
    def origin(self) -> dict[str, Any]:
        origin: dict[str, Any] = {"front_end": PLATFORM, "thread": self.thread}
        if self.request_id:
            origin["request_id"] = self.request_id
        return origin

    @asynccontextmanager
    async def busy(self) -> AsyncIterator[None]:
        yield  # the page shows the job's own progress from its events

    async def progress(self, update: Progress) -> None:
        self.job_id = update.job_id
        self._resolve()
        self._publish("job")

    async def tell(self, text: str) -> None:
        if self.job_id is None:  # refused before a job existed: the asking request answers with it
            self.refusal = text
            self._resolve()
            self.events.publish(self.thread, {"type": "notice", "text": text, "request": self.request_id})
            return
        await self._say(text)

    async def send_images(self, artifacts: Sequence[Artifact], text: ResultText) -> Sent:
        lines = text.lines()
        if lines:
            await self._say(*lines, publish=False)
        self._publish("done")
        return Sent(shown=[(f"{a.job_id or self.job_id}#{index}", a.id) for index, a in enumerate(artifacts)])

    async def send_original(self, artifact: Artifact, data: bytes) -> str | None:
        return None  # the page links the original (Download original): nothing is posted

    async def offer_again(self, text: str, job_id: str) -> None:
        self.job_id = job_id
        await self._say(text)  # a failed job's entry has its own Again button

    async def forget_progress(self) -> None:
        self._publish("job")  # nothing was posted: the entry re-renders from the ledger

    def explain(self, error: Exception) -> str | None:
        return None  # the studio calls no platform

    async def _say(self, *texts: str, publish: bool = True) -> None:
        self._said += [t for t in texts if t not in self._said]
        if self.job_id is not None:
            try:
                await self.service.annotate_job(self.job_id, said=self._said)
            except PixbotError as exc:  # the live event still carries it; a reload will not
                log.warning("web: could not record what job %s said: %s", self.job_id, exc)
        if publish:
            self._publish("said")

    def _resolve(self) -> None:
        if self.accepted is not None and not self.accepted.done():
            self.accepted.set_result(None)

    def _publish(self, kind: str) -> None:
        self.events.publish(self.thread, {"type": kind, "job": self.job_id, "request": self.request_id})
