"""Discord ChatSurfaces, keeping Discord's rules: an interaction's refusal before work is its first,
ephemeral response; work starts with a public defer; results and later failures edit the original
response. Message gestures answer with replies; restart deliveries post in the channel, mentioning the
person. Results are files fitted under the upload limit; a refused upload is tried once more (smaller
after a 413, in the channel when the interaction token has expired, the same after a 5xx)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta
from pathlib import PurePath
from typing import Any, cast

import discord

from bots.chat import ResultText, Sent
from bots.chat.wording import file_size
from bots.discord.buttons import rerun_view
from bots.discord.context import chat_of
from bots.discord.delivery import Outgoing, build_message, clip
from bots.discord.targets import shown
from core.errors import InvalidRequest, PixbotError
from core.images import EXTENSIONS
from core.models import Artifact, ChatRef
from core.service import ImageService, Progress

__all__ = ["ACK_DEADLINE_S", "DISCORD_FAILED", "ChannelSurface", "DiscordSurface", "InteractionSurface",
           "MessageSurface", "channel_surface"]

log = logging.getLogger(__name__)

#: Discord drops an interaction that is not acknowledged within 3 s; defer before then whatever happens.
ACK_DEADLINE_S = 2.2
_MIB = 1024 * 1024
_NO_MENTIONS = discord.AllowedMentions.none()
#: Discord's interaction tokens last 15 minutes; leave a margin for the edit itself.
_TOKEN_LIFE = timedelta(minutes=14)
#: Discord's name for an interaction's first response, where a message id goes in the webhook URL
#: (discord.py formats the id into the path, so the name passes through).
_ORIGINAL = cast(int, "@original")
DISCORD_FAILED = "Discord did not accept the bot's answer. Please try again."


class DiscordSurface:
    """What the three ways of answering share: the chat, the origin, result messages and their retry."""

    def __init__(self, service: ImageService, chat: ChatRef, origin: dict[str, Any]) -> None:
        self.service = service
        self._chat = chat
        self._origin = origin

    @property
    def chat(self) -> ChatRef:
        return self._chat

    @property
    def origin(self) -> dict[str, Any]:
        return dict(self._origin)

    @property
    def filesize_limit(self) -> int:
        return discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES

    def busy(self) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def progress(self, update: Progress) -> None:
        return None

    async def tell(self, text: str) -> None:
        raise NotImplementedError

    async def _post(self, out: Outgoing) -> discord.Message:
        raise NotImplementedError

    def fallback(self) -> DiscordSurface | None:
        """Where to post when this surface's own route is gone (an expired interaction token)."""
        return None

    async def send_images(self, artifacts: Sequence[Artifact], text: ResultText) -> Sent:
        """Retrying later cannot help when not one image fits, or the channel is gone or closed to the
        bot (403, 404): such a result is ``gone`` (given up). Other refusals leave it for the next start."""
        composed: list[Outgoing] = []

        async def compose(limit: int) -> Outgoing:
            composed.append(await build_message(self.service, artifacts, limit, text))
            return composed[-1]

        try:
            message = await self._post(await compose(self.filesize_limit))
        except PixbotError as exc:  # not one image fits the upload limit
            return Sent(error=exc.public_message, gone=True)
        except discord.HTTPException as exc:
            log.warning("Discord refused the result message: %s", exc)
            retried = await self._send_again(compose, exc)
            if retried is None:
                return Sent(error=_what_discord_said(exc), gone=exc.status in (403, 404))
            message = retried
        return Sent(shown=shown(message.id, composed[-1].artifact_ids))

    async def _send_again(self, compose: Callable[[int], Awaitable[Outgoing]],
                          refused: discord.HTTPException) -> discord.Message | None:
        """One more try: smaller files after a 413 (the limit was lower than we were told), the channel
        itself when the interaction token has expired (401/404), the same again after a 5xx."""
        limit = self.filesize_limit
        target: DiscordSurface | None = self
        if refused.status == 413:
            limit = max(_MIB, limit // 2)
        elif refused.status in (401, 404):
            target = self.fallback()
        elif refused.status < 500:
            target = None
        if target is None:
            return None
        try:
            message = await target._post(await compose(limit))
        except (PixbotError, discord.HTTPException) as exc:
            log.warning("second delivery attempt failed too: %s", exc)
            return None
        log.info("delivered on the second attempt (%s)", refused.status)
        return message

    async def send_original(self, artifact: Artifact, data: bytes) -> str | None:
        raise InvalidRequest("The original can be sent from the 📎 button under the image.")

    async def forget_progress(self) -> None:
        return None

    async def offer_again(self, text: str, job_id: str) -> None:
        try:
            await self._post(Outgoing(clip(text), view=rerun_view(job_id)))
        except discord.HTTPException as exc:
            log.warning("could not tell about job %s: %s", job_id, exc)

    def explain(self, error: Exception) -> str | None:
        return DISCORD_FAILED if isinstance(error, discord.HTTPException) else None


def _what_discord_said(exc: discord.HTTPException) -> str:
    return f"Discord said: {exc.status} {exc.text}".strip()[:200]


class InteractionSurface(DiscordSurface):
    """Answers one interaction (slash command, context-menu modal, button)."""

    def __init__(self, service: ImageService, interaction: discord.Interaction) -> None:
        origin = _origin(interaction.channel_id, interaction.user)
        # The interaction's own webhook: for 15 minutes a later run can still answer "thinking…" with it.
        origin |= {"application_id": str(interaction.application_id), "token": interaction.token,
                   "asked_at": discord.utils.snowflake_time(interaction.id).isoformat()}
        super().__init__(service, chat_of(interaction.channel_id, interaction.user), origin)
        self.interaction = interaction
        self._lock = asyncio.Lock()  # `is_done()` flips only after the HTTP call: serialise the first response

    @property
    def filesize_limit(self) -> int:
        return self.interaction.filesize_limit

    @asynccontextmanager
    async def busy(self) -> AsyncIterator[None]:
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
        await self._defer()

    async def progress(self, update: Progress) -> None:
        await self._defer()  # the service accepted the job: from now on answers edit the public response

    async def _defer(self) -> None:
        async with self._lock:
            if self.interaction.response.is_done():
                return
            try:
                await self.interaction.response.defer(thinking=True)
            except discord.HTTPException as exc:
                log.warning("could not defer interaction %s: %s", self.interaction.id, exc)

    async def tell(self, text: str) -> None:
        async with self._lock:
            try:
                if not self.interaction.response.is_done():
                    await self.interaction.response.send_message(clip(text), ephemeral=True)
                else:
                    await self.interaction.edit_original_response(
                        content=clip(text), embeds=[], attachments=[], view=None, allowed_mentions=_NO_MENTIONS)
            except discord.HTTPException as exc:
                log.warning("could not answer interaction %s: %s", self.interaction.id, exc)

    async def _post(self, out: Outgoing) -> discord.Message:
        await self._defer()
        return await self.interaction.edit_original_response(
            content=out.content, embeds=out.embeds, attachments=out.files, view=out.view,
            allowed_mentions=_NO_MENTIONS)

    def fallback(self) -> DiscordSurface | None:
        """The interaction's channel, mentioning the person: a job can outlive the 15-minute token."""
        channel = self.interaction.channel
        if not isinstance(channel, discord.abc.Messageable) or self.interaction.channel_id is None:
            return None
        return ChannelSurface(self.service, channel, self.chat, self._origin, self.filesize_limit)

    async def send_original(self, artifact: Artifact, data: bytes) -> str | None:
        """To the person who clicked, ephemeral; not mapped (nobody can reply to an ephemeral message)."""
        await self.interaction.response.defer(ephemeral=True, thinking=True)
        limit = self.filesize_limit
        if artifact.bytes > limit:
            await self.interaction.edit_original_response(
                content=f"The original is {file_size(artifact.bytes)}, over this server's "
                        f"{file_size(limit)} "
                        "upload limit, so only the fitted copy can be shown here.")
            return None
        name = f"{artifact.id}{EXTENSIONS.get(artifact.mime, PurePath(artifact.path).suffix)}"
        await self.interaction.edit_original_response(
            content=f"Original of `{artifact.id}`: {artifact.width}×{artifact.height}, "
                    f"{file_size(artifact.bytes)}.",
            attachments=[discord.File(io.BytesIO(data), filename=name)])
        return None


class MessageSurface(DiscordSurface):
    """Answers a message gesture (a reply that mentions the bot) with replies to that message."""

    def __init__(self, service: ImageService, message: discord.Message) -> None:
        super().__init__(service, chat_of(message.channel.id, message.author),
                         _origin(message.channel.id, message.author, reply_to=message.id))
        self.message = message

    @property
    def filesize_limit(self) -> int:
        guild = self.message.guild
        return guild.filesize_limit if guild is not None else discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES

    def busy(self) -> AbstractAsyncContextManager[None]:
        return self.message.channel.typing()

    async def tell(self, text: str) -> None:
        try:
            await self.message.reply(clip(text), mention_author=False, allowed_mentions=_NO_MENTIONS)
        except discord.HTTPException as exc:
            log.warning("could not reply to message %s: %s", self.message.id, exc)

    async def _post(self, out: Outgoing) -> discord.Message:
        return await self.message.reply(
            out.content, embeds=out.embeds, files=out.files, mention_author=False, allowed_mentions=_NO_MENTIONS,
            **_optional(view=out.view))


class ChannelSurface(DiscordSurface):
    """Posts in a channel, mentioning the person (results that finished while the bot was away, or after
    the interaction token expired). After a restart it also answers the asker's unanswered "thinking…"
    while that interaction's token lives."""

    def __init__(self, service: ImageService, channel: discord.abc.Messageable, chat: ChatRef,
                 origin: dict[str, Any], filesize_limit: int, client: discord.Client | None = None,
                 about: str | None = None) -> None:
        super().__init__(service, chat, origin)
        self.channel = channel
        self._limit = filesize_limit
        self._client = client
        #: The prompt this answers: a plain text in a busy channel says which request it is about.
        self._about = about

    def _original(self) -> discord.Webhook | None:
        """The recorded interaction's webhook, while its token is valid (15 minutes, less a margin)."""
        token, app_id, asked = (self._origin.get(k) for k in ("token", "application_id", "asked_at"))
        if self._client is None or not (token and app_id and asked):
            return None
        try:
            age = discord.utils.utcnow() - datetime.fromisoformat(str(asked))
        except ValueError:
            return None
        if age > _TOKEN_LIFE:
            return None
        return discord.Webhook.partial(int(app_id), str(token), client=self._client)

    async def _edit_original(self, out: Outgoing) -> bool:
        webhook = self._original()
        if webhook is None:
            return False
        try:
            await webhook.edit_message(_ORIGINAL, content=out.content, embeds=out.embeds, attachments=out.files,
                                       view=out.view)
        except discord.HTTPException as exc:
            log.info("could not edit the interaction's response after a restart: %s", exc)
            return False
        return True

    async def forget_progress(self) -> None:
        await self._edit_original(Outgoing("⏱ The bot restarted while this was running; the result is posted "
                                           "below."))

    async def offer_again(self, text: str, job_id: str) -> None:
        if not await self._edit_original(Outgoing(clip(text), view=rerun_view(job_id))):
            await super().offer_again(text, job_id)

    @property
    def filesize_limit(self) -> int:
        return self._limit

    async def tell(self, text: str) -> None:
        about = f"“{clip(self._about, 100)}”: " if self._about else ""
        try:
            await self._post(Outgoing(clip(about + text)))
        except discord.HTTPException as exc:
            log.warning("could not post to channel: %s", exc)

    async def _post(self, out: Outgoing) -> discord.Message:
        user_id = self._origin.get("user_id") or self._chat.user_id
        mention = f"<@{user_id}> " if user_id else ""
        reference: discord.MessageReference | None = None
        reply_to, channel_id = self._origin.get("reply_to"), self._origin.get("channel_id") or self._chat.chat_id
        if reply_to is not None:
            reference = discord.MessageReference(message_id=int(reply_to), channel_id=int(channel_id),
                                                 fail_if_not_exists=False)
        return await self.channel.send(
            clip(mention + out.content), embeds=out.embeds, files=out.files,
            **_optional(view=out.view, reference=reference),
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True))


