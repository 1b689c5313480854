"""One job's run (``JobRun``): its slots requested concurrently, each through the fallback chain with
retries (each call within ``limits.concurrency``, and ``limits.globalConcurrency`` when set: core/limits.py),
every image stored and attached to the job as it arrives, progress reported, and the slots stopped cleanly
(keeping what they stored) on a timeout or a cancellation.

The service decides whether a job may run and settles it afterwards; this only runs it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from core.artifacts import ArtifactStore
from core.capabilities import Plan
from core.errors import Cancelled, PixbotError, ProviderTimeout
from core.limits import SharedSlots
from core.models import Artifact, ImageRequest, SlotError
from core.net import RetryPolicy, with_retries
from core.provider import ImageProvider, ProviderRequest
from core.references import ResolvedReference
from core.stores import JobRecord, JobStore

__all__ = ["JobRun", "Progress", "ProgressCallback"]

#: The job lines operators grep for (docs/operations.md) keep the service's logger name.
log = logging.getLogger("core.service")


@dataclass(frozen=True, slots=True)
class Progress:
    """Sent to a front-end as a job advances: once at the start, then per stored or failed image.
    ``artifact`` is the image just stored, so a front-end can show it before the job ends."""

    job_id: str
    total: int
    stored: int
    failed: int
    provider: str
    model: str
    artifact: Artifact | None = None


ProgressCallback = Callable[[Progress], Awaitable[None]]


@dataclass(slots=True)
class JobRun:
    record: JobRecord
    total: int
    prompt: str
    chain: list[Plan]
    refs: list[ResolvedReference]
    request: ImageRequest
    providers: Mapping[str, ImageProvider]
    semaphores: Mapping[str, asyncio.Semaphore]
    retry: RetryPolicy
    store: ArtifactStore
    jobs: JobStore
    timeout_s: float
    progress: ProgressCallback | None = None
    #: ``limits.globalConcurrency``'s slots, taken after this process's semaphore; None when it is off.
    shared: SharedSlots | None = None
    #: When the job's time is up (the loop's clock), set as it starts.
    deadline: float = 0.0
    #: ``(slot, index within the slot's answer, artifact)``: a provider may return several images per call.
    stored: list[tuple[int, int, Artifact]] = field(default_factory=list)
    errors: list[SlotError] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    cancelled: bool = False

    @property
    def id(self) -> str:
        return self.record.id

    def ordered(self) -> list[Artifact]:
        """The stored images in slot order (then the order a provider returned them in)."""
        return [artifact for _, _, artifact in sorted(self.stored, key=lambda item: (item[0], item[1]))]

    def filled(self) -> set[int]:
        """Slots that stored at least one image."""
        return {slot for slot, _, _ in self.stored}

    def cancel(self) -> None:
        """Stop the slots (``service.cancel``); ``execute`` then returns with what was stored."""
        self.cancelled = True
        for task in self.tasks:
            task.cancel()

    async def execute(self) -> None:
        """Run every slot at once within the job timeout. On return each slot has an image or an error.
        If the caller is cancelled, the slots are stopped and accounted for before the cancellation goes on."""
        try:
            self.deadline = asyncio.get_running_loop().time() + self.timeout_s
            await self._report(0, 0)
            for slot in range(self.total):
                self.tasks.add(asyncio.create_task(self._slot(slot)))
            _, pending = await asyncio.wait(self.tasks, timeout=self.timeout_s)
            if pending:
                await self._stop()
        except asyncio.CancelledError:  # the caller went away: stop, keep what arrived, then go on
            self.cancelled = True
            await self._stop()
            self._account_unfilled()
            raise
        self._account_unfilled()

    async def _stop(self) -> None:
        """Cancel the slots still running and wait until each has stopped (keeping what it stored)."""
        running = {task for task in self.tasks if not task.done()}
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)

    def _account_unfilled(self) -> None:
        """An error for every slot that neither stored an image nor failed: cancelled, or timed out."""
        provider = self.chain[0].provider
        for slot in sorted(set(range(self.total)) - self.filled() - {e.slot for e in self.errors}):
            if self.cancelled:
                self.errors.append(SlotError(slot, Cancelled.category, Cancelled.default_message))
                log.info("job %s slot %d %s failed: cancelled", self.id, slot, provider)
            else:
                self.errors.append(SlotError(slot, ProviderTimeout.category,
                                             f"The job took longer than {self.timeout_s:g} s and was stopped.",
                                             provider))
                log.info("job %s slot %d %s failed: timeout (limits.jobTimeoutS %gs)", self.id, slot, provider,
                         self.timeout_s)

    async def _report(self, stored: int, failed: int, artifact: Artifact | None = None) -> None:
        """Progress is feedback: a front-end whose status update fails must not fail the job."""
        if self.progress is None:
            return
        try:
            await self.progress(Progress(self.id, self.total, stored, failed, self.chain[0].provider,
                                         self.chain[0].model, artifact))
        except Exception:
            log.warning("job %s: progress callback failed", self.id, exc_info=True)

    async def _slot(self, slot: int) -> None:
        last_error: PixbotError | None = None
        for plan in self.chain:
            adapter = self.providers[plan.provider]
            call = ProviderRequest(prompt=self.prompt, model=plan.model, aspect_ratio=plan.aspect_ratio,
                                   size=plan.size, references=tuple(r.image for r in self.refs[: plan.references]))

            async def attempt(adapter: ImageProvider = adapter, call: ProviderRequest = call) -> list[bytes]:
                async with self.semaphores[adapter.name]:
                    if self.shared is None:
                        return (await adapter.generate(call)).images
                    async with self.shared.hold(adapter.name, self.deadline):
                        return (await adapter.generate(call)).images

            try:
                images = await with_retries(attempt, self.retry, on_retry=self._log_retry(slot))
            except PixbotError as exc:
                if exc.provider is None:  # e.g. the downloader's errors: say whose answer it was
                    exc.provider = plan.provider
                last_error = exc
                log.info("job %s slot %d %s failed: %s (%s)", self.id, slot, plan.provider, exc.category,
                         exc.detail or exc)
                if exc.retryable:
                    continue
                break
            except Exception:
                log.exception("job %s slot %d: unexpected error from %s", self.id, slot, plan.provider)
                last_error = PixbotError(provider=plan.provider)
                break
            stored = 0
            for index, data in enumerate(images):
                try:
                    await self._store(slot, index, data, plan)
                    stored += 1
                except PixbotError as exc:
                    last_error = exc
                    log.info("job %s slot %d %s failed: %s (%s)", self.id, slot, plan.provider, exc.category,
                             exc.detail or exc)
            if stored:
                return
            break
        provider = self.chain[0].provider
        if last_error is None:  # the provider answered with no image at all
            last_error = PixbotError("No image came back from the image service. Try again.", provider=provider)
        self.errors.append(SlotError(slot, last_error.category, last_error.public_message,
                                     last_error.provider or provider))
        await self._report(len(self.stored), len(self.errors))

    async def _store(self, slot: int, index: int, data: bytes, plan: Plan) -> None:
        """Store one image. A cancellation mid-write still records the artifact (nothing lost)."""
        refs = self.refs
        save = asyncio.ensure_future(self.store.save(
            data, prompt=self.prompt, model=plan.model, provider=plan.provider,
            source_images=[r.source for r in refs[: plan.references]],
            parent_id=next((r.artifact_id for r in refs if r.artifact_id), None),
            job_id=self.id, chat=self.request.chat.key,
            applied=plan.report.applied, ignored=plan.report.ignored))
        try:
            artifact = await asyncio.shield(save)
        except asyncio.CancelledError:
            artifact = await save
            self.stored.append((slot, index, artifact))
            await self.jobs.add_artifacts(self.id, [artifact.id])
            raise
        self.stored.append((slot, index, artifact))
        # Counted now: other slots may store while the ledger write below is awaited.
        counts = len(self.stored), len(self.errors)
        await self.jobs.add_artifacts(self.id, [artifact.id])
        await self._report(*counts, artifact)

    def _log_retry(self, slot: int) -> Callable[[PixbotError, int, float], None]:
        def on_retry(error: PixbotError, attempt: int, delay: float) -> None:
            log.info("job %s slot %d retry %d in %.1fs after %s", self.id, slot, attempt, delay, error.category)

        return on_retry
