"""``run_telegram``: log in, register the commands, deliver what a restart left undelivered, take updates
(long polling, or a webhook behind ``webhookSecret``) until ``stop``, then shut down cleanly: no new
updates, running jobs finish (or are cancelled with their images kept), the session is closed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from contextlib import AsyncExitStack
from urllib.parse import urlsplit

from aiogram import Bot, Dispatcher
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import BotCommand, User
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from bots.chat import ChatFlow
from bots.telegram import buttons, chat, errors, imagine
from bots.telegram.access import AccessControl, GroupPolicy
from bots.telegram.context import TelegramContext, TelegramOptions
from bots.telegram.lifecycle import OncePerUpdate, TrackUpdates
from bots.telegram.session import close_bot, make_bot
from bots.telegram.surface import PLATFORM, TelegramSurface
from core.config import AppConfig
from core.errors import ConfigError, PixbotError
from core.models import ChatRef
from core.service import ImageService
from core.stores import JobRecord

__all__ = ["COMMANDS", "build_dispatcher", "run_telegram"]

log = logging.getLogger(__name__)

COMMANDS = [
    BotCommand(command="imagine", description="Draw an image: /imagine a fox --ar 16:9 --n 2"),
    BotCommand(command="edit", description="Edit the image you reply to (or the last one)"),
    BotCommand(command="ratio", description="This chat's aspect ratio, e.g. /ratio 16:9"),
    BotCommand(command="settings", description="Ratio, images per request, photo or file"),
    BotCommand(command="last", description="Show the last image again"),
    BotCommand(command="show", description="Show an image by its id: /show img_…"),
    BotCommand(command="history", description="Recent images with their ids"),
    BotCommand(command="cancel", description="Stop this chat's running job"),
    BotCommand(command="help", description="What I can do, with examples"),
    BotCommand(command="image", description="Same as /imagine"),
    BotCommand(command="draw", description="Same as /imagine"),
    BotCommand(command="start", description="Start here: what I can do"),
]
_LOGIN_RETRY_MAX = 30.0


def build_dispatcher(service: ImageService, tg: TelegramContext) -> Dispatcher:
    """Routers (one per gesture family) and the access middlewares; the service and context are
    workflow data, handed to handlers as ``service`` and ``tg``."""
    dp = Dispatcher(name="pixbot-telegram")
    dp["service"], dp["tg"] = service, tg
    dp.update.outer_middleware(OncePerUpdate(tg))
    dp.update.outer_middleware(TrackUpdates(tg.flow.inflight))
    dp.message.outer_middleware(GroupPolicy(tg))
    dp.message.outer_middleware(AccessControl(tg))
    dp.callback_query.outer_middleware(AccessControl(tg))
    dp.include_routers(errors.make_router(), chat.make_router(), buttons.make_router(), imagine.make_router())
    return dp


async def run_telegram(config: AppConfig, service: ImageService, stop: asyncio.Event, *,
                       options: TelegramOptions | None = None) -> None:
    """Run the Telegram front-end until ``stop`` is set (``pixbot run`` sets it on SIGINT/SIGTERM)."""
    settings = config.bots.telegram
    options = options or TelegramOptions()
    tg = TelegramContext.create(settings, options, config.limits.max_reference_bytes, ChatFlow(service))
    bot = make_bot(settings, options)
    dp = build_dispatcher(service, tg)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(close_bot, bot)
        me = await _login(bot, stop)
        if me is None:
            return
        tg.username, tg.bot_id = (me.username or "").lower(), me.id
        await bot.set_my_commands(COMMANDS)
        # Listed before any update is taken, so a job of this run can never be delivered twice.
        pending = await service.pending_deliveries(PLATFORM)
        interrupted = await service.take_interrupted(PLATFORM)
        site = None
        if settings.mode == "webhook":
            runner, site = await _start_webhook(bot, dp, tg)
            stack.push_async_callback(runner.cleanup)
        # Runs before the cleanups above (last in, first out): jobs finish while the session is open.
        stack.push_async_callback(tg.flow.drain, options.shutdown_grace)
        async def surface_for(record: JobRecord) -> TelegramSurface:
            chat = ChatRef.from_keys(record.chat_key, record.user_key)
            return TelegramSurface.from_origin(bot, service, tg, record.origin, chat)

        if pending:
            tg.flow.inflight.spawn(tg.flow.deliver_pending(pending, surface_for), None, "telegram-pending")
        if interrupted:
            tg.flow.inflight.spawn(tg.flow.notify_interrupted(interrupted, surface_for), None, "telegram-interrupted")
        # Jobs of another process that stopped (a replica on the same database), from now on.
        catching_up = asyncio.create_task(tg.flow.keep_catching_up(PLATFORM, surface_for, stop),
                                          name="telegram-catch-up")
        stack.callback(catching_up.cancel)
        if site is not None:
            service.roles.add("telegram:webhook")
            await stop.wait()
            await site.stop()  # no new updates; Telegram keeps them until the bot is back
        else:
            await _poll_while_leading(bot, dp, tg, stop)
    log.info("telegram: stopped")


async def _login(bot: Bot, stop: asyncio.Event) -> User | None:
    """getMe, retried while the network or the Bot API is down; a rejected token is a configuration error."""
    delay = 1.0
    while not stop.is_set():
        try:
            me = await bot.get_me()
            log.info("telegram: logged in as @%s", me.username)
            return me
        except TelegramUnauthorizedError:
            raise ConfigError("Telegram rejected bots.telegram.token (401 Unauthorized). Check the token "
                              "from @BotFather.") from None
        except (TelegramNetworkError, TelegramServerError) as exc:
            log.warning("telegram: cannot reach the Bot API (%s); retrying in %.0f s", exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, _LOGIN_RETRY_MAX)
    return None


#: The poller's claim on its role lasts this long unrenewed; a standby tries to take it this often. A
#: poller that dies (kill -9) is replaced within their sum; on this host at once (its process is gone).
POLL_LEASE_S = 6.0
STANDBY_RETRY_S = 2.0


async def _poll_while_leading(bot: Bot, dp: Dispatcher, tg: TelegramContext, stop: asyncio.Event) -> None:
    """Long polling by one process per bot token: the one holding the poller role polls, the others stand
    by (they still deliver restart and take-over results) and one takes over when the poller stops."""
    service = tg.flow.service
    role = f"telegram-poller:{tg.bot_id}"
    while not stop.is_set():
        if not await _try_role(service, role):
            if "telegram:standby" not in service.roles:
                log.info("telegram: another process polls this bot; standing by")
            service.roles.add("telegram:standby")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STANDBY_RETRY_S)
            continue
        service.roles.discard("telegram:standby")
        service.roles.add("telegram:poller")
        halt = asyncio.Event()
        keeper = asyncio.create_task(_keep_role(service, role, stop, halt), name="telegram-poller-role")
        try:
            await _poll(bot, dp, tg.options, halt)
        finally:
            keeper.cancel()
            service.roles.discard("telegram:poller")
        if not stop.is_set():
            log.warning("telegram: another process took over polling; standing by")
    with contextlib.suppress(PixbotError):
        await service.release_role(role)  # a clean stop hands the role over at once


async def _try_role(service: ImageService, role: str) -> bool:
    try:
        return await service.hold_role(role, POLL_LEASE_S)
    except PixbotError as exc:  # the database is away: nobody can take the role meanwhile either
        log.warning("telegram: could not check the poller role: %s", exc)
        return True


async def _keep_role(service: ImageService, role: str, stop: asyncio.Event, halt: asyncio.Event) -> None:
    """Renew the role well within its lease; ``halt`` the polling when stopping or when it was lost."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), POLL_LEASE_S / 3)
        if stop.is_set() or not await _try_role(service, role):
            halt.set()
            return


