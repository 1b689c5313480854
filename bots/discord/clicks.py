"""What the result buttons do: 🔁 Again and 📐 ratios repeat the request, ✏️ Edit asks for a prompt,
📎 Original sends the stored file; all through the chat flow."""

from __future__ import annotations

import logging

import discord

from bots.discord.context import Click, context_of
from bots.discord.modals import PromptModal
from bots.discord.surface import DISCORD_FAILED, InteractionSurface

__all__ = ["handle_click"]

log = logging.getLogger(__name__)


async def handle_click(interaction: discord.Interaction, click: Click) -> None:
    ctx = context_of(interaction.client)
    surface = InteractionSurface(ctx.service, interaction)
    if click.action == "edit":
        async def on_prompt(_: discord.Interaction, modal_surface: InteractionSurface, prompt: str, __: int) -> None:
            await ctx.flow.edit(modal_surface, click.artifact_id, prompt)

        try:
            await interaction.response.send_modal(PromptModal(on_prompt))
        except discord.HTTPException as exc:
            log.warning("button edit %s: Discord refused the modal: %s", click.artifact_id, exc)
            await surface.tell(DISCORD_FAILED)
    elif click.action == "original":
        try:
            await ctx.flow.original(surface, click.artifact_id)
        except discord.HTTPException as exc:
            log.warning("button original %s: Discord refused a call: %s", click.artifact_id, exc)
            await surface.tell(DISCORD_FAILED)
    elif click.action == "rerun":
        await ctx.flow.again_job(surface, click.artifact_id)
    else:
        await ctx.flow.again(surface, click.artifact_id, click.ratio)
