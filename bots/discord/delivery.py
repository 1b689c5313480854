"""Results to Discord messages: files fitted under the upload limit, an embed per image, buttons, the text
that says what was edited, fitted or failed; then the message → artifact record. Never a raw error."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import PurePath

import discord
from PIL import Image

from bots.discord.answers import Answer, ChannelAnswer, Outgoing
from bots.discord.buttons import result_view
from bots.discord.context import Context
from bots.discord.targets import shown
from core.errors import BadImage, PixbotError
from core.images import EXTENSIONS, fit_under_bytes_async
from core.jobs import JobRecord
from core.models import Artifact, JobResult, SlotError

__all__ = ["MAX_FILES", "build_message", "deliver", "deliver_pending", "failure_text", "send_original"]

log = logging.getLogger(__name__)

#: Discord allows 10 attachments and 10 embeds per message.
MAX_FILES = 10
_MIB = 1024 * 1024
_CONTENT_MAX = 2000
_EMBEDS_TEXT_MAX = 5600  # Discord caps all embeds of a message at 6000 characters together
_COLOUR = discord.Colour.blurple()
_UPLOAD_FAILED = ("The images were made, but Discord did not accept the upload. They are kept: try /history, "
                  "or ask again.")
_RESTART_LEAD = "here is what you asked for before the bot restarted."
#: Builds the result message for an upload limit (so a refused upload can be rebuilt smaller).
_Compose = Callable[[int], Awaitable[Outgoing]]


async def deliver(ctx: Context, answer: Answer, result: JobResult) -> None:
    """Post a JobResult (or its failure) through `answer`, then record which message shows which image."""
    if not result.artifacts:
        await answer.refuse(failure_text(result.errors, result.requested))
        return

    async def compose(limit: int) -> Outgoing:
        return await build_message(ctx, result.artifacts, limit, errors=result.errors, requested=result.requested,
                                   edited=result.edited)

    try:
        out = await compose(answer.filesize_limit)
    except PixbotError as exc:
        await answer.refuse(str(exc))
        return
    try:
        message = await answer.send(out)
    except discord.HTTPException as exc:
        log.warning("job %s: Discord refused the result message: %s", result.job_id, exc)
        retried = await _send_again(answer, compose, result.job_id, exc)
        if retried is None:
            await answer.refuse(_UPLOAD_FAILED)
            return
        message = retried
    await ctx.service.mark_delivered(result.job_id, result.request.chat.key,
                                     shown(message.id, [a.id for a in result.artifacts]))
    log.info("job %s delivered as message %s", result.job_id, message.id)


async def _send_again(answer: Answer, compose: _Compose, job_id: str,
                      refused: discord.HTTPException) -> discord.Message | None:
    """One more try after Discord refused the result: smaller files after a 413 (its limit was lower
    than we were told), the channel itself when the interaction token has expired (401/404), the same
    again after a 5xx. Other refusals (a 400) would only fail again."""
    limit = answer.filesize_limit
    target: Answer | None = answer
    if refused.status == 413:
        limit = max(_MIB, limit // 2)
    elif refused.status in (401, 404):
        target = answer.fallback()
    elif refused.status < 500:
        target = None
    if target is None:
        return None
    try:
        message = await target.send(await compose(limit))
    except (PixbotError, discord.HTTPException) as exc:
        log.warning("job %s: second delivery attempt failed too: %s", job_id, exc)
        return None
    log.info("job %s delivered on the second attempt (%s)", job_id, refused.status)
    return message


async def deliver_pending(client: discord.Client, ctx: Context, record: JobRecord,
                          artifacts: Sequence[Artifact]) -> None:
    """Deliver a job that was stored while no one could post it, mentioning the person who asked."""
    channel_id = int(record.origin.get("channel_id") or record.chat_key.partition(":")[2])
    user_id = record.origin.get("user_id") or (record.user_key or "").partition(":")[2] or None
    try:
        channel = client.get_channel(channel_id) or await client.fetch_channel(channel_id)
    except discord.HTTPException as exc:
        await _give_up(ctx, record, f"channel {channel_id} unavailable: {exc}")
        return
    if not isinstance(channel, discord.abc.Messageable) or not artifacts:
        await _give_up(ctx, record, f"nothing to post in channel {channel_id}")
        return
    guild = getattr(channel, "guild", None)
    limit = guild.filesize_limit if isinstance(guild, discord.Guild) else discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
    answer = ChannelAnswer(channel, channel_id, user_id, record.origin.get("reply_to"), limit)

    async def compose(size_limit: int) -> Outgoing:
        return await build_message(ctx, artifacts, size_limit, lead=_RESTART_LEAD, requested=record.requested)

    try:
        message = await answer.send(await compose(limit))
    except PixbotError as exc:
        await answer.refuse(str(exc))
        await _give_up(ctx, record, exc.category)
        return
    except discord.HTTPException as exc:
        retried = await _send_again(answer, compose, record.id, exc)
        if retried is None and exc.status >= 500:
            log.warning("job %s: delivery after restart failed, kept for the next start: %s", record.id, exc)
            return
        if retried is None:
            await _give_up(ctx, record, f"Discord refused the message: {exc}")
            return
        message = retried
    await ctx.service.mark_delivered(record.id, record.chat_key, shown(message.id, [a.id for a in artifacts]))
    log.info("job %s delivered after a restart as message %s", record.id, message.id)


async def _give_up(ctx: Context, record: JobRecord, why: str) -> None:
    log.warning("job %s: giving up on delivery: %s", record.id, why)
    await ctx.service.jobs.advance(record.id, "failed", error=f"undeliverable: {why}"[:200])


async def build_message(ctx: Context, artifacts: Sequence[Artifact], limit: int, *, lead: str = "",
                        errors: Sequence[SlotError] = (), requested: int = 0,
                        edited: Sequence[str] = ()) -> Outgoing:
    """Files fitted so that together they stay under `limit`, one embed each, the buttons, and the text.

    Raises BadImage when not one image can be made to fit."""
    shown = list(artifacts[:MAX_FILES])
    originals = [await ctx.service.store.read(a) for a in shown]
    notes: list[str] = []
    kept: list[tuple[Artifact, discord.File, str]] = []
    for index, (artifact, data, budget) in enumerate(zip(shown, originals, _budgets(originals, limit), strict=True)):
        label = "The image" if len(shown) == 1 else f"Image {index + 1}"
        try:
            fitted, mime, changed = await fit_under_bytes_async(data, budget,
                                                                max_pixels=ctx.config.limits.max_pixels)
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
    lines = [lead] if lead else []
    lines += [_edited_line(edited)] if edited else []
    lines += notes
    if errors:
        lines.append(f"{len(errors)} of {requested or len(errors) + len(shown)} images failed: "
                     + _unique_messages(errors))
    if len(artifacts) > MAX_FILES:
        lines.append(f"{len(artifacts) - MAX_FILES} more images are in /history.")
    return Outgoing(_clip("\n".join(lines), _CONTENT_MAX), embeds, [f for _, f, _ in kept],
                    result_view([a.id for a, _, _ in kept]))


def failure_text(errors: Sequence[SlotError], requested: int) -> str:
    """The plain text for a job that produced nothing."""
    if not errors:
        return PixbotError.default_message
    if requested <= 1:
        return errors[0].message
    return f"None of the {requested} images could be made: {_unique_messages(errors)}"


async def send_original(ctx: Context, interaction: discord.Interaction, artifact_id: str) -> None:
    """📎 Original: the stored file as the provider made it, to the person who clicked (ephemeral)."""
    await interaction.response.defer(ephemeral=True, thinking=True)
    artifact = await ctx.service.store.get(artifact_id)
    if artifact is None:
        await interaction.edit_original_response(content="That image is no longer stored.")
        return
    limit = interaction.filesize_limit
    if artifact.bytes > limit:
        await interaction.edit_original_response(
            content=f"The original is {artifact.bytes / _MIB:.1f} MiB, over this server's {_mib(limit)} upload "
                    "limit, so only the fitted copy can be shown here.")
        return
    data = await ctx.service.store.read(artifact)
    name = f"{artifact.id}{EXTENSIONS.get(artifact.mime, PurePath(artifact.path).suffix)}"
    await interaction.edit_original_response(
        content=f"Original of `{artifact.id}`: {artifact.width}×{artifact.height}, {artifact.bytes / _MIB:.1f} MiB.",
        attachments=[discord.File(io.BytesIO(data), filename=name)])


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
    embed = discord.Embed(description=_clip(artifact.prompt, max(room, 100)), colour=_COLOUR)
    if total > 1:
        embed.title = f"Image {index + 1} of {total}"
    if ignored:
        embed.add_field(name="Not applied", value=_clip(ignored, 1024), inline=False)
    embed.set_image(url=f"attachment://{filename}")
    embed.set_footer(text=_clip(footer, 2048))
    return embed


def _edited_line(edited: Sequence[str]) -> str:
    names = [f"`{e}`" if e.startswith("img_") else PurePath(e.removeprefix("upload:")).name for e in edited]
    return "Edited " + ", ".join(names) + "."


def _unique_messages(errors: Sequence[SlotError]) -> str:
    return " ".join(dict.fromkeys(e.message for e in errors))


def _mib(size: int) -> str:
    return f"{size / _MIB:g} MiB"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
