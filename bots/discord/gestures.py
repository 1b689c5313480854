"""Gestures on existing messages: the **Edit image…** message menu (a modal asks for the prompt) and a reply
that mentions the bot (edits the image replied to, or composes with attached images)."""

from __future__ import annotations

import logging
import re

import discord
from discord import app_commands
from discord.ext import commands

from bots.chat import Ask
from bots.discord.context import Context, chat_of
from bots.discord.modals import PromptModal
from bots.discord.surface import InteractionSurface, MessageSurface
from bots.discord.targets import has_image, image_count, message_ask, reply_ask

__all__ = ["MENU_NAME", "EditGestures"]

log = logging.getLogger(__name__)

MENU_NAME = "Edit image…"
_NO_IMAGE = "That message has no image to edit."
_HINT = "Tell me what to change, e.g. reply to an image with “@{name} make the sky orange”."
_GESTURE_TYPES = (discord.MessageType.default, discord.MessageType.reply)


class EditGestures(commands.Cog):
    def __init__(self, bot: commands.Bot, ctx: Context) -> None:
        self.bot = bot
        self.ctx = ctx
        #: Context menus cannot be declared in a cog; the bot adds this one to its tree.
        self.menu = app_commands.ContextMenu(name=MENU_NAME, callback=self.edit_image)

    async def edit_image(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Refuse at once when there is no image; otherwise the modal (the interaction's first response)."""
        if not await has_image(self.ctx, chat_of(interaction.channel_id, interaction.user).key, message):
            await interaction.response.send_message(_NO_IMAGE, ephemeral=True)
            return

        async def on_prompt(_: discord.Interaction, surface: InteractionSurface, prompt: str, number: int) -> None:
            async def build() -> Ask:
                return await message_ask(self.ctx, surface.chat.key, message, prompt, number)

            await self.ctx.flow.run(surface, build)

        await interaction.response.send_modal(PromptModal(on_prompt, images=image_count(message)))

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        me = self.bot.user
        if me is None or message.author.bot or message.type not in _GESTURE_TYPES:
            return
        if not any(user.id == me.id for user in message.mentions):
            return
        surface = MessageSurface(self.ctx.service, message)
        refusal = self.ctx.gate.check(message.author, message.guild.id if message.guild else None)
        if refusal is not None:
            await surface.tell(refusal)
            return
        prompt = re.sub(rf"<@!?{me.id}>", "", message.content).strip()
        if not prompt:
            await surface.tell(_HINT.format(name=me.display_name))
            return

        async def build() -> Ask:
            return await reply_ask(self.ctx, surface.chat.key, message, prompt, me.id)

        await self.ctx.flow.run(surface, build)
