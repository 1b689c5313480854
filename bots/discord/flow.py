"""The one path every image gesture takes: resolve → submit (the service's refusals become the first
answer) → deliver. Nothing escapes it: every outcome ends as a message in the chat."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import discord

from bots.discord.answers import Answer
from bots.discord.context import Context
from bots.discord.delivery import deliver
from core.errors import PixbotError
from core.models import ImageRequest
from core.service import Progress, ProgressCallback

__all__ = ["DISCORD_FAILED", "Build", "ready", "run_job"]

log = logging.getLogger(__name__)

#: Builds the request; may download references, and raise PixbotError to refuse.
Build = Callable[[], Awaitable[ImageRequest]]
DISCORD_FAILED = "Discord did not accept the bot's answer. Please try again."


def ready(request: ImageRequest) -> Build:
    """A Build for a request that needs no downloads."""
    async def build() -> ImageRequest:
        return request

    return build


async def run_job(ctx: Context, answer: Answer, build: Build) -> None:
    async with ctx.gate.track(answer):
        try:
            async with answer.working():
                request = await build()
                result = await ctx.service.submit(request, progress=_on_progress(answer))
        except PixbotError as exc:
            log.info("discord gesture refused: %s (%s)", exc.category, exc.detail or exc)
            await answer.refuse(str(exc))
            return
        except discord.HTTPException as exc:
            log.warning("discord gesture: Discord refused a call: %s", exc)
            await answer.refuse(DISCORD_FAILED)
            return
        except Exception:
            log.exception("discord gesture failed")
            await answer.refuse(PixbotError.default_message)
            return
        try:
            await deliver(ctx, answer, result)
        except Exception:
            log.exception("job %s: delivery failed", result.job_id)
            await answer.refuse(PixbotError.default_message)


def _on_progress(answer: Answer) -> ProgressCallback:
    async def progress(update: Progress) -> None:
        await answer.started()  # the first call means the service accepted the job: defer publicly now

    return progress
