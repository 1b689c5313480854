"""The aiogram Bot and its HTTP session: the Bot API server (``apiBase``), flood control for every call
(``429 retry_after`` is waited out, so no image is dropped), best-effort chat actions, and closing."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.client.telegram import PRODUCTION, TelegramAPIServer
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramEntityTooLarge,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import GetUpdates, SendChatAction, TelegramMethod
from aiogram.utils.token import TokenValidationError

from bots.telegram.context import TelegramOptions
from core.config import TelegramConfig
from core.errors import ConfigError

__all__ = ["FloodControl", "close_bot", "make_bot"]

log = logging.getLogger(__name__)

#: Brief network or 5xx failures: a couple of quick retries, then the caller reports the failure.
_TRANSIENT_ATTEMPTS = 3
_TRANSIENT_DELAY = 0.5


def _may_have_arrived(exc: TelegramNetworkError | TelegramServerError) -> bool:
    """Whether Telegram may have acted on a call that failed this way: only a connection that was never
    made (refused, DNS) proves it did not. A 5xx or a timeout can come after the message was posted."""
    return not isinstance(exc.__cause__, aiohttp.ClientConnectorError)


def _posts(method: TelegramMethod[Any]) -> bool:
    """Calls that put something new in a chat: repeating one that arrived would post it twice."""
    return method.__api_method__.startswith(("send", "forward", "copy"))


class FloodControl(BaseRequestMiddleware):
    """Waits out ``retry_after`` and retries the same call (Telegram did not act on it); retries brief
    network/server failures only where a repeat cannot duplicate anything: never a ``send…`` that may
    have arrived. ``getUpdates`` is left to the dispatcher's own backoff; a failed chat action is only
    logged."""

    def __init__(self, attempts: int, max_wait: float) -> None:
        self.attempts = attempts
        self.max_wait = max_wait

    async def __call__(
        self, make_request: NextRequestMiddlewareType[Any], bot: Bot, method: TelegramMethod[Any]
    ) -> Any:
        if isinstance(method, GetUpdates):
            return await make_request(bot, method)
        if isinstance(method, SendChatAction):
            try:
                return await make_request(bot, method)
            except TelegramAPIError as exc:  # "upload_photo" is a courtesy; the job goes on without it
                log.debug("telegram: chat action failed: %s", exc)
                return True
        name = method.__api_method__
        transient = 0
        for attempt in range(1, self.attempts + 1):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                if attempt == self.attempts or exc.retry_after > self.max_wait:
                    raise
                log.info("telegram: flood control on %s, waiting %d s (attempt %d)", name, exc.retry_after, attempt)
                await asyncio.sleep(exc.retry_after)
            except (TelegramNetworkError, TelegramServerError) as exc:
                transient += 1
                if isinstance(exc, TelegramEntityTooLarge) or transient >= _TRANSIENT_ATTEMPTS:
                    raise
                if _posts(method) and _may_have_arrived(exc):
                    log.warning("telegram: %s failed (%s); not repeated, it may have arrived", name, exc)
                    raise
                log.info("telegram: %s failed (%s), retrying", name, exc)
                await asyncio.sleep(_TRANSIENT_DELAY * transient)
        raise AssertionError("unreachable")  # the loop either returns or raises


def make_bot(settings: TelegramConfig, options: TelegramOptions) -> Bot:
    """A Bot for ``bots.telegram``; ``apiBase`` selects a self-hosted Bot API server (files are still
    downloaded over HTTP from ``{apiBase}/file/bot<token>/<path>``, never read from local disk)."""
    api = TelegramAPIServer.from_base(settings.api_base.rstrip("/")) if settings.api_base else PRODUCTION
    session = AiohttpSession(api=api)
    session.middleware(FloodControl(options.flood_attempts, options.max_flood_wait))
    try:
        return Bot(settings.token or "", session=session)
    except TokenValidationError:
        raise ConfigError("bots.telegram.token is not a Telegram bot token (it looks like 123456789:AA…; "
                          "get one from @BotFather).") from None


async def close_bot(bot: Bot) -> None:
    """Close the bot's HTTP session. aiogram's ``close()`` sleeps 250 ms for TLS connections to shut down;
    with a plain-HTTP Bot API server (local server, tests) there are none, so close directly."""
    session = bot.session
    if isinstance(session, AiohttpSession) and session.api.base.startswith("http://"):
        client = await session.create_session()
        await client.close()
    await session.close()
