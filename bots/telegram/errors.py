"""The error router: any exception a handler raises ends as a plain message in the chat. PixbotError says
its own user message; anything else is logged with its traceback and the chat gets the generic text."""

from __future__ import annotations

import contextlib
import logging

from aiogram import Bot, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import ExceptionTypeFilter
from aiogram.types import ErrorEvent, InaccessibleMessage, ReplyParameters

from bots.telegram.captions import fit_text
from core.errors import InternalError, PixbotError

__all__ = ["make_router"]

log = logging.getLogger(__name__)


def make_router() -> Router:
    router = Router(name="telegram.errors")
    router.errors.register(refused, ExceptionTypeFilter(PixbotError))
    router.errors.register(unexpected)
    return router


async def refused(event: ErrorEvent, bot: Bot) -> None:
    exc = event.exception
    assert isinstance(exc, PixbotError)
    log.info("telegram: update %d refused: %s: %s", event.update.update_id, exc.category, exc.detail or exc)
    await _tell(event, bot, str(exc))


async def unexpected(event: ErrorEvent, bot: Bot) -> None:
    exc = event.exception
    if isinstance(exc, TelegramAPIError):  # Telegram refused a send; the chat may still take a short text
        log.warning("telegram: update %d: Telegram error %s", event.update.update_id, exc)
        await _tell(event, bot, f"Telegram refused to send that ({exc.message}). Try again.")
        return
    log.error("telegram: update %d failed", event.update.update_id, exc_info=exc)
    await _tell(event, bot, InternalError().message)


async def _tell(event: ErrorEvent, bot: Bot, text: str) -> None:
    """Reply in the chat the update came from. A click also gets its spinner stopped."""
    update = event.update
    chat_id, reply_to = None, None
    if update.message is not None:
        chat_id, reply_to = update.message.chat.id, update.message.message_id
    elif (query := update.callback_query) is not None:
        with contextlib.suppress(TelegramAPIError):  # already answered, or too old to answer
            await query.answer()
        if query.message is not None:
            chat_id = query.message.chat.id
            reply_to = None if isinstance(query.message, InaccessibleMessage) else query.message.message_id
    if chat_id is None:
        return
    reply = ReplyParameters(message_id=reply_to, allow_sending_without_reply=True) if reply_to else None
    try:
        await bot.send_message(chat_id=chat_id, text=fit_text(text), reply_parameters=reply)
    except TelegramAPIError as exc:
        log.warning("telegram: could not tell chat %s about an error: %s", chat_id, exc)
