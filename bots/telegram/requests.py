"""Telegram gestures → ImageRequest: who and where (ChatRef), the inline options, the target images, and
the origin a restart needs to deliver (chat, message to answer, topic, how to find the references again)."""

from __future__ import annotations

from typing import Any

from aiogram import Bot
from aiogram.types import Message, User

from bots.telegram.inputs import Target, references_from_specs
from bots.telegram.parsing import USAGE, parse_args
from core.errors import InvalidRequest
from core.models import ChatRef, ImageRequest, Mode
from core.service import ImageService

__all__ = ["chat_of", "from_text", "origin_of", "repeat"]


def chat_of(message: Message, user: User | None = None) -> ChatRef:
    who = user or message.from_user
    return ChatRef("telegram", str(message.chat.id), str(who.id) if who is not None else None)


def origin_of(message: Message, target: Target | None) -> dict[str, Any]:
    """JSON-safe; everything delivery needs after a restart, plus the references' specs for 🔁 Again."""
    origin: dict[str, Any] = {"chat_id": message.chat.id, "reply_to": message.message_id}
    if message.is_topic_message and message.message_thread_id is not None:
        origin["thread_id"] = message.message_thread_id
    if target is not None:
        origin["refs"] = [dict(spec) for spec in target.specs]
        origin["target"] = target.label
    return origin


def from_text(message: Message, text: str, *, mode: Mode, target: Target | None,
              usage: str = USAGE) -> ImageRequest:
    """``text`` is the prompt with inline options; an empty prompt gets the usage line."""
    args = parse_args(text)
    if not args.prompt:
        raise InvalidRequest(f"Please say what to draw. {usage}")
    return ImageRequest(
        prompt=args.prompt, chat=chat_of(message), references=target.references if target else (),
        aspect_ratio=args.aspect_ratio, size=args.size, count=args.count, mode=mode,
        origin=origin_of(message, target))


async def repeat(service: ImageService, bot: Bot, artifact_id: str, message: Message, user: User,
                 *, limit: int, ratio: str | None = None) -> ImageRequest:
    """The request that made ``artifact_id``, again (optionally at another ratio), answering ``message``.
    Rebuilt from the stored artifact and its job's record, so it works after any restart."""
    artifact = await service.store.get(artifact_id)
    if artifact is None:
        raise InvalidRequest("That image is no longer stored, so it cannot be made again.")
    record = await service.jobs.get(artifact.job_id) if artifact.job_id else None
    summary: dict[str, Any] = record.request if record is not None else {}
    old_origin: dict[str, Any] = record.origin if record is not None else {}
    specs = old_origin.get("refs") or ([{"artifact": artifact.parent_id}] if artifact.parent_id else [])
    references = await references_from_specs(bot, specs, limit)
    mode: Mode = "edit" if summary.get("mode") == "edit" else "auto"
    count = summary.get("count")
    origin = origin_of(message, None)
    if specs:
        origin["refs"] = specs
    if isinstance(old_origin.get("target"), str):
        origin["target"] = old_origin["target"]
    elif artifact.parent_id:  # the service picked the chat's last image then; it may not be the last one now
        origin["target"] = f"the same image as before ({artifact.parent_id})"
    return ImageRequest(
        prompt=str(summary.get("prompt") or artifact.prompt), chat=chat_of(message, user),
        references=references, aspect_ratio=ratio or summary.get("aspect_ratio"), size=summary.get("size"),
        count=count if isinstance(count, int) else None, mode=mode if references else "generate",
        origin=origin)
