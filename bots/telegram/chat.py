"""This chat's settings and memory: ``/ratio``, ``/settings`` (and their buttons), ``/last``, ``/history``,
``/cancel``, ``/help`` and ``/start``. State lives in the service's ChatState; this only talks."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InaccessibleMessage, Message

from bots.telegram.captions import TEXT_LIMIT
from bots.telegram.context import TelegramContext
from bots.telegram.keyboards import Setting, decode_ratio, ratio_keyboard, settings_keyboard
from bots.telegram.surface import TelegramSurface, chat_of
from core.service import ImageService

__all__ = ["help_text", "make_router"]

_HISTORY_MAX = 10
_SETTINGS_HINT = "Change with the buttons, or e.g. /settings style document · /settings n 2 · /settings reset"


def make_router() -> Router:
    router = Router(name="telegram.chat")
    router.message.register(help_command, Command("help", "start"))
    router.message.register(ratio_command, Command("ratio"))
    router.message.register(settings_command, Command("settings"))
    router.message.register(last_command, Command("last", "show"))
    router.message.register(history_command, Command("history"))
    router.message.register(cancel_command, Command("cancel"))
    router.callback_query.register(setting_button, Setting.filter())
    return router


def help_text(service: ImageService, group: bool) -> str:
    text = (
        f"I draw and edit images with {service.default_provider} ({service.default_model}).\n\n"
        "Send me a description and I draw it, or:\n"
        "/imagine a lighthouse at dusk --ar 16:9 --n 2 --size 2K: draw (also /image, /draw)\n"
        "/edit make it snowy: edit the image you reply to, the one you send, or the last one\n"
        "Reply to any image with an instruction to edit it; send a photo or an album with a caption to "
        "use them as references.\n"
        "Buttons under results: 🔁 again, ✏️ edit, 📐 another ratio, 📎 the original file.\n\n"
        "/ratio 16:9: this chat's aspect ratio · /settings: ratio, count, photo or file\n"
        "/last, /history: recent images · /show <id>: that image · /edit <id> make it blue: edit it\n"
        "/cancel: stop what is running"
    )
    if group:
        text += "\n\nIn this group, mention me or reply to my messages; commands always work."
    return text


def _key(message: Message) -> str:
    return chat_of(message.chat.id, None).key


async def help_command(message: Message, command: CommandObject, service: ImageService) -> None:
    text = help_text(service, message.chat.type != "private")
    if command.command == "start":
        text = "Hi! I make and edit images. " + text
    await message.reply(text)


async def ratio_command(message: Message, command: CommandObject, service: ImageService,
                        tg: TelegramContext) -> None:
    """``/ratio 16:9`` sets this chat's default; ``/ratio reset`` clears it; ``/ratio`` offers buttons."""
    arg = (command.args or "").strip()
    if not arg:
        current = (await service.settings(_key(message))).aspect_ratio
        await message.reply(f"This chat's aspect ratio: {current or 'the default'}. Pick one:",
                            reply_markup=ratio_keyboard())
        return
    settings = await tg.flow.change_setting(_key(message), "ar", arg)
    note = tg.flow.ratio_note(settings.aspect_ratio)
    await message.reply(f"This chat's aspect ratio is now {settings.aspect_ratio or 'the default'}."
                        + (f"\n{note}" if note else ""))


async def _describe(tg: TelegramContext, chat_key: str) -> str:
    return await tg.flow.settings_text(chat_key, delivery_default=tg.settings.delivery) + "\n" + _SETTINGS_HINT


async def settings_command(message: Message, command: CommandObject, service: ImageService,
                           tg: TelegramContext) -> None:
    """``/settings`` shows them with buttons; ``/settings n 2``, ``ar 16:9``, ``style document``, ``reset``."""
    parts = (command.args or "").split()
    if parts:
        await tg.flow.change_setting(_key(message), parts[0], parts[1] if len(parts) > 1 else "")
    await message.reply(await _describe(tg, _key(message)), reply_markup=settings_keyboard(service.max_images))


async def setting_button(query: CallbackQuery, callback_data: Setting, tg: TelegramContext) -> None:
    message = query.message
    if message is None or isinstance(message, InaccessibleMessage):
        await query.answer("This message is too old; use /settings.", show_alert=True)
        return
    key = _key(message)
    value = decode_ratio(callback_data.value) if callback_data.name == "ar" else callback_data.value
    await tg.flow.change_setting(key, callback_data.name, value)
    await query.answer("Saved.")
    if message.text:  # the /settings message: show the new values (the /ratio picker stays as it is)
        text = await _describe(tg, key)
        if text != message.text:
            await message.edit_text(text, reply_markup=message.reply_markup)


async def last_command(message: Message, command: CommandObject, bot: Bot, service: ImageService,
                       tg: TelegramContext) -> None:
    """``/last`` shows the chat's last image again, ``/show img_…`` (or ``/last img_…``) that one, with
    its buttons; replying to it edits it."""
    image_id = (command.args or "").strip() or None
    await tg.flow.show(TelegramSurface.answering(bot, service, tg, message), image_id)


async def history_command(message: Message, command: CommandObject, tg: TelegramContext) -> None:
    arg = (command.args or "").strip()
    limit = min(int(arg), _HISTORY_MAX) if arg.isdigit() and int(arg) > 0 else _HISTORY_MAX
    await message.reply(await tg.flow.history(_key(message), limit, TEXT_LIMIT))


async def cancel_command(message: Message, tg: TelegramContext) -> None:
    who = message.from_user.id if message.from_user else None
    await message.reply(await tg.flow.cancel(chat_of(message.chat.id, who)))
