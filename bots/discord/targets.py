"""Which image a Discord gesture means, as core References: attachments (downloaded), a message we posted
(its artifact), someone else's image (downloaded), or the chat's last image."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import PurePath

import discord

from bots.chat import Ask
from bots.chat.wording import file_size
from bots.discord.context import Context
from core.errors import BadImage, InvalidRequest
from core.images import IMAGE_SUFFIXES
from core.models import Reference

__all__ = [
    "download",
    "has_image",
    "image_attachments",
    "image_count",
    "message_ask",
    "message_image",
    "message_key",
    "reply_ask",
    "shown",
]

log = logging.getLogger(__name__)

_CANNOT_SEE = ("I cannot see the image in that message: this bot runs without Discord's Message Content "
               "intent. Use the **Edit image…** menu on the message instead (right-click → Apps).")
_GONE = "The message you replied to is gone. Reply to an image, or attach one."


def image_attachments(message: discord.Message) -> list[discord.Attachment]:
    return [a for a in message.attachments if _is_image(a)]


def _is_image(attachment: discord.Attachment) -> bool:
    ctype = (attachment.content_type or "").partition(";")[0].strip()
    return ctype.startswith("image/") or PurePath(attachment.filename).suffix.lower() in IMAGE_SUFFIXES


async def download(attachment: discord.Attachment, max_bytes: int) -> Reference:
    """A user's attachment as reference bytes, refused before download when it is over the limit."""
    if not _is_image(attachment):
        raise BadImage(f"{attachment.filename} is not an image the bot can use (PNG, JPEG, WebP or GIF).")
    if attachment.size > max_bytes:
        raise BadImage(f"{attachment.filename} is too large: {file_size(attachment.size)}; the limit "
                       f"is {file_size(max_bytes)}.")
    try:
        data = await attachment.read()
    except discord.HTTPException as exc:
        log.warning("download of attachment %s failed: %s", attachment.id, exc)
        raise BadImage(f"{attachment.filename} could not be downloaded from Discord. Try sending it again.",
                       detail=str(exc)) from exc
    return Reference(data=data, name=attachment.filename)


async def has_image(ctx: Context, chat_key: str, message: discord.Message) -> bool:
    if image_attachments(message):
        return True
    return await ctx.service.image_for_message(chat_key, message_key(message.id)) is not None


def message_key(message_id: int | str, number: int = 1) -> str:
    """The chat-state key for the ``number``-th image (1-based) a message shows: the message id for
    the first, ``<id>#<n>`` for the others (one Discord message holds up to 10 images)."""
    return str(message_id) if number == 1 else f"{message_id}#{number}"


def shown(message_id: int, artifact_ids: Sequence[str]) -> list[tuple[str, str]]:
    """``(key, artifact id)`` for every image of a delivered message, in the order shown."""
    return [(message_key(message_id, number), artifact_id) for number, artifact_id in enumerate(artifact_ids, 1)]


def image_count(message: discord.Message) -> int:
    return len(image_attachments(message))


async def message_image(ctx: Context, chat_key: str, message: discord.Message, number: int = 1) -> Reference | None:
    """The ``number``-th image a message shows: our artifact when we posted it (exact, lossless), else that
    image attachment, downloaded; None when it has neither."""
    artifact_id = await ctx.service.image_for_message(chat_key, message_key(message.id, number))
    if artifact_id is not None:
        return Reference(artifact_id=artifact_id)
    attachments = image_attachments(message)
    if not attachments:
        return None
    if not 1 <= number <= len(attachments):
        raise InvalidRequest(f"That message shows {len(attachments)} images: pick a number from 1 to "
                             f"{len(attachments)}.")
    return await download(attachments[number - 1], ctx.config.limits.max_reference_bytes)


async def reply_ask(ctx: Context, chat_key: str, message: discord.Message, prompt: str, bot_id: int) -> Ask:
    """The reply gesture: images attached to the message; else the image it replies to; else (a reply to
    an image-less message) the chat's last image. A mention with neither generates."""
    limit = ctx.config.limits.max_reference_bytes
    attached = [await download(a, limit) for a in image_attachments(message)]
    if attached:
        return Ask(prompt, "auto", tuple(attached), _label(attached))
    if message.reference is None or message.reference.message_id is None:
        return Ask(prompt, "auto")
    replied = await _replied_message(message)
    if replied is None:
        raise InvalidRequest(_GONE)
    target = await message_image(ctx, chat_key, replied)
    if target is not None:
        return Ask(prompt, "edit", (target,), _label([target]))
    if not ctx.message_content and replied.author.id != bot_id:
        raise InvalidRequest(_CANNOT_SEE)
    return Ask(prompt, "edit")


async def _replied_message(message: discord.Message) -> discord.Message | None:
    reference = message.reference
    assert reference is not None and reference.message_id is not None
    if isinstance(reference.resolved, discord.Message):
        return reference.resolved
    if isinstance(reference.resolved, discord.DeletedReferencedMessage):
        return None
    try:
        return await message.channel.fetch_message(reference.message_id)
    except (discord.NotFound, discord.Forbidden):
        return None


async def message_ask(ctx: Context, chat_key: str, target: discord.Message, prompt: str, number: int) -> Ask:
    """**Edit image…**: the chosen image of the message the menu was used on (resolved when submitted)."""
    reference = await message_image(ctx, chat_key, target, number)
    if reference is None:
        raise InvalidRequest("That message has no image to edit.")
    return Ask(prompt, "edit", (reference,), _label([reference]))


def _label(references: Sequence[Reference]) -> str:
    """How the answer names the edited images: our images by id, a user's by file name."""
    return ", ".join(r.artifact_id or r.name or "your image" for r in references)
