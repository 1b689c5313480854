"""The buttons under results: 🔁 Again, 📐 ratios (the same request again), ✏️ Edit (asks for the change
with a force-reply prompt that maps to the image), 📎 Original (the untouched file). Each click is
answered at once; the work that follows reports like any other job."""

from __future__ import annotations

from typing import Any

from aiogram import Bot, Router
from aiogram.types import CallbackQuery, ForceReply, InaccessibleMessage, Message, User
from aiogram.utils.formatting import Text, TextMention

from bots.telegram.context import TelegramContext
from bots.telegram.keyboards import Again, AgainJob, EditImage, Original, Reratio, decode_ratio
from bots.telegram.surface import TelegramSurface
from core.service import ImageService

__all__ = ["make_router"]

_TOO_OLD = "This message is too old for its buttons. Use /last or /history."


def make_router() -> Router:
    router = Router(name="telegram.buttons")
    router.callback_query.register(again, Again.filter())
    router.callback_query.register(again_job, AgainJob.filter())
    router.callback_query.register(reratio, Reratio.filter())
    router.callback_query.register(edit_prompt, EditImage.filter())
    router.callback_query.register(original, Original.filter())
    router.callback_query.register(stale)
    return router


async def _accessible(query: CallbackQuery, note: str) -> Message | None:
    """The message under the button (answering the click), or None after telling the user it is too old."""
    if query.message is None or isinstance(query.message, InaccessibleMessage):
        await query.answer(_TOO_OLD, show_alert=True)
        return None
    await query.answer(note)
    return query.message


def _surface(query: CallbackQuery, message: Message, bot: Bot, service: ImageService,
             tg: TelegramContext) -> TelegramSurface:
    """Answers the message under the button, on behalf of the person who clicked."""
    return TelegramSurface.answering(bot, service, tg, message, user_id=query.from_user.id)


async def again(query: CallbackQuery, callback_data: Again, bot: Bot, service: ImageService,
                tg: TelegramContext) -> None:
    if (message := await _accessible(query, "🔁 Again…")) is not None:
        await tg.flow.again(_surface(query, message, bot, service, tg), callback_data.artifact_id)


async def again_job(query: CallbackQuery, callback_data: AgainJob, bot: Bot, service: ImageService,
                    tg: TelegramContext) -> None:
    if (message := await _accessible(query, "🔁 Again…")) is not None:
        await tg.flow.again_job(_surface(query, message, bot, service, tg), callback_data.job_id)


async def reratio(query: CallbackQuery, callback_data: Reratio, bot: Bot, service: ImageService,
                  tg: TelegramContext) -> None:
    ratio = decode_ratio(callback_data.ratio)
    if (message := await _accessible(query, f"📐 {ratio}…")) is not None:
        await tg.flow.again(_surface(query, message, bot, service, tg), callback_data.artifact_id, ratio)


async def edit_prompt(query: CallbackQuery, callback_data: EditImage, bot: Bot, service: ImageService,
                      tg: TelegramContext) -> None:
    """Ask for the change; the reply to this prompt edits the image (the prompt maps to the artifact)."""
    if (message := await _accessible(query, "✏️ Reply with the change")) is None:
        return
    surface = _surface(query, message, bot, service, tg)
    artifact_id = callback_data.artifact_id
    sent = await bot.send_message(**_ask(query.from_user, artifact_id),
                                  reply_markup=ForceReply(selective=True, input_field_placeholder="e.g. make it snowy"),
                                  **surface.dest.kwargs())
    await service.remember_messages(surface.chat.key, [(str(sent.message_id), artifact_id)])


def _ask(user: User, artifact_id: str) -> dict[str, Any]:
    """Mentions the person who clicked, so the force-reply (``selective``) opens on their screen only."""
    return Text(TextMention(user.first_name, user=user), f", what should change in {artifact_id}? "
                "Reply to this message.").as_kwargs()


async def original(query: CallbackQuery, callback_data: Original, bot: Bot, service: ImageService,
                   tg: TelegramContext) -> None:
    if (message := await _accessible(query, "📎 Sending the original…")) is not None:
        await tg.flow.original(_surface(query, message, bot, service, tg), callback_data.artifact_id)


async def stale(query: CallbackQuery) -> None:
    """Buttons from another version of the bot: say so instead of leaving the spinner turning."""
    await query.answer("This button no longer works. Use /help.", show_alert=True)
