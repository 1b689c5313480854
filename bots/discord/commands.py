"""Slash commands: /imagine, /edit (image gestures through the shared flow), /settings, /history, /cancel,
/help (ephemeral answers straight from the service and chat state)."""

from __future__ import annotations

from datetime import datetime

import discord
from discord import app_commands
from discord.ext import commands

from bots.discord.answers import InteractionAnswer
from bots.discord.context import Context, chat_of, origin_of
from bots.discord.flow import ready, run_job
from bots.discord.targets import download
from core.models import ASPECT_RATIOS, ImageRequest, Reference
from core.state import ChatSettings

__all__ = ["SIZES", "ImageCommands"]

#: The size choices offered; providers map them to what they support and say what they changed.
SIZES = ("1K", "2K", "4K")
_RATIO_CHOICES = [app_commands.Choice(name=r, value=r) for r in ASPECT_RATIOS]
_SIZE_CHOICES = [app_commands.Choice(name=s, value=s) for s in SIZES]
Prompt = app_commands.Range[str, 1, 4000]
Count = app_commands.Range[int, 1, 8]


class ImageCommands(commands.Cog):
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @app_commands.command()
    @app_commands.describe(prompt="What to draw", aspect_ratio="Shape of the image (default: this channel's)",
                           count="How many images (default: this channel's)", size="Resolution")
    @app_commands.choices(aspect_ratio=_RATIO_CHOICES, size=_SIZE_CHOICES)
    async def imagine(self, interaction: discord.Interaction, prompt: Prompt, aspect_ratio: str | None = None,
                      count: Count | None = None, size: str | None = None) -> None:
        """Generate images from a prompt."""
        request = ImageRequest(prompt, chat_of(interaction.channel_id, interaction.user), aspect_ratio=aspect_ratio,
                               size=size, count=count, mode="generate",
                               origin=origin_of(interaction.channel_id, interaction.user))
        await run_job(self.ctx, InteractionAnswer(interaction), ready(request))

    @app_commands.command()
    @app_commands.describe(prompt="What to change", image="The image to edit (default: this channel's last image)")
    async def edit(self, interaction: discord.Interaction, prompt: Prompt,
                   image: discord.Attachment | None = None) -> None:
        """Edit an image: the one you attach, or this channel's last image."""
        async def build() -> ImageRequest:
            references: tuple[Reference, ...] = ()
            if image is not None:
                references = (await download(image, self.ctx.config.limits.max_reference_bytes),)
            return ImageRequest(prompt, chat_of(interaction.channel_id, interaction.user), references, mode="edit",
                                origin=origin_of(interaction.channel_id, interaction.user))

        await run_job(self.ctx, InteractionAnswer(interaction), build)

    @app_commands.command()
    @app_commands.describe(aspect_ratio="Default shape for this channel", count="Default number of images",
                           reset="Forget this channel's defaults")
    @app_commands.choices(aspect_ratio=_RATIO_CHOICES)
    async def settings(self, interaction: discord.Interaction, aspect_ratio: str | None = None,
                       count: Count | None = None, reset: bool = False) -> None:
        """Show or change this channel's defaults."""
        chat_key = chat_of(interaction.channel_id, interaction.user).key
        limit = self.ctx.config.image.max_images_per_turn
        if count is not None and count > limit:
            await interaction.response.send_message(f"This bot makes at most {limit} images at a time.",
                                                    ephemeral=True)
            return
        changes: dict[str, object] = {k: v for k, v in (("aspect_ratio", aspect_ratio), ("count", count)) if v}
        if reset:
            changes = {"aspect_ratio": None, "count": None} | changes
        current = await self.ctx.service.state.update_settings(chat_key, **changes)
        await interaction.response.send_message(self._settings_text(current, changed=bool(changes)), ephemeral=True)

    def _settings_text(self, current: ChatSettings, *, changed: bool) -> str:
        image, service = self.ctx.config.image, self.ctx.service
        ratio = current.aspect_ratio or f"{image.default_aspect_ratio} (bot default)"
        return (f"{'Updated' if changed else 'Current'} settings for this channel:\n• aspect ratio: {ratio}\n"
                f"• images per request: {current.count or '1 (bot default)'}\n"
                f"• model: {service.default_provider}/{service.default_model}")

    @app_commands.command()
    @app_commands.describe(count="How many recent images to list")
    async def history(self, interaction: discord.Interaction,
                      count: app_commands.Range[int, 1, 20] = 10) -> None:
        """This channel's recent images, newest first, with their ids."""
        entries = await self.ctx.service.state.history(chat_of(interaction.channel_id, interaction.user).key,
                                                       count)
        if not entries:
            await interaction.response.send_message("No images in this channel yet. Try /imagine.", ephemeral=True)
            return
        lines = [f"`{e.artifact_id}` {_when(e.created_at)} {_short(e.prompt)}" for e in entries]
        await interaction.response.send_message("\n".join(lines)[:2000], ephemeral=True)

    @app_commands.command()
    async def cancel(self, interaction: discord.Interaction) -> None:
        """Stop this channel's running image jobs (images already made are kept)."""
        stopped = await self.ctx.service.cancel(chat_of(interaction.channel_id, interaction.user).key)
        text = f"Stopped {stopped} running job{'s' if stopped != 1 else ''}." if stopped else "Nothing is running here."
        await interaction.response.send_message(text, ephemeral=True)

    @app_commands.command(name="help")
    async def help_(self, interaction: discord.Interaction) -> None:
        """What this bot can do."""
        model = f"{self.ctx.service.default_provider}/{self.ctx.service.default_model}"
        await interaction.response.send_message(
            f"**/imagine** a prompt — new images (options: aspect ratio, count, size).\n"
            f"**/edit** a prompt — edits the image you attach, or this channel's last image.\n"
            f"**Edit image…** (right-click a message → Apps) — edits that message's image.\n"
            f"Reply to an image and mention me with what to change — edits that image.\n"
            f"Buttons under results: 🔁 again, 📐 another shape, ✏️ edit, 📎 the original file.\n"
            f"**/settings** — this channel's defaults; **/history** — recent images; **/cancel** — stop "
            f"this channel's running jobs.\nModel: {model}.",
            ephemeral=True)


def _when(created_at: str) -> str:
    try:
        return discord.utils.format_dt(datetime.fromisoformat(created_at), "R")
    except ValueError:
        return created_at


def _short(prompt: str, limit: int = 80) -> str:
    line = " ".join(prompt.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
