"""Images a Telegram message carries or points at, turned into core References: the largest photo size,
image documents (original bytes), the replied-to image (ours by the message → artifact map, anyone
else's downloaded with ``getFile``)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import Document, Message

from bots.chat.wording import file_size
from bots.telegram.surface import chat_of
from core.errors import BadImage
from core.images import IMAGE_SUFFIXES
from core.models import Reference
from core.service import ImageService

__all__ = [
    "ImageFile",
    "Target",
    "attached_target",
    "download",
    "files_target",
    "image_files",
    "is_image_document",
    "replied_target",
]

_NOT_HANDED_OVER = "Telegram would not hand over that image. Send it again."


@dataclass(frozen=True, slots=True)
class ImageFile:
    """One image on Telegram's servers, not downloaded yet."""

    file_id: str
    size: int | None
    name: str


@dataclass(frozen=True, slots=True)
class Target:
    """The images a request works on, and how the answer names them."""

    references: tuple[Reference, ...]
    label: str


def is_image_document(document: Document) -> bool:
    mime = (document.mime_type or "").lower()
    return mime.startswith("image/") or (document.file_name or "").lower().endswith(IMAGE_SUFFIXES)


def image_files(message: Message) -> list[ImageFile]:
    """The image a message carries: the largest of a photo's sizes, or an image sent as a file."""
    if message.photo:
        largest = message.photo[-1]
        return [ImageFile(largest.file_id, largest.file_size, f"photo_{message.message_id}.jpg")]
    document = message.document
    if document is not None and is_image_document(document):
        return [ImageFile(document.file_id, document.file_size, document.file_name or "image")]
    return []


def _too_big(size: int, limit: int) -> BadImage:
    return BadImage(f"That file is {file_size(size)}, and the bot can only fetch files up to "
                    f"{file_size(limit)} from Telegram. Send a smaller image, or send it as a photo "
                    "instead of a file.")


async def download(bot: Bot, file: ImageFile, limit: int) -> Reference:
    """Fetch one file over HTTP (``getFile`` then the file URL); oversize files are refused up front."""
    if file.size is not None and file.size > limit:
        raise _too_big(file.size, limit)
    try:
        remote = await bot.get_file(file.file_id)
    except TelegramBadRequest as exc:
        if "too big" in exc.message.lower():
            raise _too_big(file.size or limit + 1, limit) from exc
        raise BadImage(_NOT_HANDED_OVER, detail=exc.message) from exc
    if remote.file_size is not None and remote.file_size > limit:
        raise _too_big(remote.file_size, limit)
    if not remote.file_path:
        raise BadImage(_NOT_HANDED_OVER, detail="no file_path")
    buffer = io.BytesIO()
    try:
        await bot.download_file(remote.file_path, destination=buffer)
    except (aiohttp.ClientError, TimeoutError) as exc:  # aiogram streams files with plain aiohttp
        # Not str(exc): it can hold the file URL, which carries the bot token.
        status = getattr(exc, "status", None)
        raise BadImage(_NOT_HANDED_OVER, detail=f"file download failed: {type(exc).__name__} {status or ''}") from None
    data = buffer.getvalue()
    if len(data) > limit:
        raise _too_big(len(data), limit)
    return Reference(data=data, name=file.name)


async def files_target(bot: Bot, files: Sequence[ImageFile], limit: int, label: str) -> Target:
    references = await asyncio.gather(*(download(bot, f, limit) for f in files))
    return Target(tuple(references), label)


async def attached_target(bot: Bot, message: Message, limit: int) -> Target | None:
    files = image_files(message)
    return await files_target(bot, files, limit, "your image") if files else None


async def replied_target(service: ImageService, bot: Bot, message: Message, limit: int) -> Target | None:
    """The image the message replies to: ours through the message → artifact map (which also covers the
    bot's "what should change?" prompts), anyone else's downloaded. None when it replies to no image."""
    reply = message.reply_to_message
    if reply is None:
        return None
    artifact_id = await service.image_for_message(chat_of(message.chat.id, None).key, str(reply.message_id))
    if artifact_id is not None:
        return Target((Reference(artifact_id=artifact_id),), f"the image you replied to ({artifact_id})")
    files = image_files(reply)
    return await files_target(bot, files, limit, "the image you replied to") if files else None
