"""One job from request to chat: feedback while the service works, then delivery. Refusals raised by the
service propagate to the error router, which puts them in the chat."""

from __future__ import annotations

from aiogram import Bot

from bots.telegram.context import TelegramContext
from bots.telegram.delivery import Destination, deliver_result
from bots.telegram.feedback import Feedback
from core.models import ImageRequest
from core.service import ImageService

__all__ = ["run_job"]


async def run_job(bot: Bot, service: ImageService, tg: TelegramContext, request: ImageRequest) -> None:
    dest = Destination.from_origin(request.origin, request.chat.key)
    async with Feedback(bot, dest, tg.options) as feedback:
        result = await service.submit(request, progress=feedback.progress)
    await deliver_result(bot, service, tg, result)
