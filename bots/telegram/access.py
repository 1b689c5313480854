"""Who may use the Telegram bot (``allowFrom``) and which group messages are meant for it (``groupPolicy``).

Both run as outer middlewares, before any handler: a stranger gets one short refusal and causes no
provider call; group chatter that does not address the bot is dropped silently."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Message, TelegramObject, User

from bots.telegram.context import TelegramContext
from core.config import TelegramConfig

__all__ = ["REFUSAL", "AccessControl", "GroupPolicy", "addresses_bot", "is_allowed"]

log = logging.getLogger(__name__)

REFUSAL = "Sorry, this bot is private: you are not on its list of users."
_Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


def is_allowed(settings: TelegramConfig, user: User | None) -> bool:
    """``"*"`` lets everyone in; otherwise the user's id or username (with or without "@") must be listed."""
    allowed = settings.allow_from
    if "*" in allowed:
        return True
    if user is None:
        return False
    if str(user.id) in allowed:
        return True
    names = {entry.lstrip("@").lower() for entry in allowed}
    return bool(user.username) and (user.username or "").lower() in names


def addresses_bot(message: Message, username: str, bot_id: int) -> bool:
    """A command that is bare or ``@this_bot``, a mention of the bot, or a reply to one of its messages."""
    reply = message.reply_to_message
    if reply is not None and reply.from_user is not None and reply.from_user.id == bot_id:
        return True
    text = message.text or message.caption or ""
    for entity in message.entities or message.caption_entities or []:
        if entity.type == "bot_command" and entity.offset == 0:
            target = entity.extract_from(text).partition("@")[2].lower()
            return not target or target == username
        if entity.type == "mention" and entity.extract_from(text)[1:].lower() == username:
            return True
        if entity.type == "text_mention" and entity.user is not None and entity.user.id == bot_id:
            return True
    return False


class GroupPolicy(BaseMiddleware):
    """In groups with ``groupPolicy: mention`` only messages that address the bot go on. Album items
    pass (only the captioned one can mention the bot; the album handler decides for the whole album).
    Sets ``addressed`` for the access check: refusals go only to messages meant for the bot."""

    def __init__(self, tg: TelegramContext) -> None:
        self.tg = tg

    async def __call__(self, handler: _Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, Message)
        private = event.chat.type == "private"
        addressed = private or addresses_bot(event, self.tg.username, self.tg.bot_id)
        data["addressed"] = addressed
        if private or addressed or event.media_group_id is not None or self.tg.settings.group_policy == "open":
            return await handler(event, data)
        return None


class AccessControl(BaseMiddleware):
    """``allowFrom`` for messages and button presses; a refusal instead of the handler."""

    def __init__(self, tg: TelegramContext) -> None:
        self.tg = tg

    async def __call__(self, handler: _Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user = data.get("event_from_user")
        if is_allowed(self.tg.settings, user):
            return await handler(event, data)
        log.info("telegram: refused user %s (@%s)", user.id if user else None, user.username if user else None)
        if isinstance(event, CallbackQuery):
            await event.answer(REFUSAL, show_alert=True)
        elif isinstance(event, Message) and data.get("addressed") and (event.media_group_id is None or event.caption):
            await event.reply(REFUSAL)
        return None
