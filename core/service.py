"""ImageService: the one entry point every front-end calls. Validates, plans onto provider
capabilities, enforces the limits, records the job, has it run (``core/slots.py``: the slots
concurrently, with retries and fallbacks, every image stored as it arrives) and settles it.
Pre-flight refusals raise; everything after is a JobResult.

Front-ends use only the service's own methods (its read side for studios: ``core/gallery.py``): the stores
behind it (``StateStore``, ``JobStore``, the ``ArtifactStore``) are its business, so another storage engine
changes nothing in ``bots/``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from core.artifacts import ArtifactStore
from core.capabilities import (
    Wanted,
    ratio_of,
    validate_count,
    validate_prompt,
    validate_ratio,
    validate_size,
)
from core.config import AppConfig
from core.errors import (
    InvalidRequest,
    NothingToEdit,
    PixbotError,
    QuotaExceeded,
)
from core.events import EventBus, LocalEventBus
from core.gallery import Browsing
from core.limits import SharedSlots, quota_message
from core.models import Artifact, ImageRequest, JobResult, Reference, RequestSummary
from core.net import RetryPolicy
from core.owners import this_owner
from core.past import PastRequest
from core.planning import plan_chain
from core.provider import ImageProvider
from core.references import ReferenceResolver
from core.slots import JobRun, Progress, ProgressCallback
from core.stores import ChatBusy, ChatSettings, CoordinationStore, HistoryEntry, JobRecord, JobStore, StateStore
from core.watch import Coordinating

__all__ = ["LEASE_S", "ImageService", "PastRequest", "Progress", "ProgressCallback"]

log = logging.getLogger(__name__)

#: How long a job's claim lasts without renewal; a running service renews every third of it, so
#: another process can take over a dead process's jobs within this time.
LEASE_S = 20.0
#: What ``keep_upload`` records as an uploaded image's provider.
UPLOAD_PROVIDER = "upload"


class ImageService(Browsing, Coordinating):
    def __init__(
        self,
        config: AppConfig,
        providers: Mapping[str, ImageProvider],
        store: ArtifactStore,
        state: StateStore,
        jobs: JobStore,
        *,
        retry: RetryPolicy | None = None,
        owner: str | None = None,
        lease_s: float = LEASE_S,
        coordination: CoordinationStore | None = None,
    ) -> None:
        self.config = config
        self.providers = dict(providers)
        self.store = store
        self.state = state
        self.jobs = jobs
        self.retry = retry or RetryPolicy()
        #: This process, as recorded on the jobs it runs.
        self.owner = owner or this_owner()
        self.lease_s = lease_s
        self.coordination = coordination
        self.roles: set[str] = set()
        #: Jobs this service ran or claimed and has not settled: never claimed again by its own catch-up
        #: (a delivery of them may be under way), and their leases are renewed while it lives.
        self._handled: set[str] = set()
        limits = config.limits
        self.references = ReferenceResolver(
            store, [config.media_dir, *config.storage.allowed_dirs],
            max_bytes=limits.max_reference_bytes, max_pixels=limits.max_pixels)
        self._semaphores = {name: asyncio.Semaphore(limits.concurrency) for name in self.providers}
        #: ``limits.globalConcurrency``'s provider slots (core/limits.py); a bare service has no database to share.
        self._shared = None if coordination is None else SharedSlots(coordination, self.owner, lease_s,
                                                                     limits.global_concurrency)
        self._running: dict[str, set[str]] = defaultdict(set)
        self._active: dict[str, JobRun] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._lease_keeper: asyncio.Task[None] | None = None
        #: Which engine holds the stores (set by the composition root; shown by ``pixbot doctor``).
        self.storage_info: dict[str, object] = {}
        #: Live events (a studio thread's progress): the storage's bus, shared by every process on
        #: PostgreSQL (set by the composition root); this process's own until then.
        self.events: EventBus = LocalEventBus()

    # -- what front-ends ask -----------------------------------------------------------------
    @property
    def default_provider(self) -> str:
        return self.config.image.provider

    @property
    def default_model(self) -> str:
        return self.config.image.model

    @property
    def max_images(self) -> int:
        """``tools.imageGeneration.maxImagesPerTurn``: the most images one request may ask for."""
        return self.config.image.max_images_per_turn

    def reconfigure(self, config: AppConfig, providers: Mapping[str, ImageProvider]) -> None:
        """Take a new config and its providers (the studio's set-up page saved one): new jobs use them,
        running jobs finish with the adapters they started with. Storage settings need a restart."""
        self.config = config
        self.providers = dict(providers)
        for name in self.providers:
            self._semaphores.setdefault(name, asyncio.Semaphore(config.limits.concurrency))
        if self._shared is not None:
            self._shared.capacity = config.limits.global_concurrency

    def running_jobs(self, chat_key: str | None = None) -> list[str]:
        if chat_key is None:
            return list(self._active)
        return list(self._running.get(chat_key, ()))

    async def artifact(self, artifact_id: str) -> Artifact | None:
        """A stored image by id; None for an unknown id or anything that is not an id."""
        return await self.store.get(artifact_id)  # the store refuses anything that is not an id

    async def read(self, artifact: Artifact) -> bytes:
        """A stored image's bytes, exactly as the provider made them."""
        return await self.store.read(artifact)

    async def last_image(self, chat_key: str) -> Artifact | None:
        last = await self.state.last_artifact(chat_key)
        return await self.store.get(last) if last else None

    async def history(self, chat_key: str | None, limit: int = 10) -> list[HistoryEntry]:
        return await self.state.history(chat_key, limit)

    async def settings(self, chat_key: str) -> ChatSettings:
        return await self.state.settings(chat_key)

    async def update_settings(self, chat_key: str, **changes: object) -> ChatSettings:
        """Change a chat's defaults (None clears one). A count above today's maximum is refused."""
        count = changes.get("count")
        if isinstance(count, int) and not isinstance(count, bool):
            validate_count(count, self.max_images)
        return await self.state.update_settings(chat_key, **changes)

    async def image_for_message(self, chat_key: str, message_key: str) -> str | None:
        """The artifact a platform message shows (``message_key`` as the front-end recorded it)."""
        return await self.state.artifact_for_message(chat_key, message_key)

    async def remember_messages(self, chat_key: str, shown: Sequence[tuple[str, str]]) -> None:
        """Record ``(message_key, artifact_id)`` pairs for messages that are not a job's delivery
        (an original sent on request, a "what should change?" prompt)."""
        await self.state.map_messages(chat_key, shown)

    async def past_request(self, artifact_id: str) -> PastRequest:
        """What made ``artifact_id``; refuses plainly when the image is no longer stored."""
        artifact = await self.artifact(artifact_id)
        if artifact is None:
            raise InvalidRequest("That image is no longer stored, so it cannot be made again.")
        record = await self.jobs.get(artifact.job_id) if artifact.job_id else None
        summary = RequestSummary.from_dict(record.request) if record is not None else None
        return PastRequest(artifact, summary, dict(record.origin) if record is not None else {})

    async def past_job(self, job_id: str) -> PastRequest:
        """What a job was asked (for Again on a job that made nothing); refuses an unknown job plainly."""
        record = await self.jobs.get(job_id)
        if record is None:
            raise InvalidRequest("That request is no longer recorded, so it cannot be made again.")
        return PastRequest(None, RequestSummary.from_dict(record.request), dict(record.origin))

    async def annotate_job(self, job_id: str, **origin: object) -> None:
        """Note front-end data on a running job (the progress message it posted), so a later run can
        tidy up after a crash."""
        await self.jobs.annotate(job_id, origin)

    async def keep_upload(self, reference: Reference, chat_key: str) -> Reference:
        """Store an image a chat user sent, so the job's record points at it and Again can use it
        again after any restart, on any platform. Other references are returned unchanged."""
        if reference.data is None:
            return reference
        kept = await self.store.save(reference.data, prompt="", model="", provider=UPLOAD_PROVIDER,
                                     source_images=[f"upload:{reference.name or 'image'}"], chat=chat_key)
        return Reference(artifact_id=kept.id, name=reference.name)

    # -- delivery bookkeeping ----------------------------------------------------------------
    async def mark_delivered(self, job_id: str, chat_key: str, shown: Sequence[tuple[str, str]]) -> None:
        """Record which platform message shows which artifact, as ``(message_key, artifact_id)``
        pairs; only then is the job delivered."""
        await self.state.map_messages(chat_key, shown)
        await self.jobs.deliver(job_id)
        self._handled.discard(job_id)

    async def give_up(self, job_id: str, why: str) -> None:
        """A stored job that can never reach its chat (the chat is gone): stop retrying it."""
        log.warning("job %s: giving up on delivery: %s", job_id, why)
        with contextlib.suppress(ValueError, KeyError):  # already settled by another delivery
            await self.jobs.fail(job_id, f"undeliverable: {why}"[:200])
        self._handled.discard(job_id)


    # -- lifecycle ---------------------------------------------------------------------------
    async def wait_idle(self, grace: float) -> bool:
        """Wait up to ``grace`` seconds for running jobs to finish (shutdown); True when none is left."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        return not self._active

    async def recover(self) -> list[JobRecord]:
        """Settle jobs no live process works on (a crash, a restart, a dead replica): those with
        images become deliverable and enter their chat's history, the rest fail. Jobs of processes
        that are alive, including this one, are left alone. Then ``backfill`` (gallery details)."""
        settled = await self.settle_orphans()
        await self.backfill()
        return settled

    async def prune(self, days: int | None = None) -> int:
        """Retention: delete images stored more than ``days`` UTC days ago (default
        ``storage.retentionDays``; 0 keeps everything), forget them in chat state, and drop the
        usage and job rows of those days too."""
        days = self.config.storage.retention_days if days is None else days
        if days <= 0:
            return 0
        cutoff = datetime.now(UTC).date() - timedelta(days=days)
        removed = await self.store.prune(cutoff)
        await self.state.forget_artifacts(removed)
        await self.state.forget_usage_before(cutoff)
        await self.jobs.forget_before(cutoff)
        await self.forget_coordination_before(cutoff)
        return len(removed)

    async def cancel(self, chat_key: str | None = None, user_key: str | None = None) -> int:
        """Cancel this chat's running jobs (every job with None), only ``user_key``'s when given;
        images already stored are kept and delivered. Returns how many jobs were cancelled."""
        ids = list(self._active) if chat_key is None else list(self._running.get(chat_key, ()))
        cancelled = 0
        for job_id in ids:
            job = self._active.get(job_id)
            if job is None or (user_key is not None and job.record.user_key not in (user_key, None)):
                continue
            job.cancel()
            cancelled += 1
        return cancelled

    # -- the one entry point -----------------------------------------------------------------
    async def submit(self, request: ImageRequest, *, progress: ProgressCallback | None = None,
                     enforce_limits: bool = True) -> JobResult:
        """Run one request. Raises PixbotError for refusals before any work; never after.

        Safe to cancel: the slots are stopped, images already stored are kept and the job is
        settled in the ledger before the cancellation goes on."""
        image_cfg, limits = self.config.image, self.config.limits
        prompt = validate_prompt(request.prompt, limits.max_prompt_chars)
        settings = await self.state.settings(request.chat.key)
        # ``count=0`` is a request for zero images (refused), not "the default". A chat's stored default
        # is capped at today's limit: the operator may have lowered maxImagesPerTurn since it was set.
        wanted_count = (request.count if request.count is not None
                        else min(settings.count or 1, image_cfg.max_images_per_turn))
        count = validate_count(wanted_count, image_cfg.max_images_per_turn)
        chat_ratio = request.aspect_ratio or settings.aspect_ratio
        ratio = validate_ratio(chat_ratio) if chat_ratio else (image_cfg.default_aspect_ratio or None)
        size = validate_size(request.size) if request.size else (image_cfg.default_image_size or None)

        references = list(await self._with_last(request))
        if request.mode == "generate":
            references = []
        resolved = await self.references.resolve_all(references)
        from_source = not chat_ratio and bool(resolved) and resolved[0].width > 0 and resolved[0].height > 0
        if from_source:  # an edit keeps the shape of the image it changes, unless a ratio was asked for
            ratio = ratio_of(resolved[0].width, resolved[0].height)
        wanted = Wanted(ratio, size, count, len(references), ratio_explicit=bool(chat_ratio) or from_source,
                        size_explicit=bool(request.size), ratio_from_source=from_source)
        chain = plan_chain(self.config.image, self.providers, request.provider, request.model, wanted)

        chat_key, user_key = request.chat.key, request.chat.user_key
        if enforce_limits:
            if len(self._running.get(chat_key, ())) >= limits.per_chat_jobs:  # this process's own: no need to ask
                raise ChatBusy(limits.per_chat_jobs)
            if await self.state.try_consume(user_key, count, limits.per_user_daily) is None:
                used = await self.state.usage_today(user_key)
                raise QuotaExceeded(quota_message(limits.per_user_daily, used, count))

        summary = RequestSummary(prompt=request.prompt, mode=request.mode, count=count, provider=chain[0].provider,
                                 model=chain[0].model, aspect_ratio=request.aspect_ratio, size=request.size,
                                 references=tuple(r.artifact_id or r.source for r in resolved))
        try:  # the per-chat limit over every process: counted and recorded in one atomic step
            record = await self.jobs.create(
                chat_key=chat_key, user_key=user_key if enforce_limits else None, prompt=prompt, requested=count,
                request=summary.to_dict(), origin=request.origin, started=True, owner=self.owner,
                lease_s=self.lease_s, max_running_per_chat=limits.per_chat_jobs if enforce_limits else 0)
        except ChatBusy:
            await self.state.refund(user_key, count)  # nothing was made
            raise
        shared = self._shared if self._shared and self._shared.capacity else None  # off: not in the way
        run = JobRun(record, count, prompt, chain, resolved, request, self.providers, self._semaphores,
                     self.retry, self.store, self.jobs, limits.job_timeout_s, progress, shared)
        self._begin(run, chat_key)
        try:
            try:
                await run.execute()
            except asyncio.CancelledError:  # the caller went away: the slots are stopped; settle, then go on
                await self._finish(run, enforce_limits)
                raise
            return await self._finish(run, enforce_limits)
        finally:
            self._end(run, chat_key)

    async def _with_last(self, request: ImageRequest) -> tuple[Reference, ...]:
        """The request's references, with the chat's last image where the request means it: an edit
        that names no image, or ``include_last``."""
        if request.mode == "generate" or (request.references and not request.include_last):
            return request.references
        if request.mode != "edit" and not request.include_last:
            return request.references
        last = await self.state.last_artifact(request.chat.key)
        if last is None:
            raise NothingToEdit()
        return (Reference(artifact_id=last), *request.references)

    def _begin(self, job: JobRun, chat_key: str) -> None:
        self._active[job.record.id] = job
        self._handled.add(job.record.id)
        self._running[chat_key].add(job.record.id)
        self._idle.clear()
        if self._lease_keeper is None or self._lease_keeper.done():
            self._lease_keeper = asyncio.create_task(self._keep_leases(), name="pixbot-leases")

    def _end(self, job: JobRun, chat_key: str) -> None:
        self._running[chat_key].discard(job.record.id)
        if not self._running[chat_key]:
            del self._running[chat_key]
        del self._active[job.record.id]
        if not job.stored:  # nothing to deliver: nothing for this process to hold on to
            self._handled.discard(job.record.id)
        if not self._active:
            self._idle.set()

    async def _keep_leases(self) -> None:
        """Renew this process's claim on its running jobs (and on their provider slots) while there are any."""
        while self._active:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), self.lease_s / 3)
            if not self._active:
                return
            try:
                await self.jobs.renew(self.owner, self.lease_s)
                if self._shared is not None:
                    await self._shared.renew()
            except PixbotError as exc:  # a database hiccup: the next round tries again
                log.warning("could not renew job leases: %s", exc)

    # -- running -----------------------------------------------------------------------------
    async def _finish(self, run: JobRun, enforce_limits: bool) -> JobResult:
        """Settle the job in the ledger (stored with its images, or failed), refund what was not made."""
        ordered, filled = run.ordered(), run.filled()
        errors = sorted((e for e in run.errors if e.slot not in filled), key=lambda e: e.slot)
        request, plan = run.request, run.chain[0]
        if ordered:
            await self.jobs.complete_job(run.id, request.chat.key, ordered)
        else:
            await self.jobs.fail(run.id, errors[0].category if errors else "internal")
        missing = run.total - min(len(filled), run.total)
        if enforce_limits and missing and self.config.limits.per_user_daily:
            await self.state.refund(request.chat.user_key, missing)
        report = plan.report
        if ordered and (ordered[0].provider, ordered[0].model) != (plan.provider, plan.model):
            report = replace(report, notes=(*report.notes,
                                            f"fell back to {ordered[0].provider}/{ordered[0].model}"))
        edited = tuple(r.artifact_id or r.source for r in run.refs)
        return JobResult(run.id, request, tuple(ordered), tuple(errors), report, run.total, edited)
