"""The nanobot tool plugin ``pixbot_image``: pixbot's ImageService inside nanobot, keyed by nanobot's session.

Loaded by nanobot through the ``nanobot.tools`` entry point; needs ``nanobot-ai`` (``pixbot[nanobot]``),
which nothing else in pixbot imports.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger as loguru_logger
from nanobot.agent.tools.base import Tool, ToolResult, tool_parameters
from nanobot.agent.tools.context import RequestContext, current_request_context
from nanobot.config.paths import get_config_path, get_data_dir

from bots.app import open_service
from core.config import MAX_IMAGES_PER_REQUEST, AppConfig
from core.config_file import load_config
from core.errors import PixbotError
from core.images import sniff_mime
from core.models import ChatRef, ImageRequest, JobResult, Reference
from core.service import ImageService

if TYPE_CHECKING:
    from nanobot.agent.tools.context import ToolContext

__all__ = ["PARAMETERS", "PixbotImageTool", "inbound_images", "plugin_config"]

log = logging.getLogger(__name__)

#: nanobot's ``generate_image`` schema (same names, types and bounds) plus ``edit_last``.
PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "minLength": 1,
                   "description": "What to draw, or how to change the reference images: subject, style, "
                                  "composition, colours, constraints."},
        "reference_images": {
            "type": "array",
            "items": {"type": "string", "description": "Local path of an image artifact or user image."},
            "description": "Optional image paths to edit or combine. Images the user attached to this "
                           "message are used automatically when this is empty."},
        "aspect_ratio": {"type": "string",
                         "description": "Optional output aspect ratio, e.g. 1:1, 16:9, 9:16."},
        "image_size": {"type": "string", "description": "Optional size hint, e.g. 1K, 2K, 4K or 1024x1024."},
        "count": {"type": "integer", "minimum": 1, "maximum": MAX_IMAGES_PER_REQUEST,
                  "description": "Number of images to generate in this turn."},
        "edit_last": {"type": "boolean",
                      "description": "Edit the most recent image made in this chat (no path needed), e.g. "
                                     "for 'make it warmer'."},
    },
    "required": ["prompt"],
}

_NEXT_STEP = ("Call the message tool with these artifact paths in the media parameter to deliver the images. "
              "For a follow-up change to the latest image call pixbot_image with edit_last=true; to edit "
              "an older one pass its path in reference_images. Keep raw paths internal unless asked.")
_MARKER = re.compile(r"\[(?:image|file): ((?:/|~)[^\]\n]+)\]")
_SNIFF_BYTES = 16


def plugin_config(workspace: Path | None = None) -> AppConfig:
    """``$PIXBOT_CONFIG``, else nanobot's own config.json (its ``providers`` and ``tools.imageGeneration``).

    Either way the data dir becomes nanobot's, so artifacts land in nanobot's media directory where
    its ``message`` tool may send them; the workspace is an allowed place for reference images.
    """
    env = os.environ.get("PIXBOT_CONFIG")
    path = Path(env).expanduser() if env else get_config_path()
    config = load_config(path if path.exists() or env else None, env_file=None)
    allowed = [*config.storage.allowed_dirs, *([workspace] if workspace is not None else [])]
    storage = config.storage.model_copy(update={"data_dir": get_data_dir(), "allowed_dirs": allowed})
    plugin = config.tools.pixbot  # the plugin's own provider choice, over nanobot's (see docs/nanobot.md)
    chosen = {k: v for k, v in (("provider", plugin.provider), ("model", plugin.model)) if v}
    tools = config.tools.model_copy(update={"image_generation": config.image.model_copy(update=chosen)})
    return config.model_copy(update={"storage": storage, "tools": tools,
                                     "providers": {**config.providers, **plugin.providers}})


class _ToLoguru(logging.Handler):
    """pixbot's log records into the gateway's loguru sinks, so they read like nanobot's own lines
    instead of appearing bare on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = loguru_logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        loguru_logger.opt(exception=record.exc_info).log(level, "{}: {}", record.name, record.getMessage())


def route_logs_to_loguru() -> None:
    """Inside a nanobot gateway: pixbot's loggers (core, bots, providers) write through loguru."""
    for name in ("core", "bots", "providers"):
        logger = logging.getLogger(name)
        if not any(isinstance(handler, _ToLoguru) for handler in logger.handlers):
            logger.addHandler(_ToLoguru())
        logger.propagate = False
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)


def inbound_images(ctx: RequestContext | None, media_dir: Path) -> list[str]:
    """The turn's attachments: ``[image: /abs/path]`` markers nanobot's channels put in the message
    (and any ``media`` list in its metadata), kept only when they are images inside the media dir."""
    if ctx is None:
        return []
    found = _MARKER.findall(ctx.original_user_text or "")
    media = ctx.metadata.get("media")
    if isinstance(media, list):
        found += [item for item in media if isinstance(item, str)]
    root = media_dir.resolve()
    kept: list[str] = []
    for raw in dict.fromkeys(p.strip() for p in found):
        path = Path(raw).expanduser()
        try:
            resolved = path.resolve(strict=True)
            if not resolved.is_relative_to(root) or not resolved.is_file():
                continue
            with resolved.open("rb") as handle:
                head = handle.read(_SNIFF_BYTES)
        except OSError:
            continue
        if sniff_mime(head) is not None:
            kept.append(str(resolved))
    return kept


