"""Sending stored images to a Telegram chat, fitted to its limits: a photo, or a downscaled preview plus
the original as a document when the image breaks the photo limits; 2–10 images as one album with the
caption on the first; the chat's delivery style (photo, document, both). Reports which message shows
which image; whatever fails is reported, never raised."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
)
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardMarkup,
    InputMediaDocument,
    InputMediaPhoto,
    Message,
    ReplyParameters,
)

from bots.chat import Sent
from bots.telegram import captions
from bots.telegram.keyboards import result_keyboard
from bots.telegram.photos import photo_fits, telegram_preview_async
from core.errors import BadImage, PixbotError
from core.models import Artifact, ChatRef

__all__ = ["Destination", "original_filename", "send_results", "send_text"]

log = logging.getLogger(__name__)

_ALBUM_MAX = 10
#: What Telegram answers when it will not take an upload as a photo; the original then goes as a file.
_PHOTO_REFUSED = (TelegramBadRequest, TelegramEntityTooLarge)


@dataclass(frozen=True, slots=True)
class Destination:
    """Where results go: the chat, the message they answer, and the forum topic if any."""

    chat_id: int
    reply_to: int | None = None
    thread_id: int | None = None

    @classmethod
    def from_origin(cls, origin: Mapping[str, Any], chat: ChatRef) -> Destination:
        chat_id = origin.get("chat_id")
        if not isinstance(chat_id, int):
            chat_id = int(chat.chat_id)
        reply_to, thread_id = origin.get("reply_to"), origin.get("thread_id")
        return cls(chat_id, reply_to if isinstance(reply_to, int) else None,
                   thread_id if isinstance(thread_id, int) else None)

    def origin(self) -> dict[str, Any]:
        """JSON-safe, for the job's record: ``from_origin`` rebuilds this destination after a restart."""
        origin: dict[str, Any] = {"chat_id": self.chat_id, "reply_to": self.reply_to}
        if self.thread_id is not None:
            origin["thread_id"] = self.thread_id
        return origin

    def answering(self, message_id: int | None) -> Destination:
        return Destination(self.chat_id, message_id, self.thread_id)

    def kwargs(self) -> dict[str, Any]:
        """Send parameters; a deleted origin message does not stop the delivery."""
        reply = (ReplyParameters(message_id=self.reply_to, allow_sending_without_reply=True)
                 if self.reply_to is not None else None)
        return {"chat_id": self.chat_id, "message_thread_id": self.thread_id, "reply_parameters": reply}


@dataclass(slots=True)
class _Item:
    artifact: Artifact
    original: bytes
    #: What to show as the photo: the original, or a preview when the original breaks a photo limit.
    photo: bytes
    #: The original goes out as a document as well (it breaks a photo limit).
    needs_original: bool

    @property
    def filename(self) -> str:
        return original_filename(self.artifact)


def original_filename(artifact: Artifact) -> str:
    """The name an original goes out under: its id and its stored file's extension."""
    return artifact.id + (Path(artifact.path).suffix or ".png")


async def send_text(bot: Bot, dest: Destination, text: str) -> Message | None:
    """A plain message; failures are logged (the last resort has no further fallback)."""
    try:
        return await bot.send_message(text=captions.fit_text(text), **dest.kwargs())
    except TelegramAPIError as exc:
        log.warning("telegram: could not send a message to %s: %s", dest.chat_id, exc)
        return None


async def send_results(bot: Bot, dest: Destination, artifacts: Sequence[Artifact], originals: Sequence[bytes],
                       caption: str, *, style: str, max_pixels: int) -> Sent:
    """Send ``artifacts`` (with their bytes) in ``style``; which message shows which image, and why any
    did not go out. A chat that blocked the bot or no longer exists is ``gone``."""
    sent = Sent()
    try:
        items = list(await asyncio.gather(*(_prepare(a, data, style, max_pixels)
                                            for a, data in zip(artifacts, originals, strict=True))))
        if style == "document":
            await _send_group(bot, dest, items, caption, sent, as_photos=False)
        else:
            first = await _send_group(bot, dest, items, caption, sent, as_photos=True)
            extra = items if style == "both" else [i for i in items if i.needs_original]
            if extra:
                await _send_group(bot, dest.answering(first), extra, None, sent, as_photos=False)
    except TelegramAPIError as exc:
        log.warning("telegram: delivery to %s failed: %s", dest.chat_id, exc)
        sent.error = f"Telegram said: {exc.message}"
        sent.gone = isinstance(exc, TelegramForbiddenError) or "chat not found" in exc.message.lower()
    except PixbotError as exc:
        log.warning("telegram: delivery to %s failed: %s", dest.chat_id, exc.detail or exc)
        sent.error = exc.public_message
    return sent


