"""Gestures that make images: ``/imagine`` (``/image``, ``/draw``), ``/edit``, replies to images, photos
and image files with a caption, albums, and plain text to the bot. Handlers translate only: Telegram
message → target images → Ask, run by the chat flow under this message's TelegramSurface."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bots.chat import Ask
from bots.chat.flow import Build
from bots.telegram.access import addresses_bot
from bots.telegram.context import TelegramContext
from bots.telegram.inputs import Target, attached_target, files_target, image_files, replied_target
from bots.telegram.parsing import split_command, strip_mention
from bots.telegram.requests import from_text
from bots.telegram.surface import TelegramSurface, chat_of
from core.errors import BadImage
from core.service import ImageService

__all__ = ["IMAGINE_COMMANDS", "make_router"]

IMAGINE_COMMANDS = ("imagine", "image", "draw")
_EDIT_USAGE = ("Usage: /edit make the sky purple. Reply to an image, send one with the command, name one "
               "(/edit img_… make it blue), or it edits this chat's last image.")
_CAPTION_USAGE = "Say in the caption what to do with the image, e.g. \"make it a watercolour\"."
_NO_ALBUM_CAPTION = ("Add a caption to one of the images saying what to do with them (e.g. \"put the cat on "
                     "the sofa\"), or reply to one of them with the instruction.")
_NO_CAPTION = ("Add a caption saying what to do with this image (e.g. \"make it a watercolour\"), or reply "
               "to it with the instruction.")


def make_router() -> Router:
    router = Router(name="telegram.imagine")
    router.message.register(album, F.media_group_id)
    router.message.register(imagine, Command(*IMAGINE_COMMANDS))
    router.message.register(edit, Command("edit"))
    router.message.register(captioned_image, _has_image, F.caption)
    router.message.register(uncaptioned_image, _has_image)
    router.message.register(other_file, F.document)
    router.message.register(unknown_command, F.text.startswith("/"))
    router.message.register(text, F.text)
    return router


def _has_image(message: Message) -> bool:
    return bool(image_files(message))


async def _run(message: Message, bot: Bot, service: ImageService, tg: TelegramContext, build: Build) -> None:
    await tg.flow.run(TelegramSurface.answering(bot, service, tg, message), build)


async def imagine(message: Message, command: CommandObject, bot: Bot, service: ImageService,
                  tg: TelegramContext) -> None:
    """``/imagine a fox --ar 16:9 --n 2``; an image sent with the command is used as a reference."""
    async def build() -> Ask:
        target = await attached_target(bot, message, tg.download_limit)
        return from_text(command.args or "", mode="auto" if target else "generate", target=target)

    await _run(message, bot, service, tg, build)


async def edit(message: Message, command: CommandObject, bot: Bot, service: ImageService,
               tg: TelegramContext) -> None:
    """``/edit <change>``: the attached image, else the replied-to image, else the chat's last image."""
    async def build() -> Ask:
        named, text = await tg.flow.typed_target(chat_of(message.chat.id, None).key, command.args or "")
        target = (Target((named,), named.artifact_id or "") if named is not None
                  else await attached_target(bot, message, tg.download_limit)
                  or await replied_target(service, bot, message, tg.download_limit))
        return from_text(text, mode="edit", target=target, usage=_EDIT_USAGE)

    await _run(message, bot, service, tg, build)


async def captioned_image(message: Message, bot: Bot, service: ImageService, tg: TelegramContext) -> None:
    """A photo or image file with a caption: edit (or compose with) that image."""
    async def build() -> Ask:
        target = await attached_target(bot, message, tg.download_limit)
        caption = strip_mention(message.caption or "", tg.username)
        return from_text(caption, mode="auto", target=target, usage=_CAPTION_USAGE)

    await _run(message, bot, service, tg, build)


async def uncaptioned_image(message: Message) -> None:
    await message.reply(_NO_CAPTION)


async def other_file(message: Message) -> None:
    raise BadImage(detail=f"document {message.document.mime_type if message.document else None!r}")


async def album(message: Message, bot: Bot, service: ImageService, tg: TelegramContext) -> None:
    """An album: all its images are the references; the caption (on any item) is the prompt, and may
    start with ``/edit`` or ``/imagine``. In groups the caption must address the bot."""
    items = await tg.albums.collect(message)
    if items is None:
        return
    if (message.chat.type != "private" and tg.settings.group_policy == "mention"
            and not any(addresses_bot(m, tg.username, tg.bot_id) for m in items)):
        return
    captioned = next((m for m in items if m.caption), None)
    if captioned is None:
        await message.reply(_NO_ALBUM_CAPTION)
        return
    name, _, rest = split_command(strip_mention(captioned.caption or "", tg.username))
    files = [f for m in items for f in image_files(m)]

    async def build() -> Ask:
        if not files:
            raise BadImage("That album has no images the bot can use (PNG, JPEG, WebP or GIF).")
        label = "your image" if len(files) == 1 else f"your {len(files)} images"
        target = await files_target(bot, files, tg.download_limit, label)
        return from_text(rest, mode="edit" if name == "edit" else "auto", target=target, usage=_CAPTION_USAGE)

    await _run(captioned, bot, service, tg, build)


async def unknown_command(message: Message) -> None:
    name, mention, _ = split_command(message.text or "")
    if name is not None and (message.chat.type == "private" or mention is not None):
        await message.reply(f"I don't know /{name}. /help lists what I can do.")


async def text(message: Message, bot: Bot, service: ImageService, tg: TelegramContext) -> None:
    """Plain text to the bot: an edit of the image it replies to, otherwise a new image."""
    async def build() -> Ask:
        target = await replied_target(service, bot, message, tg.download_limit)
        prompt = strip_mention(message.text or "", tg.username)
        return from_text(prompt, mode="edit" if target else "generate", target=target)

    await _run(message, bot, service, tg, build)
