"""``ChatFlow``: the one path every chat gesture takes, and the chat commands, for every platform.

resolve (the gesture's builder, under the platform's busy sign) → keep uploaded images → submit (the
service's refusals become the answer) → progress → deliver → record which message shows which image.
Nothing escapes: every outcome ends as a message in the chat."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

from bots.chat import wording
from bots.chat.inflight import Inflight
from bots.chat.surface import Ask, ChatSurface, ResultText, Sent
from core.capabilities import nearest_ratio, validate_count, validate_ratio
from core.errors import InvalidRequest, PixbotError
from core.models import Artifact, ChatRef, ImageRequest, JobResult, Reference
from core.service import ImageService, PastRequest
from core.stores import DELIVERY_STYLES, ChatSettings, JobRecord

__all__ = ["Build", "ChatFlow", "SurfaceFor"]

log = logging.getLogger(__name__)

#: Parses a gesture into an Ask; may download images, and raise PixbotError to refuse.
Build = Callable[[], Awaitable[Ask]]
#: Builds the surface a restart delivery answers through, from the job's record (None: nowhere to post).
SurfaceFor = Callable[[JobRecord], Awaitable[ChatSurface | None]]

#: How often a front-end looks for jobs of processes that stopped (they are settled within the lease).
CATCH_UP_S = 5.0
_RESET = frozenset({"reset", "default", "-"})
_SETTING_NAMES = {"ar": "aspect_ratio", "ratio": "aspect_ratio", "aspect_ratio": "aspect_ratio",
                  "n": "count", "count": "count", "style": "delivery", "delivery": "delivery"}


def _again(past: PastRequest, ratio: str | None) -> Ask:
    """The Ask that repeats a past request (at ``ratio`` if given), on the images it worked on."""
    references = past.references()
    if past.lost_uploads and not references:
        raise InvalidRequest("This image was made from an uploaded image that was not kept, so it cannot be "
                             "made again. Use ✏️ Edit on it instead.")
    summary = past.summary
    target = past.origin.get("target")
    if not isinstance(target, str) and references and references[0].artifact_id:
        target = f"the same image as before ({references[0].artifact_id})"
    mode = summary.mode if summary is not None else "auto"
    return Ask(prompt=past.prompt, mode=mode if references else "generate", references=references,
               target=target if isinstance(target, str) and references else None,
               aspect_ratio=ratio or (summary.aspect_ratio if summary else None),
               size=summary.size if summary else None, count=summary.count if summary else None,
               note=f"📐 {ratio}" if ratio else "🔁 Again")


class ChatFlow:
    """One per chat front-end (each has its own shutdown), all over the one service of the process."""

    def __init__(self, service: ImageService) -> None:
        self.service = service
        self.inflight = Inflight()

    @property
    def closing(self) -> bool:
        return self.inflight.closing

    # -- making images -----------------------------------------------------------------------
    async def run(self, surface: ChatSurface, build: Build) -> None:
        """One image gesture, from parsing to the delivered result (or a plain answer)."""
        async with self.inflight.track(surface.chat.key):
            if self.closing:
                await surface.tell(wording.RESTARTING)
                return
            try:
                async with surface.busy():
                    ask = await build()
                    request = await self._request(surface, ask)
                    result = await self.service.submit(request, progress=surface.progress)
            except asyncio.CancelledError:
                await surface.tell(wording.INTERRUPTED)
                raise
            except Exception as exc:  # every failure is answered in the chat
                await surface.tell(self._explain(surface, exc))
                return
            await self.deliver(surface, result)

    async def _request(self, surface: ChatSurface, ask: Ask) -> ImageRequest:
        """The service request for a gesture: uploaded images are kept first, so the job's record
        points at stored images and Again works on it later, on any platform."""
        chat = surface.chat
        references = tuple([await self.service.keep_upload(r, chat.key) for r in ask.references])
        origin = dict(surface.origin)
        if ask.target:
            origin["target"] = ask.target
        if ask.note:
            origin["note"] = ask.note
        return ImageRequest(ask.prompt, chat, references, aspect_ratio=ask.aspect_ratio, size=ask.size,
                            count=ask.count, provider=ask.provider, model=ask.model, mode=ask.mode,
                            origin=origin, include_last=ask.include_last)

    def _explain(self, surface: ChatSurface, exc: Exception) -> str:
        if isinstance(exc, PixbotError):
            log.info("%s gesture refused: %s (%s)", surface.chat.platform, exc.category, exc.detail or exc)
            return exc.public_message
        said = surface.explain(exc)
        if said is not None:
            log.warning("%s gesture: the platform refused a call: %s", surface.chat.platform, exc)
            return said
        log.error("%s gesture failed", surface.chat.platform, exc_info=exc)
        return PixbotError.default_message

    async def again(self, surface: ChatSurface, artifact_id: str, ratio: str | None = None) -> None:
        """🔁 Again and 📐 ratios: the request that made ``artifact_id``, once more, as the clicker's."""
        async def build() -> Ask:
            return _again(await self.service.past_request(artifact_id), ratio)

        await self.run(surface, build)

    async def again_job(self, surface: ChatSurface, job_id: str) -> None:
        """🔁 Again under "the bot restarted before this was finished": that job's request once more."""
        async def build() -> Ask:
            return _again(await self.service.past_job(job_id), None)

        await self.run(surface, build)

    async def notify_interrupted(self, records: Iterable[JobRecord], surface_for: SurfaceFor) -> None:
        """Jobs a crash cut short before any image was stored: each chat hears what happened, with a
        🔁 Again to ask once more (nothing is re-run unasked: the provider may have been paid)."""
        for record in records:
            try:
                surface = await surface_for(record)
                if surface is not None:
                    await surface.offer_again(wording.interrupted_text(record.prompt), record.id)
            except Exception:
                log.exception("job %s: telling its chat about the interruption failed", record.id)

    async def edit(self, surface: ChatSurface, artifact_id: str, prompt: str) -> None:
        """✏️ Edit answered with a prompt: that exact stored image, changed."""
        async def build() -> Ask:
            return Ask(prompt, "edit", (Reference(artifact_id=artifact_id),), target=artifact_id)

        await self.run(surface, build)

    # -- delivery ----------------------------------------------------------------------------
    async def deliver(self, surface: ChatSurface, result: JobResult) -> None:
        """A finished job: its images with their words and buttons, or the reasons nothing was made."""
        if not result.artifacts:
            await surface.tell(wording.failure_text(result, restarting=self.inflight.cutting))
            return
        note = result.request.origin.get("note")
        text = ResultText(result.request.prompt, edited=wording.edited_label(result),
                          ignored=result.report.summary(), failed=wording.failed_line(result),
                          note=note if isinstance(note, str) else None)
        sent = await surface.send_images(result.artifacts, text)
        await self._settle(surface, result.job_id, result.artifacts, sent)

    async def _settle(self, surface: ChatSurface, job_id: str, artifacts: Sequence[Artifact], sent: Sent) -> None:
        """Record the messages that show images (only then is the job delivered) and tell the chat about
        any image that did not go out. A job that can never go out (``gone``) is given up."""
        chat_key = surface.chat.key
        if sent.shown:
            await self.service.mark_delivered(job_id, chat_key, sent.shown)
        missing = {a.id for a in artifacts} - {artifact_id for _, artifact_id in sent.shown}
        if missing:
            await surface.tell(wording.undelivered_text(len(missing), len(artifacts), sent.error))
        if not sent.shown and sent.gone:
            await self.service.give_up(job_id, sent.error or "it cannot be posted there")

    async def deliver_pending(self, pending: Iterable[tuple[JobRecord, Sequence[Artifact]]],
                              surface_for: SurfaceFor) -> None:
        """Jobs a previous run stored but never delivered: post them now, oldest first. One that has
        nowhere to go is given up instead of being retried at every start."""
        for record, artifacts in pending:
            try:
                surface = await surface_for(record)
                if surface is None or not artifacts:
                    await self.service.give_up(record.id, "nowhere to post it" if surface is None else "no images")
                    continue
                log.info("delivering job %s after a restart", record.id)
                await surface.forget_progress()
                target = record.origin.get("target")
                text = ResultText(record.prompt, edited=target if isinstance(target, str) else None, late=True)
                sent = await surface.send_images(artifacts, text)
                if sent.shown or sent.gone:
                    await self._settle(surface, record.id, artifacts, sent)
                else:  # a passing failure: kept "stored" for the next start
                    log.warning("job %s: delivery after a restart failed, kept for the next start: %s",
                                record.id, sent.error)
            except Exception:
                log.exception("job %s: delivery after a restart failed", record.id)

    async def catch_up(self, platform: str, surface_for: SurfaceFor,
                       before: Callable[[], Awaitable[None]] | None = None) -> int:
        """One round: jobs of ``platform`` whose process is gone (a restart, a replica that died) are
        claimed by this process, then delivered or their chats told. ``before`` runs first when there is
        something to do (Discord waits for its gateway). Returns how many jobs were handled."""
        pending = await self.service.pending_deliveries(platform)
        interrupted = await self.service.take_interrupted(platform)
        if not pending and not interrupted:
            return 0
        if before is not None:
            await before()
        await self.deliver_pending(pending, surface_for)
        await self.notify_interrupted(interrupted, surface_for)
        return len(pending) + len(interrupted)

    async def keep_catching_up(self, platform: str, surface_for: SurfaceFor, stop: asyncio.Event, *,
                               every: float = CATCH_UP_S, before: Callable[[], Awaitable[None]] | None = None
                               ) -> None:
        """``catch_up`` every ``every`` seconds until ``stop``: another process's jobs, settled when it
        died (``core.watch``), reach their chats through whichever process runs this platform."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            if stop.is_set() or self.closing:
                return
            try:
                handled = await self.catch_up(platform, surface_for, before)
                if handled:
                    log.info("%s: answered %d job(s) of a process that stopped", platform, handled)
            except Exception:
                log.exception("%s: catching up with stopped processes' jobs failed", platform)

    # -- the chat's images and settings ------------------------------------------------------
    async def original(self, surface: ChatSurface, artifact_id: str) -> None:
        """📎 Original: the stored file as the provider made it."""
        artifact = await self.service.artifact(artifact_id)
        if artifact is None:
            await surface.tell("That image is no longer stored.")
            return
        try:
            key = await surface.send_original(artifact, await self.service.read(artifact))
        except PixbotError as exc:
            await surface.tell(exc.public_message)
            return
        if key is not None:
            await self.service.remember_messages(surface.chat.key, [(key, artifact.id)])

    async def show(self, surface: ChatSurface, image_id: str | None = None) -> None:
        """/last, /show <id>: the chat's last image (or that one) again, with its buttons; replying to
        it edits it."""
        try:
            artifact = (await self.own_image(surface.chat.key, image_id) if image_id
                        else await self.service.last_image(surface.chat.key))
        except InvalidRequest as exc:
            await surface.tell(exc.public_message)
            return
        if artifact is None:
            await surface.tell(wording.NO_IMAGE_YET)
            return
        sent = await surface.send_images([artifact], ResultText(f"{artifact.id}: {artifact.prompt}"))
        await self.service.remember_messages(surface.chat.key, sent.shown)

    async def own_image(self, chat_key: str, image_id: str) -> Artifact:
        """An image id someone typed: it must name an image of this chat (ids seen in /history)."""
        artifact = await self.service.artifact(image_id)
        if artifact is None or artifact.chat != chat_key:
            raise InvalidRequest(wording.unknown_image(image_id))
        return artifact

    async def typed_target(self, chat_key: str, text: str) -> tuple[Reference | None, str]:
        """``img_… rest``: the image a command names by id (refused unless it is this chat's), and the rest."""
        image_id, rest = wording.split_image_id(text)
        if image_id is None:
            return None, text
        artifact = await self.own_image(chat_key, image_id)
        return Reference(artifact_id=artifact.id), rest

    async def history(self, chat_key: str, limit: int, text_limit: int) -> str:
        return wording.history_text(await self.service.history(chat_key, limit), text_limit)

    async def cancel(self, chat: ChatRef) -> str:
        """/cancel: the asker's own running jobs in this chat (in a group, not everyone's)."""
        return wording.cancel_text(await self.service.cancel(chat.key, chat.user_key))

    async def settings_text(self, chat_key: str, *, delivery_default: str | None = None) -> str:
        """This chat's defaults; ``delivery_default`` is the platform's style (None: it has none)."""
        service = self.service
        return wording.settings_text(await service.settings(chat_key),
                                     default_ratio=service.config.image.default_aspect_ratio,
                                     model=f"{service.default_provider} / {service.default_model}",
                                     delivery_default=delivery_default)

    def ratio_note(self, ratio: str | None) -> str | None:
        """When the default model cannot make ``ratio``: say which ratio images will use instead."""
        service = self.service
        adapter = service.providers.get(service.default_provider)
        if ratio is None or adapter is None:
            return None
        ratios = adapter.capabilities(service.default_model).ratios
        if not ratios or ratio in ratios:
            return None
        nearest = nearest_ratio(ratio, ratios)
        return f"Note: {service.default_model} cannot make {ratio}; images will be {nearest}, the nearest it makes."

    async def change_setting(self, chat_key: str, name: str, value: str = "") -> ChatSettings:
        """``ar 16:9``, ``n 2``, ``style document``, any of them with ``reset``; or ``reset`` for all."""
        key = name.lower()
        if key == "reset":
            return await self.service.update_settings(chat_key, aspect_ratio=None, count=None, delivery=None)
        field = _SETTING_NAMES.get(key)
        if field is None:
            raise InvalidRequest("Settings are ar (aspect ratio), n (images per request) and style (photo, "
                                 "document or both), e.g. /settings n 2, or /settings reset.")
        reset = value.strip().lower() in _RESET
        if reset:
            return await self.service.update_settings(chat_key, **{field: None})
        if field == "aspect_ratio":
            return await self.service.update_settings(chat_key, aspect_ratio=validate_ratio(value))
        if field == "count":
            limit = self.service.max_images
            if not value.strip().isdigit():
                raise InvalidRequest(f"The image count must be a number from 1 to {limit}.")
            return await self.service.update_settings(chat_key, count=validate_count(int(value), limit))
        if value.strip().lower() not in DELIVERY_STYLES:
            raise InvalidRequest("The delivery style must be photo, document or both.")
        return await self.service.update_settings(chat_key, delivery=value.strip().lower())

    # -- shutdown ----------------------------------------------------------------------------
    async def drain(self, grace: float) -> None:
        """Refuse new gestures, let running jobs finish and be delivered within ``grace``, then stop
        the rest through the service (stored images are kept and delivered)."""
        await self.inflight.drain(self.service, grace)
