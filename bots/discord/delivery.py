"""Results as one Discord message: files fitted so that together they stay under the upload limit, an
embed per image, the result buttons, and the text that says what was edited, fitted or failed."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import discord
from PIL import Image

from bots.chat import ResultText
from bots.chat.wording import file_size
from bots.discord.buttons import result_view
from core.errors import BadImage
from core.images import EXTENSIONS, fit_under_bytes_async
from core.models import Artifact
from core.service import ImageService

__all__ = ["MAX_FILES", "Outgoing", "build_message", "clip"]

log = logging.getLogger(__name__)

#: Discord allows 10 attachments and 10 embeds per message.
MAX_FILES = 10
_MIB = 1024 * 1024
_CONTENT_MAX = 2000
_EMBEDS_TEXT_MAX = 5600  # Discord caps all embeds of a message at 6000 characters together
_COLOUR = discord.Colour.blurple()


@dataclass
class Outgoing:
    """One message's worth of answer: text, an embed per image, the files, the buttons, and which
    artifacts the files show (in order)."""

    content: str
    embeds: list[discord.Embed] = field(default_factory=list)
    files: list[discord.File] = field(default_factory=list)
    view: discord.ui.View | None = None
    artifact_ids: list[str] = field(default_factory=list)


async def build_message(service: ImageService, artifacts: Sequence[Artifact], limit: int,
                        text: ResultText) -> Outgoing:
    """Files fitted so that together they stay under `limit`, one embed each, the buttons, and the text.

    Raises BadImage when not one image can be made to fit."""
    shown = list(artifacts[:MAX_FILES])
    originals = [await service.read(a) for a in shown]
    notes: list[str] = []
    kept: list[tuple[Artifact, discord.File, str]] = []
    for index, (artifact, data, budget) in enumerate(zip(shown, originals, _budgets(originals, limit), strict=True)):
        label = "The image" if len(shown) == 1 else f"Image {index + 1}"
        try:
            fitted, mime, changed = await fit_under_bytes_async(data, budget,
                                                                max_pixels=service.config.limits.max_pixels)
        except BadImage:
            notes.append(f"{label} could not be made small enough for this server's {_mib(limit)} upload limit.")
            continue
        name = f"{artifact.id}{EXTENSIONS.get(mime, '.png')}"
        if changed:
            notes.append(await _fitted_note(label, artifact, fitted, mime, limit))
        kept.append((artifact, discord.File(io.BytesIO(fitted), filename=name), name))
    if not kept:
        raise BadImage(" ".join(notes))
    embeds = [_embed(artifact, name, i, len(kept)) for i, (artifact, _, name) in enumerate(kept)]
    lines = text.lines(with_ignored=False, notes=notes)  # ignored settings are in each image's embed
    if len(artifacts) > MAX_FILES:
        lines.append(f"{len(artifacts) - MAX_FILES} more images are in /history.")
    ids = [a.id for a, _, _ in kept]
    return Outgoing(clip("\n".join(lines), _CONTENT_MAX), embeds, [f for _, f, _ in kept], result_view(ids), ids)


def _budgets(images: Sequence[bytes], limit: int) -> list[int]:
    """Byte budgets summing to at most `limit`: images under their fair share keep their size, the
    others share what is left equally (smallest first, so no budget is wasted)."""
    budgets = [0] * len(images)
    remaining = limit
    order = sorted(range(len(images)), key=lambda i: len(images[i]))
    for done, index in enumerate(order):
        budgets[index] = min(len(images[index]), remaining // (len(images) - done))
        remaining -= budgets[index]
    return budgets


async def _fitted_note(label: str, artifact: Artifact, fitted: bytes, mime: str, limit: int) -> str:
    width, height = await asyncio.to_thread(_dimensions, fitted)
    how = f"re-encoded as {mime.partition('/')[2].upper()}"
    if (width, height) != (artifact.width, artifact.height):
        how += f" and scaled down to {width}×{height}"
    return f"{label} was {how} to fit this server's {_mib(limit)} upload limit."


def _dimensions(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:  # header only
        return im.size


def _embed(artifact: Artifact, filename: str, index: int, total: int) -> discord.Embed:
    footer = " · ".join(filter(None, [artifact.id, f"{artifact.width}×{artifact.height}",
                                      f"{artifact.provider}/{artifact.model}"]))
    ignored = "; ".join(artifact.ignored.values())
    room = _EMBEDS_TEXT_MAX // total - len(footer) - len(ignored) - 40
    embed = discord.Embed(description=clip(artifact.prompt, max(room, 100)), colour=_COLOUR)
    if total > 1:
        embed.title = f"Image {index + 1} of {total}"
    if ignored:
        embed.add_field(name="Not applied", value=clip(ignored, 1024), inline=False)
    embed.set_image(url=f"attachment://{filename}")
    embed.set_footer(text=clip(footer, 2048))
    return embed


def _mib(size: int) -> str:
    return file_size(size)


def clip(text: str, limit: int = _CONTENT_MAX) -> str:
    """Discord's text limits count characters: cut to ``limit``, ending in "…" when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
