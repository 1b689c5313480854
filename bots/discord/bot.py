"""The discord.py Bot: intents, the gated command tree, cogs, persistent buttons and the command sync; with
`bots.discord.shardCount` set, the same bot over discord.py's AutoShardedClient."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bots.discord.buttons import RerunButton, ResultButton
from bots.discord.commands import ImageCommands
from bots.discord.context import Context, context_of
from bots.discord.gestures import EditGestures
from bots.discord.surface import InteractionSurface
from core.errors import PixbotError

__all__ = ["GatedTree", "PixbotBot", "ShardedPixbotBot", "new_bot", "sync_commands"]

log = logging.getLogger(__name__)


class GatedTree(app_commands.CommandTree[discord.Client]):
    """Every slash command and context menu passes the gate first; refusals are ephemeral first responses."""

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        return await context_of(self.client).gate.admit(interaction)

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError, /) -> None:
        """Only reached by bugs (handlers answer every failure themselves): log it, still answer."""
        cause = getattr(error, "original", error)
        log.error("command %s failed", interaction.command and interaction.command.qualified_name,
                  exc_info=cause)
        text = cause.public_message if isinstance(cause, PixbotError) else PixbotError.default_message
        ctx = context_of(self.client)
        await InteractionSurface(ctx.service, interaction).tell(text)  # ephemeral first response, or edits the defer


class PixbotBot(commands.Bot):
    """Built once per gateway attempt: `message_content=False` is the fallback when Discord refuses the
    privileged intent (close code 4014); `sync=False` skips the command sync already done."""

    def __init__(self, ctx: Context, *, message_content: bool, sync: bool = True, **options: Any) -> None:
        intents = discord.Intents.default()
        intents.message_content = message_content
        super().__init__(command_prefix=commands.when_mentioned, intents=intents, help_command=None,
                         tree_cls=GatedTree, allowed_mentions=discord.AllowedMentions.none(), **options)
        self.pixbot = ctx
        self._sync = sync

    async def setup_hook(self) -> None:
        ctx = self.pixbot
        guilds = [discord.Object(int(g)) for g in ctx.config.bots.discord.command_guilds]
        scope: list[discord.abc.Snowflake] = list(guilds) if guilds else discord.utils.MISSING  # MISSING: global
        await self.add_cog(ImageCommands(ctx), guilds=scope)
        gestures = EditGestures(self, ctx)
        await self.add_cog(gestures)
        self.tree.add_command(gestures.menu, guilds=scope)
        self.add_dynamic_items(ResultButton, RerunButton)
        if self._sync:
            await sync_commands(self.tree, guilds)

    async def on_message(self, message: discord.Message, /) -> None:
        """No prefix commands: the reply gesture is the EditGestures listener."""
        return None


class ShardedPixbotBot(PixbotBot, commands.AutoShardedBot):
    """PixbotBot over discord.py's AutoShardedClient (the way discord.py builds AutoShardedBot from Bot's
    mixin): this process runs `shard_ids` (None: all) of the bot's `shard_count` gateway shards."""

    def __init__(self, ctx: Context, *, message_content: bool, sync: bool = True, shard_count: int,
                 shard_ids: list[int] | None = None) -> None:
        super().__init__(ctx, message_content=message_content, sync=sync, shard_count=shard_count,
                         shard_ids=shard_ids)


def new_bot(ctx: Context, *, message_content: bool, sync: bool) -> PixbotBot:
    """A plain Bot (one gateway connection) unless `bots.discord.shardCount` is set."""
    settings = ctx.config.bots.discord
    if settings.shard_count is None:
        return PixbotBot(ctx, message_content=message_content, sync=sync)
    return ShardedPixbotBot(ctx, message_content=message_content, sync=sync, shard_count=settings.shard_count,
                            shard_ids=settings.shard_ids or None)


async def sync_commands(tree: app_commands.CommandTree[discord.Client], guilds: list[discord.Object]) -> None:
    """To the listed guilds (instant), clearing leftovers of an earlier global sync; else globally (Discord
    may take up to an hour to show global changes). A guild the bot cannot reach is logged, not fatal."""
    for guild in guilds:
        try:
            synced = await tree.sync(guild=guild)
            log.info("synced %d commands to guild %s", len(synced), guild.id)
        except discord.HTTPException as exc:
            log.warning("could not sync commands to guild %s (is the bot in it, invited with the "
                        "applications.commands scope?): %s", guild.id, exc)
    synced = await tree.sync()
    log.info("synced %d global commands", len(synced))