async def _poll(bot: Bot, dp: Dispatcher, options: TelegramOptions, stop: asyncio.Event) -> None:
    await bot.delete_webhook(drop_pending_updates=False)  # getUpdates is refused while a webhook is set
    started = asyncio.Event()

    async def on_startup() -> None:
        started.set()

    dp.startup.register(on_startup)
    polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False, close_bot_session=False,
                                                   polling_timeout=options.polling_timeout))
    waiters = {polling, asyncio.create_task(stop.wait()), asyncio.create_task(started.wait())}
    try:
        while not polling.done() and not stop.is_set():
            _, waiters = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if not polling.done():
            if started.is_set():
                await dp.stop_polling()
            else:
                polling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await polling  # raises whatever made polling fail
    finally:
        for waiter in waiters - {polling}:
            waiter.cancel()


async def _start_webhook(bot: Bot, dp: Dispatcher, tg: TelegramContext) -> tuple[web.AppRunner, web.TCPSite]:
    """aiohttp on listenHost:listenPort at webhookUrl's path; Telegram must send the secret header.
    Without a configured webhookSecret a random one is used for this run."""
    settings = tg.settings
    assert settings.webhook_url is not None  # TelegramConfig requires it in webhook mode
    secret = settings.webhook_secret or secrets.token_urlsafe(32)
    handler = SimpleRequestHandler(dispatcher=dp, bot=bot, secret_token=secret, handle_in_background=True)
    app = web.Application()
    # handler.register() would also close the bot's session on app shutdown, before jobs are drained.
    app.router.add_post(urlsplit(settings.webhook_url).path or "/", handler.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, settings.listen_host, settings.listen_port)
    try:
        await site.start()
        await bot.set_webhook(settings.webhook_url, secret_token=secret, drop_pending_updates=False,
                              allowed_updates=dp.resolve_used_update_types())
    except OSError as exc:  # the port is taken, or the host is not this machine's
        await runner.cleanup()
        raise ConfigError(f"The Telegram webhook cannot listen on {settings.listen_host}:{settings.listen_port} "
                          f"(bots.telegram.listenHost/listenPort): {exc.strerror or exc}.") from None
    except TelegramBadRequest as exc:
        await runner.cleanup()
        raise ConfigError(f"Telegram refused the webhook (bots.telegram.webhookUrl, webhookSecret): "
                          f"{exc.message}") from None
    except BaseException:
        await runner.cleanup()
        raise
    log.info("telegram: webhook listening on %s:%s", settings.listen_host, settings.listen_port)
    return runner, site
