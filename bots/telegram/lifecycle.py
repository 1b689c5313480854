"""The Telegram front-end's running work: every update's handler task and the restart deliveries, so a
shutdown can let them finish (or cancel their jobs, keeping stored images) instead of cutting them off.

aiogram's ``stop_polling`` does not wait for handler tasks (TESTING.md §1.5); this does."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update

from core.service import ImageService

__all__ = ["JobTracker", "TrackJobs", "chat_key_of"]

log = logging.getLogger(__name__)

#: After the grace period, cancelled jobs get this long to deliver what they stored.
_CANCEL_GRACE = 1.5


def chat_key_of(update: Update) -> str | None:
    """The pixbot chat key an update belongs to, if any."""
    if update.message is not None:
        return f"telegram:{update.message.chat.id}"
    query = update.callback_query
    if query is not None and query.message is not None:
        return f"telegram:{query.message.chat.id}"
    return None


class JobTracker:
    """Tasks in flight, each with the chat it works for. Tasks leave the set when they are done."""

    def __init__(self) -> None:
        self._tasks: dict[asyncio.Task[Any], str | None] = {}
        #: Set once the shutdown has cancelled the jobs that outlasted the grace period.
        self.closing = False

    def __len__(self) -> int:
        return len(self._tasks)

    def add(self, task: asyncio.Task[Any], chat_key: str | None) -> None:
        if task not in self._tasks:
            self._tasks[task] = chat_key
            task.add_done_callback(self._forget)

    def spawn(self, work: Coroutine[Any, Any, None], chat_key: str | None, name: str) -> asyncio.Task[None]:
        """Run background work (e.g. restart deliveries) as a tracked task; failures are logged."""
        task = asyncio.create_task(work, name=name)
        self.add(task, chat_key)
        task.add_done_callback(_log_failure)
        return task

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(task, None)

    async def drain(self, service: ImageService, grace: float) -> None:
        """Wait up to ``grace`` s for everything in flight. Then cancel the jobs still running (their
        stored images are delivered by the handlers), and after a short wait cancel what is left."""
        if not self._tasks:
            return
        log.info("telegram: waiting up to %.0f s for %d running tasks", grace, len(self._tasks))
        _, pending = await asyncio.wait(list(self._tasks), timeout=grace)
        if not pending:
            return
        self.closing = True
        for chat_key in {self._tasks.get(task) for task in pending} - {None}:
            assert chat_key is not None
            await service.cancel(chat_key)
        _, pending = await asyncio.wait(pending, timeout=_CANCEL_GRACE)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if pending:
            log.warning("telegram: %d tasks were cut off by the shutdown; their jobs are recorded", len(pending))


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("telegram: background task %s failed", task.get_name(), exc_info=exc)


class TrackJobs(BaseMiddleware):
    """Outer update middleware: registers the task handling each update (polling and webhook alike
    run one task per update), for the whole life of that task."""

    def __init__(self, tracker: JobTracker) -> None:
        self.tracker = tracker

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        task = asyncio.current_task()
        if task is not None and isinstance(event, Update):
            self.tracker.add(task, chat_key_of(event))
        return await handler(event, data)