def _chat_for(ctx: RequestContext | None) -> ChatRef:
    """Chat state is keyed by nanobot's session key; quotas by channel and sender."""
    if ctx is None:
        return ChatRef("nanobot", "direct")
    session = ctx.session_key or f"{ctx.channel}:{ctx.chat_id}"
    user = f"{ctx.channel}:{ctx.sender_id}" if ctx.sender_id else None
    return ChatRef("nanobot", session, user)


def _error(message: str) -> str:
    """nanobot's error result (``is_error`` set, and the legacy ``Error:`` prefix its loader looks for)."""
    error: str = ToolResult.error(f"Error: {message}")
    return error


def _payload(result: JobResult) -> dict[str, Any]:
    payload: dict[str, Any] = {"artifacts": [a.to_sidecar() for a in result.artifacts],
                               "next_step": _NEXT_STEP}
    if result.edited:
        payload["edited"] = list(result.edited)
    if result.errors:
        payload["errors"] = [{"category": e.category, "message": e.message} for e in result.errors]
    notes = [*result.report.ignored.values(), *result.report.notes]
    if notes:
        payload["notes"] = notes
    return payload


@tool_parameters(PARAMETERS)
class PixbotImageTool(Tool):  # type: ignore[misc]  # nanobot ships no type information
    """Generates and edits images through pixbot (retries, fallbacks, per-chat history and quotas)."""

    @classmethod
    def enabled(cls, ctx: ToolContext) -> bool:
        """``tools.pixbot.enabled: false`` in nanobot's config switches the plugin off without uninstalling."""
        try:
            on = plugin_config(Path(ctx.workspace).expanduser() if ctx.workspace else None).tools.pixbot.enabled
        except PixbotError as exc:  # a broken config: say so now; the tool answers with the same error
            log.warning("pixbot_image: %s", exc)
            return True
        if not on:
            log.info("pixbot_image is switched off (tools.pixbot.enabled: false)")
        return on

    @classmethod
    def create(cls, ctx: ToolContext) -> Tool:
        route_logs_to_loguru()
        return cls(workspace=ctx.workspace)

    def __init__(self, *, workspace: str | Path | None = None, config: AppConfig | None = None) -> None:
        self.workspace = Path(workspace).expanduser() if workspace else None
        self._config = config
        self._service: ImageService | None = None
        self._stack: AsyncExitStack | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Lock | None = None

    @property
    def name(self) -> str:
        return "pixbot_image"

    @property
    def description(self) -> str:
        return ("Generate or edit images and store them as artifacts (returns their paths). Images the user "
                "attached to this message are used as references automatically. Set edit_last=true to "
                "change this chat's most recent image without passing a path.")

    async def execute(self, prompt: str, reference_images: list[str] | None = None,
                      aspect_ratio: str | None = None, image_size: str | None = None,
                      count: int | None = None, edit_last: bool = False, **_: Any) -> str:
        ctx = current_request_context()
        chat = _chat_for(ctx)
        try:
            service = await self._ensure_service()
            references = [Reference(path=p) for p in reference_images or [] if p]
            if not edit_last and not references:
                found = await asyncio.to_thread(inbound_images, ctx, service.config.media_dir)
                references = [Reference(path=p) for p in found]
            origin = {"front_end": "nanobot", "session_key": ctx.session_key if ctx else None}
            request = ImageRequest(prompt, chat, tuple(references), aspect_ratio, image_size, count,
                                   mode="edit" if edit_last else "auto", origin=origin, include_last=edit_last)
            result = await service.submit(request)
        except PixbotError as exc:
            return _error(exc.public_message)
        if not result.artifacts:
            message = result.errors[0].message if result.errors else PixbotError.default_message
            return _error(message)
        await service.mark_delivered(result.job_id, chat.key, [])  # the tool's answer is the delivery
        return json.dumps(_payload(result), ensure_ascii=False)

    async def _ensure_service(self) -> ImageService:
        """Open the service on first use, in the loop nanobot runs the tool in (reopened if that changes)."""
        loop = asyncio.get_running_loop()
        if self._service is not None and self._loop is loop:
            return self._service
        if self._opening is None or self._loop is not loop:
            self._opening, self._loop, self._service, self._stack = asyncio.Lock(), loop, None, None
        async with self._opening:
            if self._service is not None:
                return self._service
            config = self._config
            if config is None:
                config = await asyncio.to_thread(plugin_config, self.workspace)
            stack = AsyncExitStack()
            service = await stack.enter_async_context(open_service(config))
            self._service, self._stack = service, stack
            log.info("pixbot_image ready: media in %s", config.media_dir)
            return service

    async def aclose(self) -> None:
        """Close the service's clients and database (nanobot has no tool shutdown hook; tests call this)."""
        stack, self._stack, self._service = self._stack, None, None
        if stack is not None:
            await stack.aclose()
