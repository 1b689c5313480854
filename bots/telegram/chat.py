"""This chat's settings and memory: ``/ratio``, ``/settings`` (and their buttons), ``/last``, ``/history``,
``/cancel``, ``/help`` and ``/start``. State lives in the service's ChatState; this only talks."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InaccessibleMessage, Message

from bots.telegram.captions import CAPTION_LIMIT, fit_text
from bots.telegram.context import TelegramContext
from bots.telegram.delivery import Destination, deliver
from bots.telegram.keyboards import Setting, decode_ratio, ratio_keyboard, settings_keyboard
from bots.telegram.requests import chat_of
from core.capabilities import validate_count, validate_ratio
from core.errors import InvalidRequest
from core.service import ImageService
from core.state import DELIVERY_STYLES, ChatSettings

__all__ = ["help_text", "make_router"]

_HISTORY_MAX = 10


def make_router() -> Router:
    router = Router(name="telegram.chat")
    router.message.register(help_command, Command("help", "start"))
    router.message.register(ratio_command, Command("ratio"))
    router.message.register(settings_command, Command("settings"))
    router.message.register(last_command, Command("last"))
    router.message.register(history_command, Command("history"))
    router.message.register(cancel_command, Command("cancel"))
    router.callback_query.register(setting_button, Setting.filter())
    return router


def help_text(service: ImageService, group: bool) -> str:
    text = (
        f"I draw and edit images with {service.default_provider} ({service.default_model}).\n\n"
        "/imagine a lighthouse at dusk --ar 16:9 --n 2 --size 2K: draw (also /image, /draw)\n"
        "/edit make it snowy: edit the image you reply to, the one you send, or the last one\n"
        "Reply to any image with an instruction to edit it; send a photo or an album with a caption to "
        "use them as references.\n"
        "Buttons under results: 🔁 again, ✏️ edit, 📐 another ratio, 📎 the original file.\n\n"
        "/ratio 16:9: this chat's aspect ratio · /settings: ratio, count, photo or file\n"
        "/last, /history: recent images · /cancel: stop what is running"
    )
    if group:
        text += "\n\nIn this group, mention me or reply to my messages; commands always work."
    return text


def _key(message: Message) -> str:
    return chat_of(message).key


async def help_command(message: Message, service: ImageService) -> None:
    await message.reply(help_text(service, message.chat.type != "private"))


async def ratio_command(message: Message, command: CommandObject, service: ImageService) -> None:
    """``/ratio 16:9`` sets this chat's default; ``/ratio reset`` clears it; ``/ratio`` offers buttons."""
    arg = (command.args or "").strip()
    if not arg:
        current = (await service.state.settings(_key(message))).aspect_ratio
        await message.reply(f"This chat's aspect ratio: {current or 'the default'}. Pick one:",
                            reply_markup=ratio_keyboard())
        return
    ratio = None if arg.lower() in ("reset", "default", "-") else validate_ratio(arg)
    await service.state.update_settings(_key(message), aspect_ratio=ratio)
    await message.reply(f"This chat's aspect ratio is now {ratio or 'the default'}.")


async def settings_command(message: Message, command: CommandObject, service: ImageService,
                           tg: TelegramContext) -> None:
    """``/settings`` shows them with buttons; ``/settings n 2``, ``ar 16:9``, ``style document``, ``reset``."""
    parts = (command.args or "").split()
    if parts:
        name, value = parts[0].lower(), (parts[1] if len(parts) > 1 else "")
        await _change(service, _key(message), name, value, service.config.image.max_images_per_turn)
    settings = await service.state.settings(_key(message))
    await message.reply(_describe(settings, service, tg),
                        reply_markup=settings_keyboard(service.config.image.max_images_per_turn))


