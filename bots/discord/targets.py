"""Which image a Discord gesture means, as core References: attachments (downloaded), a message we posted
(its artifact), someone else's image (downloaded), or the chat's last image; and "Again" requests."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import PurePath

import discord

from bots.discord.context import Context, chat_of, context_of, origin_of
from core.artifacts import is_artifact_id
from core.errors import BadImage, InvalidRequest
from core.models import ImageRequest, Reference

__all__ = [
    "EditBuild",
    "again_request",
    "download",
    "edit_of_artifact",
    "edit_of_message",
    "has_image",
    "image_attachments",
    "image_count",
    "message_image",
    "message_key",
    "reply_request",
    "shown",
]

log = logging.getLogger(__name__)

#: Turns a modal's prompt and chosen image number (1-based) into the edit request.
EditBuild = Callable[[discord.Interaction, str, int], Awaitable[ImageRequest]]

_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif"})
_CANNOT_SEE = ("I cannot see the image in that message: this bot runs without Discord's Message Content "
               "intent. Use the **Edit image…** menu on the message instead (right-click → Apps).")
_GONE = "The message you replied to is gone. Reply to an image, or attach one."


def image_attachments(message: discord.Message) -> list[discord.Attachment]:
    return [a for a in message.attachments if _is_image(a)]


def _is_image(attachment: discord.Attachment) -> bool:
    ctype = (attachment.content_type or "").partition(";")[0].strip()
    return ctype.startswith("image/") or PurePath(attachment.filename).suffix.lower() in _IMAGE_SUFFIXES


async def download(attachment: discord.Attachment, max_bytes: int) -> Reference:
    """A user's attachment as reference bytes, refused before download when it is over the limit."""
    if not _is_image(attachment):
        raise BadImage(f"{attachment.filename} is not an image the bot can use (PNG, JPEG, WebP or GIF).")
    if attachment.size > max_bytes:
        raise BadImage(f"{attachment.filename} is too large: {attachment.size / 1_048_576:.1f} MB; the limit is "
                       f"{max_bytes / 1_048_576:.0f} MB.")
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
    return await ctx.service.state.artifact_for_message(chat_key, str(message.id)) is not None


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
    artifact_id = await ctx.service.state.artifact_for_message(chat_key, message_key(message.id, number))
    if artifact_id is not None:
        return Reference(artifact_id=artifact_id)
    attachments = image_attachments(message)
    if not attachments:
        return None
    if not 1 <= number <= len(attachments):
        raise InvalidRequest(f"That message shows {len(attachments)} images: pick a number from 1 to "
                             f"{len(attachments)}.")
    return await download(attachments[number - 1], ctx.config.limits.max_reference_bytes)


async def reply_request(ctx: Context, message: discord.Message, prompt: str, bot_id: int) -> ImageRequest:
    """The reply gesture: images attached to the message; else the image it replies to; else (a reply to
    an image-less message) the chat's last image. A mention with neither generates."""
    chat = chat_of(message.channel.id, message.author)
    origin = origin_of(message.channel.id, message.author, reply_to=message.id)
    limit = ctx.config.limits.max_reference_bytes
    attached = [await download(a, limit) for a in image_attachments(message)]
    if attached:
        return ImageRequest(prompt, chat, tuple(attached), mode="auto", origin=origin)
    if message.reference is None or message.reference.message_id is None:
        return ImageRequest(prompt, chat, mode="auto", origin=origin)
    replied = await _replied_message(message)
    if replied is None:
        raise InvalidRequest(_GONE)
    target = await message_image(ctx, chat.key, replied)
    if target is not None:
        return ImageRequest(prompt, chat, (target,), mode="edit", origin=origin)
    if not ctx.message_content and replied.author.id != bot_id:
        raise InvalidRequest(_CANNOT_SEE)
    return ImageRequest(prompt, chat, mode="edit", origin=origin)


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


async def again_request(ctx: Context, artifact_id: str, interaction: discord.Interaction,
                        ratio: str | None = None) -> ImageRequest:
    """The request that made `artifact_id`, again (optionally in another aspect ratio), as the clicker's."""
    artifact = await ctx.service.store.get(artifact_id)
    if artifact is None:
        raise InvalidRequest("That image is no longer stored, so its request cannot be repeated.")
    record = await ctx.service.jobs.get(artifact.job_id) if artifact.job_id else None
    asked = record.request if record is not None else {}
    sources = [_source_reference(s) for s in artifact.source_images if not s.startswith("upload:")]
    if len(sources) < len(artifact.source_images) and not sources:
        raise InvalidRequest("This image was made from an upload that is not kept. Use ✏️ Edit on it instead.")
    count = asked.get("count")
    return ImageRequest(
        artifact.prompt, chat_of(interaction.channel_id, interaction.user), tuple(sources),
        aspect_ratio=ratio or asked.get("aspect_ratio"), size=asked.get("size"),
        count=count if isinstance(count, int) else None,
        mode="edit" if sources else "generate", origin=origin_of(interaction.channel_id, interaction.user))


def _source_reference(source: str) -> Reference:
    """A stored source image by its artifact id (so the answer can name it), else by its path."""
    stem = PurePath(source).stem
    return Reference(artifact_id=stem) if is_artifact_id(stem) else Reference(path=source)


def edit_of_artifact(artifact_id: str) -> EditBuild:
    """For ✏️ Edit: the prompt from the modal edits exactly that stored image."""
    async def build(interaction: discord.Interaction, prompt: str, number: int) -> ImageRequest:
        return ImageRequest(prompt, chat_of(interaction.channel_id, interaction.user),
                            (Reference(artifact_id=artifact_id),), mode="edit",
                            origin=origin_of(interaction.channel_id, interaction.user))

    return build


def edit_of_message(target: discord.Message) -> EditBuild:
    """For **Edit image…**: the chosen image of the message the menu was used on (resolved when submitted)."""
    async def build(interaction: discord.Interaction, prompt: str, number: int) -> ImageRequest:
        ctx = context_of(interaction.client)
        chat = chat_of(interaction.channel_id, interaction.user)
        reference = await message_image(ctx, chat.key, target, number)
        if reference is None:
            raise InvalidRequest("That message has no image to edit.")
        return ImageRequest(prompt, chat, (reference,), mode="edit",
                            origin=origin_of(interaction.channel_id, interaction.user))

    return build
