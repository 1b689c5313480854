"""run_discord: point discord.py at the configured REST base and gateway, connect (falling back to no
Message Content intent when Discord refuses it), deliver jobs left over from the last run, and shut down
cleanly when asked."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterator
from typing import Literal, TypeVar

import aiohttp
import discord
import yarl
from discord.gateway import DiscordWebSocket

from bots.chat import ChatFlow
from bots.discord.access import Gate
from bots.discord.bot import PixbotBot, new_bot
from bots.discord.clicks import handle_click
from bots.discord.context import PLATFORM, Context
from bots.discord.surface import ChannelSurface, channel_surface
from core.config import AppConfig, DiscordConfig
from core.errors import ConfigError
from core.models import Artifact, ChatRef
from core.service import ImageService
from core.stores import JobRecord

__all__ = ["SHUTDOWN_GRACE_S", "configure_endpoints", "run_discord"]

log = logging.getLogger(__name__)

#: How long running jobs get to finish and be delivered once a stop is requested.
SHUTDOWN_GRACE_S = 8.0
_LIBRARY_API_BASE: str = discord.http.Route.BASE
_LIBRARY_GATEWAY: yarl.URL = DiscordWebSocket.DEFAULT_GATEWAY
_VERSIONED = re.compile(r"/api/v\d+$")

Pending = list[tuple[JobRecord, list[Artifact]]]
T = TypeVar("T")
_Outcome = Literal["stopped", "closed", "intents"]


def _quiet_voice() -> None:
    """An image bot never joins voice: discord.py's start-up warnings about missing voice libraries
    (PyNaCl, davey) only alarm its operators."""
    discord.VoiceClient.warn_nacl = False
    discord.VoiceClient.warn_dave = False


def configure_endpoints(settings: DiscordConfig) -> None:
    """`apiBase` (a REST root; `/api/v10` is added unless it names a version) and `gatewayUrl` replace
    Discord's; unset, discord.py's own are used. They are process-wide class attributes of discord.py."""
    base = _LIBRARY_API_BASE
    if settings.api_base:
        base = settings.api_base.rstrip("/")
        if not _VERSIONED.search(base):
            base += "/api/v10"
    discord.http.Route.BASE = base
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url) if settings.gateway_url else _LIBRARY_GATEWAY


async def run_discord(config: AppConfig, service: ImageService, stop: asyncio.Event) -> None:
    """Run the Discord front-end until `stop` is set (see bots/app.py's FrontEnd)."""
    settings = config.bots.discord
    if not settings.token:
        raise ConfigError("bots.discord.token is not set (or set DISCORD_BOT_TOKEN).")
    configure_endpoints(settings)
    _quiet_voice()
    service.roles.add(_role(settings))
    pending: Pending = await service.pending_deliveries(PLATFORM)  # before any new job can join the list
    interrupted = await service.take_interrupted(PLATFORM)
    flow = ChatFlow(service)
    ctx = Context(config, service, flow, Gate(settings, flow.inflight), on_click=handle_click)
    message_content, sync = True, _syncs_commands(settings)
    while True:
        bot = new_bot(ctx, message_content=message_content, sync=sync)
        ctx.message_content = message_content
        outcome = await _run_bot(bot, settings.token, ctx, stop, pending, interrupted)
        if outcome != "intents":
            return
        log.warning("Discord refused the Message Content intent (enable it under Bot → Privileged Gateway "
                    "Intents in the developer portal). Running without it: replies can edit the bot's own "
                    "images, other people's images need the Edit image… menu.")
        message_content, sync = False, False


def _syncs_commands(settings: DiscordConfig) -> bool:
    """Application commands belong to the bot, not to a shard: of several processes sharing the gateway,
    only the one running shard 0 registers them."""
    if settings.shard_count is None:
        return True
    syncs = 0 in (settings.shard_ids or [0])
    log.info("Discord %s of %d in this process; %s", _shards(settings), settings.shard_count,
             "it syncs the application commands" if syncs
             else "not syncing application commands (the process running shard 0 does)")
    return syncs


def _shards(settings: DiscordConfig) -> str:
    """`shard 1` or `shards 0,1`: the shards this process runs."""
    shards = settings.shard_ids or list(range(settings.shard_count or 1))
    return f"shard{'s' if len(shards) > 1 else ''} {','.join(map(str, shards))}"


def _role(settings: DiscordConfig) -> str:
    """What `pixbot doctor` lists for this process: `discord`, `discord:shard 1/3` or `discord:shards 0,1/4`."""
    if settings.shard_count is None:
        return "discord"
    return f"discord:{_shards(settings)}/{settings.shard_count}"


async def _run_bot(bot: PixbotBot, token: str, ctx: Context, stop: asyncio.Event, pending: Pending,
                   interrupted: list[JobRecord]) -> _Outcome:
    try:
        await bot.login(token)
    except discord.LoginFailure as exc:
        await bot.close()
        raise ConfigError("Discord rejected bots.discord.token. Copy the bot token again from the developer "
                          "portal (Bot → Reset Token).") from exc
    except (aiohttp.ClientError, OSError) as exc:
        await bot.close()
        raise ConfigError(f"Cannot reach Discord's API at {discord.http.Route.BASE} ({exc}); check the network, "
                          "or bots.discord.apiBase if it is set.") from exc
    except BaseException:
        await bot.close()
        raise
    gateway = asyncio.create_task(bot.connect(reconnect=True), name="discord-gateway")
    stopping = asyncio.create_task(stop.wait(), name="discord-stop")
    catching_up = asyncio.create_task(_deliver_pending(bot, ctx, pending, interrupted, stop), name="discord-pending")
    ctx.flow.inflight.add(catching_up, None)  # the shutdown lets a delivery in progress finish
    try:
        await asyncio.wait({gateway, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if gateway.done():
            error = gateway.exception()
            if isinstance(error, discord.PrivilegedIntentsRequired) and bot.intents.message_content:
                return "intents"
            if error is not None:
                raise error
            return "closed"
        await _shut_down(bot, ctx)
        return "stopped"
    finally:
        for task in (stopping, catching_up):
            task.cancel()
        await asyncio.gather(stopping, catching_up, return_exceptions=True)
        if not bot.is_closed():
            await bot.close()
        with contextlib.suppress(Exception):
            await gateway


async def _shut_down(bot: PixbotBot, ctx: Context) -> None:
    """Refuse new gestures, let running jobs finish and be delivered (within the grace), then close."""
    await ctx.flow.drain(SHUTDOWN_GRACE_S)
    log.info("Discord front-end stopping")
    await bot.close()


async def _deliver_pending(bot: discord.Client, ctx: Context, pending: Pending,
                           interrupted: list[JobRecord], stop: asyncio.Event) -> None:
    """Once connected, post the results a previous run stored but never delivered (oldest first), and
    tell the chats of jobs a crash cut short; then keep doing so for processes that stop later (replicas
    on the same database). Nothing to do: no wait for ready (which a shutdown would otherwise wait out)."""
    async def surface_for(record: JobRecord) -> ChannelSurface | None:
        return await channel_surface(bot, ctx.service, ChatRef.from_keys(record.chat_key, record.user_key),
                                     record.origin, about=record.prompt)

    if pending or interrupted:
        await bot.wait_until_ready()
        log.info("delivering %d Discord jobs left from the last run", len(pending))
        stored: Iterator[tuple[JobRecord, list[Artifact]]] = _consume(pending)
        await ctx.flow.deliver_pending(stored, surface_for)
        await ctx.flow.notify_interrupted(_consume(interrupted), surface_for)
    await ctx.flow.keep_catching_up(PLATFORM, surface_for, stop, before=bot.wait_until_ready)


def _consume(items: list[T]) -> Iterator[T]:
    """Each job leaves the list as it is taken, so a reconnect (intents fallback) never handles it twice."""
    while items:
        yield items.pop(0)
