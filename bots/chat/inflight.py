"""The chat front-ends' work in flight, so a shutdown lets it finish instead of cutting it off: wait a
grace period, then cancel the jobs still running through the service (their stored images are kept and
delivered), and only then cut off what is left."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from core.service import ImageService

__all__ = ["CANCEL_GRACE_S", "Inflight"]

log = logging.getLogger(__name__)

#: After the grace period, jobs cancelled through the service get this long to deliver what they stored.
CANCEL_GRACE_S = 1.5


class Inflight:
    """Tasks in flight, each with the chat it works for; they leave when they are done."""

    def __init__(self) -> None:
        self._tasks: dict[asyncio.Task[Any], str | None] = {}
        #: Set when a shutdown begins: new gestures are refused from then on.
        self.closing = False
        #: Set once the shutdown has cancelled the jobs that outlasted the grace period.
        self.cutting = False

    def __len__(self) -> int:
        return len(self._tasks)

    def add(self, task: asyncio.Task[Any], chat_key: str | None) -> None:
        if task not in self._tasks:
            self._tasks[task] = chat_key
            task.add_done_callback(self._forget)

    @asynccontextmanager
    async def track(self, chat_key: str | None) -> AsyncIterator[None]:
        """Count the current task as in flight for ``chat_key`` while the block runs."""
        task = asyncio.current_task()
        if task is not None:
            self.add(task, chat_key)
        yield

    def spawn(self, work: Coroutine[Any, Any, None], chat_key: str | None, name: str) -> asyncio.Task[None]:
        """Run background work (e.g. restart deliveries) as a tracked task; failures are logged."""
        task = asyncio.create_task(work, name=name)
        self.add(task, chat_key)
        task.add_done_callback(_log_failure)
        return task

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(task, None)

    async def drain(self, service: ImageService, grace: float) -> None:
        """Refuse new work, wait up to ``grace`` s for what is in flight, then cancel the jobs still
        running through the service (their stored images are delivered by their own tasks), and after a
        short wait cancel what is left."""
        self.closing = True
        current = asyncio.current_task()
        waiting = [task for task in self._tasks if task is not current]
        if not waiting:
            return
        log.info("waiting up to %.0f s for %d chat tasks", grace, len(waiting))
        _, pending = await asyncio.wait(waiting, timeout=grace)
        if not pending:
            return
        self.cutting = True
        for chat_key in {self._tasks.get(task) for task in pending} - {None}:
            assert chat_key is not None
            await service.cancel(chat_key)
        _, pending = await asyncio.wait(pending, timeout=CANCEL_GRACE_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if pending:
            log.warning("%d chat tasks were cut off by the shutdown; their jobs are recorded", len(pending))


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("background task %s failed", task.get_name(), exc_info=exc)
