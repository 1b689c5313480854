"""The prompt modal behind ✏️ Edit and the **Edit image…** menu: asks what to change (and, for a message
with several images, which one), then hands both to the gesture that opened it."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

import discord

from bots.discord.context import context_of
from bots.discord.surface import InteractionSurface

__all__ = ["OnPrompt", "PromptModal"]

#: Runs the edit: the modal's interaction, its surface, the prompt, the chosen image number (1-based).
OnPrompt = Callable[[discord.Interaction, InteractionSurface, str, int], Awaitable[None]]
_MAX_INPUT = 4000  # Discord's cap for a text input


class PromptModal(discord.ui.Modal):
    """A fresh custom id per modal: discord.py keys open modals by custom id alone."""

    prompt: discord.ui.TextInput[PromptModal] = discord.ui.TextInput(
        label="What should change?", style=discord.TextStyle.paragraph, placeholder="make the sky stormy",
        min_length=1, max_length=_MAX_INPUT)

    def __init__(self, on_prompt: OnPrompt, *, title: str = "Edit image", images: int = 1) -> None:
        super().__init__(title=title, custom_id=f"pixbot:prompt:{secrets.token_hex(8)}", timeout=15 * 60)
        self.on_prompt = on_prompt
        self.images = images
        self.which: discord.ui.TextInput[PromptModal] | None = None
        if images > 1:
            self.which = discord.ui.TextInput(label=f"Which image? (1–{images})", default="1", required=False,
                                              min_length=0, max_length=2)
            self.add_item(self.which)

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        return await context_of(interaction.client).gate.admit(interaction)

    async def on_submit(self, interaction: discord.Interaction, /) -> None:
        surface = InteractionSurface(context_of(interaction.client).service, interaction)
        chosen = (self.which.value if self.which is not None else "").strip() or "1"
        if not chosen.isdigit() or not 1 <= int(chosen) <= self.images:
            await surface.tell(f"“{chosen}” is not one of the images: pick a number from 1 to {self.images}.")
            return
        await self.on_prompt(interaction, surface, self.prompt.value, int(chosen))
