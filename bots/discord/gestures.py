"""Gestures on existing messages: the **Edit image…** message menu (a modal asks for the prompt) and a reply
that mentions the bot (edits the image replied to, or composes with attached images)."""

from __future__ import annotations

import logging
import re

import discord
from discord import app_commands
from discord.ext import commands

from bots.discord.answers import MessageAnswer
from bots.discord.context import Context, chat_of
from bots.discord.flow import run_job
from bots.discord.modals import PromptModal
from bots.discord.targets import edit_of_message, has_image, image_count, reply_request
from core.models import ImageRequest

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
        await interaction.response.send_modal(PromptModal(edit_of_message(message), images=image_count(message)))

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        me = self.bot.user
        if me is None or message.author.bot or message.type not in _GESTURE_TYPES:
            return
        if not any(user.id == me.id for user in message.mentions):
            return
        answer = MessageAnswer(message)
        refusal = self.ctx.gate.check(message.author, message.guild.id if message.guild else None)
        if refusal is not None:
            await answer.refuse(refusal)
            return
        prompt = re.sub(rf"<@!?{me.id}>", "", message.content).strip()
        if not prompt:
            await answer.refuse(_HINT.format(name=me.display_name))
            return

        async def build() -> ImageRequest:
            return await reply_request(self.ctx, message, prompt, me.id)

        await run_job(self.ctx, answer, build)
