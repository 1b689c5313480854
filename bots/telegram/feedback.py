"""What the chat sees while a job runs: ``upload_photo`` repeated until it ends, and for long jobs one
status message, edited in place as images arrive (at most every few seconds) and deleted at the end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.utils.chat_action import ChatActionSender

from bots.telegram.context import TelegramOptions
from bots.telegram.delivery import Destination
from core.service import Progress

__all__ = ["Feedback"]

log = logging.getLogger(__name__)


class Feedback:
    """``async with Feedback(...) as fb: await service.submit(request, progress=fb.progress)``."""

    def __init__(self, bot: Bot, dest: Destination, options: TelegramOptions,
                 on_status: Callable[[str, int], Awaitable[None]] | None = None) -> None:
        """``on_status(job_id, message_id)`` is told when the status message is posted, so a run after a
        crash can remove it."""
        self.bot, self.dest, self.options = bot, dest, options
        self.on_status = on_status
        self._action = ChatActionSender.upload_photo(chat_id=dest.chat_id, bot=bot, message_thread_id=dest.thread_id,
                                                     interval=options.action_interval)
        self._progress: Progress | None = None
        self._done = False
        self._wake = asyncio.Event()
        self._status: asyncio.Task[None] | None = None
        self._status_id: int | None = None

    async def __aenter__(self) -> Feedback:
        await self._action.__aenter__()
        self._status = asyncio.create_task(self._run_status(), name=f"telegram-status:{self.dest.chat_id}")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._done = True
        self._wake.set()
        try:
            if self._status is not None:
                await self._status  # returns promptly: it only finishes a send or edit in flight
        finally:
            await self._action.__aexit__(None, None, None)
            if self._status_id is not None:
                with contextlib.suppress(TelegramAPIError):
                    await self.bot.delete_message(chat_id=self.dest.chat_id, message_id=self._status_id)

    async def progress(self, update: Progress) -> None:
        """The service's progress callback."""
        self._progress = update
        self._wake.set()

    def _text(self) -> str:
        p = self._progress
        if p is None:
            return "🎨 Working on it…"
        noun = "image" if p.total == 1 else "images"
        text = f"🎨 Generating {p.total} {noun} with {p.model}…"
        if p.total > 1 and (p.stored or p.failed):
            text += f" {p.stored} of {p.total} done"
            if p.failed:
                text += f", {p.failed} failed"
        return text

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up as soon as the job ends."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while not self._done:
                    self._wake.clear()
                    await self._wake.wait()

    async def _run_status(self) -> None:
        await self._sleep(self.options.status_after)
        if self._done:
            return
        shown = self._text()
        try:
            message = await self.bot.send_message(text=shown, **self.dest.kwargs())
        except TelegramAPIError as exc:
            log.debug("telegram: status message failed: %s", exc)
            return
        self._status_id = message.message_id
        if self.on_status is not None and self._progress is not None:
            try:
                await self.on_status(self._progress.job_id, message.message_id)
            except Exception:  # bookkeeping for a crash; the job goes on without it
                log.warning("telegram: could not record the status message", exc_info=True)
        while not self._done:
            text = self._text()
            if text == shown:  # nothing new: wait for progress or the end (no await since the check)
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self.bot.edit_message_text(text=text, chat_id=self.dest.chat_id, message_id=message.message_id)
            except TelegramAPIError as exc:
                log.debug("telegram: status edit failed: %s", exc)
            shown = text
            await self._sleep(self.options.status_edit_interval)
