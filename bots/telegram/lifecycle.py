"""Every update's handler task counts as work in flight (the chat flow's ``Inflight``), so a shutdown lets
it finish instead of cutting it off: aiogram's ``stop_polling`` does not wait for handler tasks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update

from bots.chat.inflight import Inflight
from bots.telegram.context import TelegramContext
from bots.telegram.surface import chat_of
from core.errors import PixbotError

__all__ = ["OncePerUpdate", "TrackUpdates", "chat_key_of"]

log = logging.getLogger(__name__)


def chat_key_of(update: Update) -> str | None:
    """The pixbot chat key an update belongs to, if any."""
    if update.message is not None:
        return chat_of(update.message.chat.id, None).key
    query = update.callback_query
    if query is not None and query.message is not None:
        return chat_of(query.message.chat.id, None).key
    return None


class TrackUpdates(BaseMiddleware):
    """Outer update middleware: registers the task handling each update (polling and webhook alike
    run one task per update), for the whole life of that task."""

    def __init__(self, inflight: Inflight) -> None:
        self.inflight = inflight

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        task = asyncio.current_task()
        if task is not None and isinstance(event, Update):
            self.inflight.add(task, chat_key_of(event))
        return await handler(event, data)


class OncePerUpdate(BaseMiddleware):
    """Outer update middleware: an update is handled once across every process of this bot. Telegram
    retries a webhook delivery it thinks failed (and the retry may reach another replica), and a poller
    taking over re-reads updates the previous one had not confirmed."""

    def __init__(self, tg: TelegramContext) -> None:
        self.tg = tg

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if isinstance(event, Update):
            try:
                first = await self.tg.flow.service.first_time(f"telegram:{self.tg.bot_id}:update:{event.update_id}")
            except PixbotError as exc:  # the database is away: handling it twice beats losing it
                log.warning("telegram: could not record update %s: %s", event.update_id, exc)
                first = True
            if not first:
                log.info("telegram: update %s was already handled; skipped", event.update_id)
                return None
        return await handler(event, data)
