"""Who may use the Discord bot (allowFrom, allowGuilds, allowRoles), and no new gestures once a shutdown
has begun; no Discord I/O beyond the one refusal it sends."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import discord

from bots.chat.inflight import Inflight
from bots.chat.wording import RESTARTING
from core.config import DiscordConfig

__all__ = ["Gate", "refusal"]

log = logging.getLogger(__name__)

_NOT_HERE = "This bot is not enabled in this server."
_NO_DMS = "This bot only works in its servers, not in direct messages."
_NO_ROLE = "You need one of this server's image roles to use this bot."
_NOT_ALLOWED = "You are not allowed to use this bot."


def refusal(settings: DiscordConfig, user_id: int, guild_id: int | None, role_ids: Iterable[int]) -> str | None:
    """The short refusal for this person here, or None when they may use the bot.

    ``allowGuilds`` (when set) limits the servers; DMs are then refused. Inside them a user listed in
    ``allowFrom`` is always let in; otherwise ``allowRoles`` (when set) requires one of those roles, and
    without it ``"*"`` in ``allowFrom`` lets everyone in. Ids are compared as strings.
    """
    if settings.allow_guilds and (guild_id is None or str(guild_id) not in settings.allow_guilds):
        return _NO_DMS if guild_id is None else _NOT_HERE
    if str(user_id) in settings.allow_from:
        return None
    if settings.allow_roles:
        held = {str(role) for role in role_ids}
        return None if held & set(settings.allow_roles) else _NO_ROLE
    return None if "*" in settings.allow_from else _NOT_ALLOWED


def _role_ids(user: discord.abc.User) -> list[int]:
    return [role.id for role in user.roles] if isinstance(user, discord.Member) else []


class Gate:
    """Admission for every gesture: access, and no new work once the shutdown has begun."""

    def __init__(self, settings: DiscordConfig, inflight: Inflight) -> None:
        self.settings = settings
        self.inflight = inflight

    def check(self, user: discord.abc.User, guild_id: int | None) -> str | None:
        if self.inflight.closing:
            return RESTARTING
        return refusal(self.settings, user.id, guild_id, _role_ids(user))

    async def admit(self, interaction: discord.Interaction) -> bool:
        """True when the interaction may go on; otherwise its first response is the ephemeral refusal."""
        text = self.check(interaction.user, interaction.guild_id)
        if text is None:
            return True
        log.info("refused interaction from user %s in guild %s: %s", interaction.user.id, interaction.guild_id, text)
        try:
            await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException as exc:
            log.warning("could not send a refusal: %s", exc)
        return False
