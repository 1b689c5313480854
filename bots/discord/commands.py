"""Slash commands: /imagine, /edit (image gestures through the chat flow), /settings, /last, /history,
/cancel, /help (ephemeral answers, the same words as every chat front-end)."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bots.chat import Ask
from bots.discord.context import Context, chat_of
from bots.discord.surface import InteractionSurface
from bots.discord.targets import download
from core.config import MAX_IMAGES_PER_REQUEST
from core.errors import PixbotError
from core.models import ASPECT_RATIOS, Reference

__all__ = ["SIZES", "ImageCommands"]

#: The size choices offered; providers map them to what they support and say what they changed.
SIZES = ("1K", "2K", "4K")
_RATIO_CHOICES = [app_commands.Choice(name=r, value=r) for r in ASPECT_RATIOS]
_SIZE_CHOICES = [app_commands.Choice(name=s, value=s) for s in SIZES]
#: Discord needs the bounds when commands are declared; the service refuses what the config does not allow.
Prompt = app_commands.Range[str, 1, 4000]
Count = app_commands.Range[int, 1, MAX_IMAGES_PER_REQUEST]
_HISTORY_TEXT_MAX = 2000


class ImageCommands(commands.Cog):
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _surface(self, interaction: discord.Interaction) -> InteractionSurface:
        return InteractionSurface(self.ctx.service, interaction)

    @app_commands.command()
    @app_commands.describe(prompt="What to draw", aspect_ratio="Shape of the image (default: this channel's)",
                           count="How many images (default: this channel's)", size="Resolution")
    @app_commands.choices(aspect_ratio=_RATIO_CHOICES, size=_SIZE_CHOICES)
    async def imagine(self, interaction: discord.Interaction, prompt: Prompt, aspect_ratio: str | None = None,
                      count: Count | None = None, size: str | None = None) -> None:
        """Generate images from a prompt."""
        async def build() -> Ask:
            return Ask(prompt, "generate", aspect_ratio=aspect_ratio, size=size, count=count)

        await self.ctx.flow.run(self._surface(interaction), build)

    @app_commands.command()
    @app_commands.describe(prompt="What to change; start with an image id (img_…) to edit that one",
                           image="The image to edit (default: this channel's last image)")
    async def edit(self, interaction: discord.Interaction, prompt: Prompt,
                   image: discord.Attachment | None = None) -> None:
        """Edit an image: the one you attach, the one you name by id, or this channel's last image."""
        surface = self._surface(interaction)

        async def build() -> Ask:
            named, text = await self.ctx.flow.typed_target(surface.chat.key, prompt)
            if named is not None:
                return Ask(text, "edit", (named,), named.artifact_id)
            references: tuple[Reference, ...] = ()
            if image is not None:
                references = (await download(image, self.ctx.config.limits.max_reference_bytes),)
            return Ask(prompt, "edit", references, image.filename if image is not None else None)

        await self.ctx.flow.run(surface, build)

    @app_commands.command()
    @app_commands.describe(aspect_ratio="Default shape for this channel", count="Default number of images",
                           reset="Forget this channel's defaults")
    @app_commands.choices(aspect_ratio=_RATIO_CHOICES)
    async def settings(self, interaction: discord.Interaction, aspect_ratio: str | None = None,
                       count: Count | None = None, reset: bool = False) -> None:
        """Show or change this channel's defaults."""
        surface = self._surface(interaction)
        chat_key, flow = surface.chat.key, self.ctx.flow
        try:
            if reset:
                await flow.change_setting(chat_key, "reset")
            if aspect_ratio:
                await flow.change_setting(chat_key, "ar", aspect_ratio)
            if count:
                await flow.change_setting(chat_key, "n", str(count))
        except PixbotError as exc:
            await surface.tell(exc.public_message)
            return
        note = flow.ratio_note(aspect_ratio)
        await surface.tell(await flow.settings_text(chat_key) + (f"\n{note}" if note else ""))

    @app_commands.command()
    async def last(self, interaction: discord.Interaction) -> None:
        """Show this channel's last image again, with its buttons."""
        await self.ctx.flow.show(self._surface(interaction))

    @app_commands.command()
    @app_commands.describe(image_id="An image id from /history (img_…)")
    async def show(self, interaction: discord.Interaction, image_id: app_commands.Range[str, 1, 40]) -> None:
        """Show one of this channel's images again by its id, with its buttons."""
        await self.ctx.flow.show(self._surface(interaction), image_id.strip())

    @app_commands.command()
    @app_commands.describe(count="How many recent images to list")
    async def history(self, interaction: discord.Interaction,
                      count: app_commands.Range[int, 1, 20] = 10) -> None:
        """This channel's recent images, newest first, with their ids."""
        surface = self._surface(interaction)
        await surface.tell(await self.ctx.flow.history(surface.chat.key, count, _HISTORY_TEXT_MAX))

    @app_commands.command()
    async def cancel(self, interaction: discord.Interaction) -> None:
        """Stop your running image jobs in this channel (images already made are kept)."""
        await interaction.response.send_message(
            await self.ctx.flow.cancel(chat_of(interaction.channel_id, interaction.user)), ephemeral=True)

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
            f"**/settings** — this channel's defaults; **/last**, **/history** — recent images; **/show** id — "
            f"that image again; **/edit** `img_… change` — edit it; **/cancel** — stop this channel's running "
            f"jobs.\nModel: {model}.",
            ephemeral=True)