def _origin(channel_id: int | None, user: discord.abc.User, reply_to: int | None = None) -> dict[str, Any]:
    """What a later process needs to deliver a job: where, to whom, and which message to answer."""
    origin: dict[str, Any] = {"channel_id": str(channel_id), "user_id": str(user.id)}
    if reply_to is not None:
        origin["reply_to"] = str(reply_to)
    return origin


def _optional(**values: object) -> dict[str, Any]:
    """Keyword arguments without the unset ones (discord.py's send overloads want them left out)."""
    return {key: value for key, value in values.items() if value is not None}




async def channel_surface(client: discord.Client, service: ImageService, chat: ChatRef,
                          origin: dict[str, Any], about: str | None = None) -> ChannelSurface | None:
    """The channel a recorded job asked in, or None when the bot cannot reach it any more."""
    channel_id = int(origin.get("channel_id") or chat.chat_id)
    try:
        channel = client.get_channel(channel_id) or await client.fetch_channel(channel_id)
    except discord.HTTPException as exc:
        log.warning("channel %s unavailable: %s", channel_id, exc)
        return None
    if not isinstance(channel, discord.abc.Messageable):
        return None
    guild = getattr(channel, "guild", None)
    limit = guild.filesize_limit if isinstance(guild, discord.Guild) else discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
    return ChannelSurface(service, channel, chat, origin, limit, client, about)

