"""What every Discord handler shares: config, the ImageService, the gate, and chat keys built from Discord ids."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import discord

from bots.chat import ChatFlow
from bots.discord.access import Gate
from core.config import AppConfig
from core.models import ChatRef
from core.service import ImageService

__all__ = ["PLATFORM", "Click", "ClickHandler", "Context", "chat_of", "context_of"]

PLATFORM = "discord"


@dataclass(frozen=True)
class Click:
    """A button, as its custom id names it: `action` is again, ratio, edit or original (naming an
    image), or rerun (naming a job that made nothing)."""

    action: str
    artifact_id: str
    ratio: str | None = None


ClickHandler = Callable[[discord.Interaction, Click], Awaitable[None]]


@dataclass
class Context:
    config: AppConfig
    service: ImageService
    flow: ChatFlow
    gate: Gate
    #: Runs a button's action; set by the bot (the buttons module cannot import the flows without a cycle).
    on_click: ClickHandler
    #: Whether the gateway granted the Message Content intent (other people's images in replies).
    message_content: bool = True


def context_of(client: discord.Client) -> Context:
    """The Context the bot was built with (handlers created by discord.py only get the client)."""
    ctx = getattr(client, "pixbot", None)
    if not isinstance(ctx, Context):
        raise TypeError(f"{type(client).__name__} carries no pixbot Context")
    return ctx


def chat_of(channel_id: int | None, user: discord.abc.User) -> ChatRef:
    """Discord chats are channels (so everyone there shares the last image); the user keys quotas."""
    return ChatRef(PLATFORM, str(channel_id if channel_id is not None else user.id), str(user.id))