async def _prepare(artifact: Artifact, data: bytes, style: str, max_pixels: int) -> _Item:
    if style == "document":
        return _Item(artifact, data, data, needs_original=False)
    try:
        preview = await telegram_preview_async(data, max_pixels=max_pixels)
    except BadImage as exc:  # cannot be made into a photo: Telegram's refusal sends it as a file below
        log.info("telegram: no photo preview for %s: %s", artifact.id, exc.detail or exc)
        preview = None
    return _Item(artifact, data, preview or data, needs_original=_breaks_photo_limits(artifact, data))


def _breaks_photo_limits(artifact: Artifact, data: bytes) -> bool:
    """Whether the original itself cannot be a photo (so it also goes out as a document); an
    artifact without recorded dimensions is judged by its bytes alone."""
    return not photo_fits(artifact.width, artifact.height, len(data))


async def _send_group(bot: Bot, dest: Destination, items: Sequence[_Item], caption: str | None, sent: Sent,
                      *, as_photos: bool) -> int | None:
    """Send items as photos or documents: one message each for a single item, albums of up to 10
    otherwise. Photos Telegram refuses go as documents. Buttons ride on a single result, or follow an
    album in a message of their own. Returns the first message id."""
    keyboard = result_keyboard([i.artifact.id for i in items]) if caption is not None else None
    first: int | None = None
    for start in range(0, len(items), _ALBUM_MAX):
        chunk = items[start:start + _ALBUM_MAX]
        text = caption if start == 0 else None
        if len(chunk) == 1:
            markup = keyboard if len(items) == 1 else None
            messages = [await _send_one(bot, dest, chunk[0], text, markup, as_photo=as_photos)]
        else:
            messages = await _send_album(bot, dest, chunk, text, as_photos=as_photos)
        for message, item in zip(messages, chunk, strict=True):
            sent.shown.append((str(message.message_id), item.artifact.id))
        first = first if first is not None else messages[0].message_id
    if keyboard is not None and len(items) > 1:
        await bot.send_message(text=captions.album_buttons_text(len(items)), reply_markup=keyboard,
                               **dest.answering(first).kwargs())
    return first


async def _send_one(bot: Bot, dest: Destination, item: _Item, caption: str | None,
                    markup: InlineKeyboardMarkup | None, *, as_photo: bool) -> Message:
    if as_photo:
        try:
            return await bot.send_photo(photo=BufferedInputFile(item.photo, filename=_photo_name(item)),
                                        caption=caption, reply_markup=markup, **dest.kwargs())
        except _PHOTO_REFUSED as exc:
            log.info("telegram: %s refused as a photo (%s); sending the file", item.artifact.id, exc.message)
            item.needs_original = False
    return await bot.send_document(document=BufferedInputFile(item.original, filename=item.filename),
                                   caption=caption, reply_markup=markup, **dest.kwargs())


async def _send_album(bot: Bot, dest: Destination, items: Sequence[_Item], caption: str | None,
                      *, as_photos: bool) -> list[Message]:
    if as_photos:
        photos = [InputMediaPhoto(media=BufferedInputFile(i.photo, filename=_photo_name(i)),
                                  caption=caption if n == 0 else None) for n, i in enumerate(items)]
        try:
            return await bot.send_media_group(media=list(photos), **dest.kwargs())
        except _PHOTO_REFUSED as exc:
            log.info("telegram: album refused as photos (%s); sending the files", exc.message)
            for item in items:
                item.needs_original = False
    documents = [InputMediaDocument(media=BufferedInputFile(i.original, filename=i.filename),
                                    caption=caption if n == 0 else None) for n, i in enumerate(items)]
    return await bot.send_media_group(media=list(documents), **dest.kwargs())


def _photo_name(item: _Item) -> str:
    return item.filename if item.photo is item.original else f"{item.artifact.id}.jpg"
