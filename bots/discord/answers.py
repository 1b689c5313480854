"""Where a gesture's answer goes, keeping Discord's rules: an interaction's refusal before work is its first,
ephemeral response; work starts with a public defer; results and later failures edit the original response.
Message gestures answer with replies, restart deliveries with a channel message that mentions the person."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import discord

__all__ = ["ACK_DEADLINE_S", "Answer", "ChannelAnswer", "InteractionAnswer", "MessageAnswer", "Outgoing"]

log = logging.getLogger(__name__)

#: Discord drops an interaction that is not acknowledged within 3 s; defer before then whatever happens.
ACK_DEADLINE_S = 2.2
_INTERRUPTED = ("The bot restarted before this finished. Images that were already made are posted in "
                "this channel when it is back.")
_NO_MENTIONS = discord.AllowedMentions.none()


@dataclass
class Outgoing:
    """One message's worth of result: text, an embed per image, the files, the buttons."""

    content: str
    embeds: list[discord.Embed] = field(default_factory=list)
    files: list[discord.File] = field(default_factory=list)
    view: discord.ui.View | None = None


class Answer(Protocol):
    @property
    def filesize_limit(self) -> int: ...

    def working(self) -> AbstractAsyncContextManager[None]:
        """Around resolving and submitting: keeps the platform's "busy" sign up."""
        ...

    async def started(self) -> None:
        """The service accepted the job: the point after which refusals are no longer first responses."""

    async def refuse(self, text: str) -> None: ...

    async def send(self, out: Outgoing) -> discord.Message: ...

    async def interrupted(self) -> None: ...

    def fallback(self) -> Answer | None:
        """Where to post when this answer's own route is gone (an expired interaction token)."""
        ...


class InteractionAnswer:
    """Answers one interaction (slash command, context-menu modal, button)."""

    def __init__(self, interaction: discord.Interaction) -> None:
        self.interaction = interaction
        self._lock = asyncio.Lock()  # `is_done()` flips only after the HTTP call: serialise the first response
        self._finished = False

    @property
    def filesize_limit(self) -> int:
        return self.interaction.filesize_limit

    @asynccontextmanager
    async def working(self) -> AsyncIterator[None]:
        ack = asyncio.create_task(self._ack_before_deadline())
        try:
            yield
        finally:
            ack.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ack

    async def _ack_before_deadline(self) -> None:
        """Slow downloads must not lose the interaction: defer publicly when the deadline nears."""
        await asyncio.sleep(ACK_DEADLINE_S)
        await self.started()

    async def started(self) -> None:
        async with self._lock:
            if self.interaction.response.is_done():
                return
            try:
                await self.interaction.response.defer(thinking=True)
            except discord.HTTPException as exc:
                log.warning("could not defer interaction %s: %s", self.interaction.id, exc)

    async def refuse(self, text: str) -> None:
        self._finished = True
        async with self._lock:
            try:
                if not self.interaction.response.is_done():
                    await self.interaction.response.send_message(text, ephemeral=True)
                else:
                    await self.interaction.edit_original_response(
                        content=text, embeds=[], attachments=[], view=None, allowed_mentions=_NO_MENTIONS)
            except discord.HTTPException as exc:
                log.warning("could not answer interaction %s: %s", self.interaction.id, exc)

    async def send(self, out: Outgoing) -> discord.Message:
        await self.started()
        message = await self.interaction.edit_original_response(
            content=out.content, embeds=out.embeds, attachments=out.files, view=out.view,
            allowed_mentions=_NO_MENTIONS)
        self._finished = True
        return message

    async def interrupted(self) -> None:
        if not self._finished:
            await self.refuse(_INTERRUPTED)

    def fallback(self) -> Answer | None:
        """The interaction's channel, mentioning the person: a job can outlive the 15-minute token."""
        channel = self.interaction.channel
        if not isinstance(channel, discord.abc.Messageable) or self.interaction.channel_id is None:
            return None
        return ChannelAnswer(channel, self.interaction.channel_id, str(self.interaction.user.id), None,
                             self.filesize_limit)


class MessageAnswer:
    """Answers a message gesture (a reply that mentions the bot) with replies to that message."""

    def __init__(self, message: discord.Message) -> None:
        self.message = message
        self._finished = False

    @property
    def filesize_limit(self) -> int:
        guild = self.message.guild
        return guild.filesize_limit if guild is not None else discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES

    def working(self) -> AbstractAsyncContextManager[None]:
        return self.message.channel.typing()

    async def started(self) -> None:
        return None

    async def refuse(self, text: str) -> None:
        self._finished = True
        try:
            await self.message.reply(text, mention_author=False, allowed_mentions=_NO_MENTIONS)
        except discord.HTTPException as exc:
            log.warning("could not reply to message %s: %s", self.message.id, exc)

    async def send(self, out: Outgoing) -> discord.Message:
        message = await self.message.reply(
            out.content, embeds=out.embeds, files=out.files, mention_author=False, allowed_mentions=_NO_MENTIONS,
            **_optional(view=out.view))
        self._finished = True
        return message

    async def interrupted(self) -> None:
        if not self._finished:
            await self.refuse(_INTERRUPTED)

    def fallback(self) -> Answer | None:
        return None


def _optional(**values: object) -> dict[str, Any]:
    """Keyword arguments without the unset ones (discord.py's send overloads want them left out)."""
    return {key: value for key, value in values.items() if value is not None}


class ChannelAnswer:
    """Delivers to a channel, mentioning the person (results that finished while the bot was away)."""

    def __init__(self, channel: discord.abc.Messageable, channel_id: int, user_id: str | None,
                 reply_to: str | None, filesize_limit: int) -> None:
        self.channel = channel
        self.channel_id = channel_id
        self.user_id = user_id
        self.reply_to = reply_to
        self._limit = filesize_limit

    @property
    def filesize_limit(self) -> int:
        return self._limit

    def working(self) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def started(self) -> None:
        return None

    async def refuse(self, text: str) -> None:
        try:
            await self.send(Outgoing(text))
        except discord.HTTPException as exc:
            log.warning("could not post to channel: %s", exc)

    async def send(self, out: Outgoing) -> discord.Message:
        mention = f"<@{self.user_id}> " if self.user_id else ""
        reference: discord.MessageReference | None = None
        if self.reply_to is not None:
            reference = discord.MessageReference(message_id=int(self.reply_to), channel_id=self.channel_id,
                                                 fail_if_not_exists=False)
        return await self.channel.send(
            mention + out.content, embeds=out.embeds, files=out.files, **_optional(view=out.view, reference=reference),
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True))

    async def interrupted(self) -> None:
        return None

    def fallback(self) -> Answer | None:
        return None
