"""The Telegram ChatSurface: answers go to one chat (and topic), replying to the message that asked.
Busy sign: ``upload_photo`` plus, for long jobs, one status message; images: photos, albums or files in
the chat's delivery style, fitted to Telegram's limits, with the result buttons."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import BufferedInputFile, Message

from bots.chat import ResultText, Sent
from bots.chat.wording import file_size
from bots.telegram import captions
from bots.telegram.captions import fit_text
from bots.telegram.context import TelegramContext
from bots.telegram.delivery import Destination, original_filename, send_results, send_text
from bots.telegram.feedback import Feedback
from bots.telegram.keyboards import again_keyboard
from core.errors import InvalidRequest
from core.models import Artifact, ChatRef
from core.service import ImageService, Progress

__all__ = ["TelegramSurface", "chat_of"]

log = logging.getLogger(__name__)

PLATFORM = "telegram"


def chat_of(chat_id: int, user_id: int | None) -> ChatRef:
    return ChatRef(PLATFORM, str(chat_id), str(user_id) if user_id is not None else None)


class TelegramSurface:
    def __init__(self, bot: Bot, service: ImageService, tg: TelegramContext, dest: Destination,
                 user_id: int | None, recorded: Mapping[str, Any] | None = None) -> None:
        self.bot, self.service, self.tg, self.dest = bot, service, tg, dest
        self._chat = chat_of(dest.chat_id, user_id)
        self._feedback: Feedback | None = None
        #: The origin an earlier run recorded (restart deliveries): its status message, if any.
        self._recorded = dict(recorded or {})

    @classmethod
    def answering(cls, bot: Bot, service: ImageService, tg: TelegramContext, message: Message,
                  user_id: int | None = None) -> TelegramSurface:
        """Answers ``message`` (in its topic), on behalf of ``user_id`` (default: its sender)."""
        thread = message.message_thread_id if message.is_topic_message else None
        who = user_id if user_id is not None else (message.from_user.id if message.from_user else None)
        return cls(bot, service, tg, Destination(message.chat.id, message.message_id, thread), who)

    @classmethod
    def from_origin(cls, bot: Bot, service: ImageService, tg: TelegramContext, origin: Mapping[str, Any],
                    chat: ChatRef) -> TelegramSurface:
        """For a job recorded by an earlier run: the same chat, topic and message to answer."""
        user = chat.user_id or ""
        return cls(bot, service, tg, Destination.from_origin(origin, chat),
                   int(user) if user.lstrip("-").isdigit() else None, origin)

    @property
    def chat(self) -> ChatRef:
        return self._chat

    @property
    def origin(self) -> dict[str, Any]:
        return self.dest.origin()

    @asynccontextmanager
    async def busy(self) -> AsyncIterator[None]:
        async def on_status(job_id: str, message_id: int) -> None:
            await self.service.annotate_job(job_id, status_message=message_id)

        async with Feedback(self.bot, self.dest, self.tg.options, on_status) as feedback:
            self._feedback = feedback
            try:
                yield
            finally:
                self._feedback = None

    async def progress(self, update: Progress) -> None:
        if self._feedback is not None:
            await self._feedback.progress(update)

    async def tell(self, text: str) -> None:
        await send_text(self.bot, self.dest, text)

    async def send_images(self, artifacts: Sequence[Artifact], text: ResultText) -> Sent:
        style = (await self.service.settings(self._chat.key)).delivery or self.tg.settings.delivery
        originals = [await self.service.read(a) for a in artifacts]
        return await send_results(self.bot, self.dest, artifacts, originals, captions.result_caption(text),
                                  style=style, max_pixels=self.service.config.limits.max_pixels)

    async def send_original(self, artifact: Artifact, data: bytes) -> str | None:
        limit = self.tg.document_limit
        if artifact.bytes > limit:
            raise InvalidRequest(f"The original is {file_size(artifact.bytes)}; Telegram takes files up to "
                                 f"{file_size(limit)} from bots.")
        try:
            sent = await self.bot.send_document(
                document=BufferedInputFile(data, filename=original_filename(artifact)),
                caption=f"{artifact.id} · {artifact.width}×{artifact.height} · original file", **self.dest.kwargs())
        except TelegramAPIError as exc:
            log.warning("telegram: could not send the original of %s: %s", artifact.id, exc)
            await self.tell(_refused(exc))
            return None
        return str(sent.message_id)

    async def forget_progress(self) -> None:
        status = self._recorded.get("status_message")
        if isinstance(status, int):
            with contextlib.suppress(TelegramAPIError):  # already gone, or too old to delete
                await self.bot.delete_message(chat_id=self.dest.chat_id, message_id=status)

    async def offer_again(self, text: str, job_id: str) -> None:
        await self.forget_progress()
        try:
            await self.bot.send_message(text=fit_text(text), reply_markup=again_keyboard(job_id), **self.dest.kwargs())
        except TelegramAPIError as exc:
            log.warning("telegram: could not tell chat %s about job %s: %s", self.dest.chat_id, job_id, exc)

    def explain(self, error: Exception) -> str | None:
        return _refused(error) if isinstance(error, TelegramAPIError) else None


def _refused(error: TelegramAPIError) -> str:
    return f"Telegram refused to send that ({error.message}). Try again."
