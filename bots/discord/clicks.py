"""What the result buttons do: 🔁 Again and 📐 ratios repeat the request, ✏️ Edit asks for a prompt,
📎 Original sends the stored file."""

from __future__ import annotations

import logging

import discord

from bots.discord.answers import InteractionAnswer
from bots.discord.context import Click, context_of
from bots.discord.delivery import send_original
from bots.discord.flow import DISCORD_FAILED, run_job
from bots.discord.modals import PromptModal
from bots.discord.targets import again_request, edit_of_artifact
from core.errors import PixbotError
from core.models import ImageRequest

__all__ = ["handle_click"]

log = logging.getLogger(__name__)


async def handle_click(interaction: discord.Interaction, click: Click) -> None:
    try:
        await _run(interaction, click)
    except discord.HTTPException as exc:
        log.warning("button %s %s: Discord refused a call: %s", click.action, click.artifact_id, exc)
        await InteractionAnswer(interaction).refuse(DISCORD_FAILED)  # not a "thinking…" left hanging
    except Exception:
        log.exception("button %s %s failed", click.action, click.artifact_id)
        await InteractionAnswer(interaction).refuse(PixbotError.default_message)


async def _run(interaction: discord.Interaction, click: Click) -> None:
    ctx = context_of(interaction.client)
    if click.action == "edit":
        await interaction.response.send_modal(PromptModal(edit_of_artifact(click.artifact_id)))
    elif click.action == "original":
        await send_original(ctx, interaction, click.artifact_id)
    else:
        async def build() -> ImageRequest:
            return await again_request(ctx, click.artifact_id, interaction, click.ratio)

        await run_job(ctx, InteractionAnswer(interaction), build)
