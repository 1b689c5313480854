"""ImageService: the one entry point every front-end calls. Validates, plans onto provider
capabilities, runs the slots concurrently with retries and fallbacks, stores every image that
arrives, and records the job. Pre-flight refusals raise; everything after is a JobResult."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from core.artifacts import ArtifactStore
from core.capabilities import Plan, Wanted, plan_for, validate_count, validate_prompt, validate_ratio, validate_size
from core.config import AppConfig
from core.errors import (
    ConfigError,
    InvalidRequest,
    PixbotError,
    ProviderTimeout,
    QuotaExceeded,
    RateLimited,
    Unsupported,
)
from core.jobs import JobLedger, JobRecord
from core.models import Artifact, ImageRequest, JobResult, Reference, SlotError
from core.net import RetryPolicy, with_retries
from core.provider import ImageProvider, ProviderRequest
from core.references import ReferenceResolver, ResolvedReference
from core.state import ChatState

__all__ = ["ImageService", "Progress", "ProgressCallback"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Progress:
    """Sent to a front-end as a job advances: once at the start, then per stored image."""

    job_id: str
    total: int
    stored: int
    failed: int
    provider: str
    model: str


ProgressCallback = Callable[[Progress], Awaitable[None]]


@dataclass(slots=True)
class _Job:
    record: JobRecord
    total: int
    stored: list[tuple[int, Artifact]] = field(default_factory=list)
    errors: list[SlotError] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    cancelled: bool = False


class ImageService:
    def __init__(
        self,
        config: AppConfig,
        providers: Mapping[str, ImageProvider],
        store: ArtifactStore,
        state: ChatState,
        jobs: JobLedger,
        *,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.config = config
        self.providers = dict(providers)
        self.store = store
        self.state = state
        self.jobs = jobs
        self.retry = retry or RetryPolicy()
        limits = config.limits
        self.references = ReferenceResolver(
            store, [config.media_dir, *config.storage.allowed_dirs],
            max_bytes=limits.max_reference_bytes, max_pixels=limits.max_pixels)
        self._semaphores = {name: asyncio.Semaphore(limits.concurrency) for name in self.providers}
        self._running: dict[str, set[str]] = defaultdict(set)
        self._jobs: dict[str, _Job] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    # -- queries front-ends use --------------------------------------------------------------
    @property
    def default_provider(self) -> str:
        return self.config.image.provider

    @property
    def default_model(self) -> str:
        return self.config.image.model

    def running_jobs(self, chat_key: str | None = None) -> list[str]:
        if chat_key is None:
            return list(self._jobs)
        return list(self._running.get(chat_key, ()))

    async def wait_idle(self, grace: float) -> bool:
        """Wait up to ``grace`` seconds for running jobs to finish (shutdown); True when none is left."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        return not self._jobs

    async def recover(self) -> int:
        """At start-up, before any job: settle jobs a crash or restart cut short. Jobs with images
        become deliverable; the rest fail. Returns how many were settled."""
        return len(await self.jobs.fail_interrupted())

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
        return len(removed)

    async def cancel(self, chat_key: str) -> int:
        """Cancel this chat's running jobs; images already stored are kept. Returns jobs cancelled."""
        cancelled = 0
        for job_id in list(self._running.get(chat_key, ())):
            job = self._jobs.get(job_id)
            if job is None:
                continue
            job.cancelled = True
            for task in job.tasks:
                task.cancel()
            cancelled += 1
        return cancelled

    async def mark_delivered(self, job_id: str, chat_key: str, shown: Sequence[tuple[str, str]]) -> None:
        """Record which platform message shows which artifact, as ``(message_id, artifact_id)``
        pairs; only then is the job delivered."""
        await self.state.map_messages(chat_key, shown)
        await self.jobs.deliver(job_id)

    async def pending_deliveries(self, platform: str) -> list[tuple[JobRecord, list[Artifact]]]:
        """Jobs stored but never delivered (e.g. the bot stopped mid-send), with their artifacts."""
        pending = []
        for record in await self.jobs.pending_delivery(platform):
            artifacts = [a for a in [await self.store.get(i) for i in record.artifact_ids] if a is not None]
            pending.append((record, artifacts))
        return pending

    # -- the one entry point -----------------------------------------------------------------
    async def submit(self, request: ImageRequest, *, progress: ProgressCallback | None = None,
                     enforce_limits: bool = True) -> JobResult:
        """Run one request. Raises PixbotError for refusals before any work; never after."""
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

        references = list(request.references)
        if request.mode == "edit" and not references:
            last = await self.state.last_artifact(request.chat.key)
            if last is None:
                raise InvalidRequest("There is no image in this chat to edit yet. Generate one first, or send "
                                     "the image you want to change.")
            references = [Reference(artifact_id=last)]
        if request.mode == "generate":
            references = []
        wanted = Wanted(ratio, size, count, len(references), ratio_explicit=bool(chat_ratio),
                        size_explicit=bool(request.size))
        chain = self._plan_chain(request.provider, request.model, wanted)
        resolved = await self.references.resolve_all(references)

        chat_key, user_key = request.chat.key, request.chat.user_key
        if enforce_limits:
            if len(self._running.get(chat_key, ())) >= limits.per_chat_jobs:
                raise RateLimited(f"This chat already has {limits.per_chat_jobs} jobs running. Wait for them "
                                  "to finish, or use /cancel.")
            if await self.state.try_consume(user_key, count, limits.per_user_daily) is None:
                raise QuotaExceeded(_quota_message(limits.per_user_daily))

        record = await self.jobs.create(
            chat_key=chat_key, user_key=user_key if enforce_limits else None, prompt=prompt, requested=count,
            request=_request_summary(request, chain[0], count), origin=request.origin, started=True)
        job = _Job(record, count)
        self._jobs[record.id] = job
        self._idle.clear()
        self._running[chat_key].add(record.id)
        try:
            await self._run(job, prompt, chain, resolved, request, progress)
        finally:
            self._running[chat_key].discard(record.id)
            if not self._running[chat_key]:
                del self._running[chat_key]
            del self._jobs[record.id]
            if not self._jobs:
                self._idle.set()
        return await self._finish(job, chain[0], resolved, request, enforce_limits)

    # -- planning ----------------------------------------------------------------------------
    def _plan_chain(self, provider: str | None, model: str | None, wanted: Wanted) -> list[Plan]:
        """The primary plan followed by every fallback that can serve the request."""
        image_cfg = self.config.image
        if provider is not None and provider not in self.providers:
            raise InvalidRequest(f"Unknown provider {provider!r}. Available: {', '.join(sorted(self.providers))}.")
        primary = provider or image_cfg.provider
        if model is not None:
            primary_model = model
        elif provider is None or provider == image_cfg.provider:
            primary_model = image_cfg.model
        else:
            primary_model = self.providers[primary].default_model
        candidates = [(primary, primary_model)]
        candidates += [(f.provider, f.model or self.providers[f.provider].default_model)
                       for f in image_cfg.fallbacks if f.provider in self.providers]
        plans: list[Plan] = []
        problems: list[PixbotError] = []
        for name, model_name in candidates:
            adapter = self.providers.get(name)
            if adapter is None:
                problems.append(ConfigError(f"Provider {name} is not available."))
                continue
            missing = adapter.missing()
            if missing:
                problems.append(ConfigError(f"Provider {name} is not configured: set {', '.join(missing)}."))
                continue
            try:
                plans.append(plan_for(name, model_name, adapter.capabilities(model_name), wanted))
            except Unsupported as exc:
                problems.append(exc)
        if not plans:
            raise problems[0]
        if plans[0].provider != primary or plans[0].model != primary_model:
            why = str(problems[0]) if problems else ""
            plans[0] = replace(plans[0], report=replace(
                plans[0].report, notes=(*plans[0].report.notes, f"used {plans[0].provider}/{plans[0].model}: {why}")))
        return plans

    # -- running -----------------------------------------------------------------------------
    async def _run(self, job: _Job, prompt: str, chain: list[Plan], refs: list[ResolvedReference],
                   request: ImageRequest, progress: ProgressCallback | None) -> None:
        async def on_stored(stored: int, failed: int) -> None:
            """Progress is feedback: a front-end whose status update fails must not fail the job."""
            if progress is None:
                return
            try:
                await progress(Progress(job.record.id, job.total, stored, failed, chain[0].provider, chain[0].model))
            except Exception:
                log.warning("job %s: progress callback failed", job.record.id, exc_info=True)

        await on_stored(0, 0)

        for slot in range(job.total):
            task = asyncio.create_task(self._slot(job, slot, prompt, chain, refs, request, on_stored))
            job.tasks.add(task)
        _, pending = await asyncio.wait(job.tasks, timeout=self.config.limits.job_timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        filled = {slot for slot, _ in job.stored} | {e.slot for e in job.errors}
        for slot in range(job.total):
            if slot not in filled:
                if job.cancelled:
                    job.errors.append(SlotError(slot, "internal", "Cancelled."))
                    log.info("job %s slot %d %s failed: internal (cancelled)", job.record.id, slot,
                             chain[0].provider)
                else:
                    limit = self.config.limits.job_timeout_s
                    job.errors.append(SlotError(slot, ProviderTimeout.category,
                                                f"The job took longer than {limit:g} s and was stopped.",
                                                chain[0].provider))
                    log.info("job %s slot %d %s failed: timeout (limits.jobTimeoutS %gs)", job.record.id, slot,
                             chain[0].provider, limit)

    async def _slot(self, job: _Job, slot: int, prompt: str, chain: list[Plan], refs: list[ResolvedReference],
                    request: ImageRequest, on_stored: Callable[[int, int], Awaitable[None]]) -> None:
        last_error: PixbotError | None = None
        for plan in chain:
            adapter = self.providers[plan.provider]
            call = ProviderRequest(prompt=prompt, model=plan.model, aspect_ratio=plan.aspect_ratio, size=plan.size,
                                   references=tuple(r.image for r in refs[: plan.references]))

            async def attempt(adapter: ImageProvider = adapter, call: ProviderRequest = call) -> list[bytes]:
                async with self._semaphores[adapter.name]:
                    return (await adapter.generate(call)).images

            try:
                images = await with_retries(attempt, self.retry, on_retry=_log_retry(job.record.id, slot))
            except PixbotError as exc:
                if exc.provider is None:  # e.g. the downloader's errors: say whose answer it was
                    exc.provider = plan.provider
                last_error = exc
                log.info("job %s slot %d %s failed: %s (%s)", job.record.id, slot, plan.provider, exc.category,
                         exc.detail or exc)
                if exc.retryable:
                    continue
                break
            except Exception:
                log.exception("job %s slot %d: unexpected error from %s", job.record.id, slot, plan.provider)
                last_error = PixbotError(provider=plan.provider)
                break
            for index, data in enumerate(images):
                await self._store(job, slot if index == 0 else -1, data, prompt, plan, refs, request, on_stored)
            return
        assert last_error is not None
        job.errors.append(SlotError(slot, last_error.category, str(last_error), last_error.provider))
        await on_stored(len(job.stored), len(job.errors))

    async def _store(self, job: _Job, slot: int, data: bytes, prompt: str, plan: Plan,
                     refs: list[ResolvedReference], request: ImageRequest,
                     on_stored: Callable[[int, int], Awaitable[None]]) -> None:
        """Store one image. A cancellation mid-write still records the artifact (nothing lost)."""
        save = asyncio.ensure_future(self.store.save(
            data, prompt=prompt, model=plan.model, provider=plan.provider,
            source_images=[r.source for r in refs[: plan.references]],
            parent_id=next((r.artifact_id for r in refs if r.artifact_id), None),
            job_id=job.record.id, chat=request.chat.key,
            applied=plan.report.applied, ignored=plan.report.ignored))
        try:
            artifact = await asyncio.shield(save)
        except asyncio.CancelledError:
            artifact = await save
            job.stored.append((slot, artifact))
            await self.jobs.add_artifacts(job.record.id, [artifact.id])
            raise
        except PixbotError as exc:
            log.info("job %s slot %d %s failed: %s (%s)", job.record.id, slot, plan.provider, exc.category,
                     exc.detail or exc)
            if slot >= 0:
                job.errors.append(SlotError(slot, exc.category, str(exc), plan.provider))
            return
        job.stored.append((slot, artifact))
        # Counted now: other slots may store while the ledger write below is awaited.
        counts = len(job.stored), len(job.errors)
        await self.jobs.add_artifacts(job.record.id, [artifact.id])
        await on_stored(*counts)

    async def _finish(self, job: _Job, plan: Plan, refs: list[ResolvedReference], request: ImageRequest,
                      enforce_limits: bool) -> JobResult:
        ordered = [a for _, a in sorted(job.stored, key=lambda item: (item[0] < 0, item[0]))]
        errors = sorted(job.errors, key=lambda e: e.slot)
        record_id = job.record.id
        if ordered:
            await self.jobs.advance(record_id, "stored", artifact_ids=[a.id for a in ordered],
                                    alongside=self.state.recording(request.chat.key, ordered))
        else:
            await self.jobs.advance(record_id, "failed", error=errors[0].category if errors else "internal")
        missing = job.total - min(len(ordered), job.total)
        if enforce_limits and missing and self.config.limits.per_user_daily:
            await self.state.refund(request.chat.user_key, missing)
        report = plan.report
        if ordered and (ordered[0].provider, ordered[0].model) != (plan.provider, plan.model):
            report = replace(report, notes=(*report.notes,
                                            f"fell back to {ordered[0].provider}/{ordered[0].model}"))
        edited = tuple(r.artifact_id or r.source for r in refs)
        return JobResult(record_id, request, tuple(ordered), tuple(errors), report, job.total, edited)


def _log_retry(job_id: str, slot: int) -> Callable[[PixbotError, int, float], None]:
    def on_retry(error: PixbotError, attempt: int, delay: float) -> None:
        log.info("job %s slot %d retry %d in %.1fs after %s", job_id, slot, attempt, delay, error.category)

    return on_retry


def _quota_message(limit: int) -> str:
    now = datetime.now(UTC)
    hours, rest = divmod(int((ChatState.quota_resets_at(now) - now).total_seconds()), 3600)
    return (f"You have used your {limit} images for today. The quota resets at midnight UTC "
            f"(in {hours} h {rest // 60} min).")


def _request_summary(request: ImageRequest, plan: Plan, count: int) -> dict[str, object]:
    return {"prompt": request.prompt, "mode": request.mode, "aspect_ratio": request.aspect_ratio,
            "size": request.size, "count": count, "provider": plan.provider, "model": plan.model,
            "references": [r.describe() for r in request.references]}
