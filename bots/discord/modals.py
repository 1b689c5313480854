"""The prompt modal behind ✏️ Edit and the **Edit image…** menu: asks what to change, then runs the edit."""

from __future__ import annotations

import secrets

import discord

from bots.discord.answers import InteractionAnswer
from bots.discord.context import context_of
from bots.discord.flow import run_job
from bots.discord.targets import EditBuild
from core.errors import InvalidRequest
from core.models import ImageRequest

__all__ = ["PromptModal"]

_MAX_INPUT = 4000  # Discord's cap for a text input


class PromptModal(discord.ui.Modal):
    """Asks what to change and, for a message that shows several images, which one (default the
    first). A fresh custom id per modal: discord.py keys open modals by custom id alone."""

    prompt: discord.ui.TextInput[PromptModal] = discord.ui.TextInput(
        label="What should change?", style=discord.TextStyle.paragraph, placeholder="make the sky stormy",
        min_length=1, max_length=_MAX_INPUT)

    def __init__(self, build: EditBuild, *, title: str = "Edit image", images: int = 1) -> None:
        super().__init__(title=title, custom_id=f"pixbot:prompt:{secrets.token_hex(8)}", timeout=15 * 60)
        self.build = build
        self.images = images
        self.which: discord.ui.TextInput[PromptModal] | None = None
        if images > 1:
            self.which = discord.ui.TextInput(label=f"Which image? (1–{images})", default="1", required=False,
                                              min_length=0, max_length=2)
            self.add_item(self.which)

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        return await context_of(interaction.client).gate.admit(interaction)

    async def on_submit(self, interaction: discord.Interaction, /) -> None:
        prompt = self.prompt.value
        chosen = (self.which.value if self.which is not None else "").strip() or "1"

        async def build() -> ImageRequest:
            if not chosen.isdigit() or not 1 <= int(chosen) <= self.images:
                raise InvalidRequest(f"“{chosen}” is not one of the images: pick a number from 1 to {self.images}.")
            return await self.build(interaction, prompt, int(chosen))

        await run_job(context_of(interaction.client), InteractionAnswer(interaction), build)
