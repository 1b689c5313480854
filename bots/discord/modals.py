"""The prompt modal behind ✏️ Edit and the **Edit image…** menu: asks what to change, then runs the edit."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

import discord

from bots.discord.answers import InteractionAnswer
from bots.discord.context import context_of
from bots.discord.flow import run_job
from core.models import ImageRequest

__all__ = ["EditBuild", "PromptModal"]

#: Turns the submitted prompt (and the submit interaction, for chat and user) into the edit request.
EditBuild = Callable[[discord.Interaction, str], Awaitable[ImageRequest]]
_MAX_INPUT = 4000  # Discord's cap for a text input


class PromptModal(discord.ui.Modal):
    """A fresh custom id per modal: discord.py keys open modals by custom id alone."""

    prompt: discord.ui.TextInput[PromptModal] = discord.ui.TextInput(
        label="What should change?", style=discord.TextStyle.paragraph, placeholder="make the sky stormy",
        min_length=1, max_length=_MAX_INPUT)

    def __init__(self, build: EditBuild, *, title: str = "Edit image") -> None:
        super().__init__(title=title, custom_id=f"pixbot:prompt:{secrets.token_hex(8)}", timeout=15 * 60)
        self.build = build

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        return await context_of(interaction.client).gate.admit(interaction)

    async def on_submit(self, interaction: discord.Interaction, /) -> None:
        prompt = self.prompt.value

        async def build() -> ImageRequest:
            return await self.build(interaction, prompt)

        await run_job(context_of(interaction.client), InteractionAnswer(interaction), build)