async def setting_button(query: CallbackQuery, callback_data: Setting, service: ImageService,
                         tg: TelegramContext) -> None:
    message = query.message
    if message is None or isinstance(message, InaccessibleMessage):
        await query.answer("This message is too old; use /settings.", show_alert=True)
        return
    key = chat_of(message).key
    value = decode_ratio(callback_data.value) if callback_data.name == "ar" else callback_data.value
    await _change(service, key, callback_data.name, value, service.config.image.max_images_per_turn)
    await query.answer("Saved.")
    if message.text:  # the /settings message: show the new values (the /ratio picker stays as it is)
        text = _describe(await service.state.settings(key), service, tg)
        if text != message.text:
            await message.edit_text(text, reply_markup=message.reply_markup)


async def _change(service: ImageService, chat_key: str, name: str, value: str, max_count: int) -> None:
    reset = value.lower() in ("-", "reset", "default")
    if name == "reset":
        await service.state.update_settings(chat_key, aspect_ratio=None, count=None, delivery=None)
    elif name in ("ar", "ratio"):
        await service.state.update_settings(chat_key, aspect_ratio=None if reset else validate_ratio(value))
    elif name in ("n", "count"):
        if not reset and not value.isdigit():
            raise InvalidRequest(f"The image count must be a number from 1 to {max_count}.")
        await service.state.update_settings(chat_key, count=None if reset else validate_count(int(value), max_count))
    elif name in ("style", "delivery"):
        if not reset and value.lower() not in DELIVERY_STYLES:
            raise InvalidRequest("The delivery style must be photo, document or both.")
        await service.state.update_settings(chat_key, delivery=None if reset else value.lower())
    else:
        raise InvalidRequest("Settings are ar (aspect ratio), n (images per request) and style (photo, "
                             "document or both), e.g. /settings style document, or /settings reset.")


def _describe(settings: ChatSettings, service: ImageService, tg: TelegramContext) -> str:
    image = service.config.image
    return (
        "Settings for this chat:\n"
        f"• aspect ratio (ar): {settings.aspect_ratio or f'default ({image.default_aspect_ratio})'}\n"
        f"• images per request (n): {settings.count or 'default (1)'}\n"
        f"• sent as (style): {settings.delivery or f'default ({tg.settings.delivery})'}\n"
        f"• model: {service.default_provider} / {service.default_model}\n"
        "Change with the buttons, or e.g. /settings style document · /settings n 2 · /settings reset"
    )


async def last_command(message: Message, bot: Bot, service: ImageService, tg: TelegramContext) -> None:
    """Show the chat's last image again, with its buttons; replying to it edits it."""
    key = _key(message)
    artifact_id = await service.state.last_artifact(key)
    artifact = await service.store.get(artifact_id) if artifact_id else None
    if artifact is None:
        await message.reply("There is no image in this chat yet. Try /imagine a red fox.")
        return
    dest = Destination(message.chat.id, message.message_id,
                       message.message_thread_id if message.is_topic_message else None)
    await deliver(bot, service, tg, job_id=artifact.job_id or "", chat_key=key, dest=dest, artifacts=[artifact],
                  caption=fit_text(f"{artifact.id}: {artifact.prompt}", CAPTION_LIMIT))


async def history_command(message: Message, command: CommandObject, service: ImageService) -> None:
    arg = (command.args or "").strip()
    limit = min(int(arg), _HISTORY_MAX) if arg.isdigit() and int(arg) > 0 else _HISTORY_MAX
    entries = await service.state.history(_key(message), limit)
    if not entries:
        await message.reply("There are no images in this chat yet. Try /imagine a red fox.")
        return
    lines = [f"{e.artifact_id} · {e.created_at[:16].replace('T', ' ')} · {e.prompt[:80]}" for e in entries]
    await message.reply(fit_text("Recent images, newest first (/last shows the newest again):\n" + "\n".join(lines)))


async def cancel_command(message: Message, service: ImageService) -> None:
    cancelled = await service.cancel(_key(message))
    if cancelled:
        jobs = "the running job" if cancelled == 1 else f"{cancelled} running jobs"
        await message.reply(f"Stopping {jobs}. Images that are already made will still be sent.")
    else:
        await message.reply("Nothing is running in this chat.")
