"""How a long-running pixbot process gets along with the others on the same database: it says it is
alive (and what it does), takes over the jobs of processes that died (settles them, claims their
deliveries and announcements), and holds roles only one process may have at a time (the Telegram
poller). Mixed into ``ImageService`` (``Coordinating``) and run by the composition root (``watch``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Final

from core.artifacts import ArtifactStore
from core.db import utc_timestamp
from core.errors import PixbotError
from core.models import Artifact
from core.owners import owner_is_dead
from core.stores import CoordinationStore, JobRecord, JobStore, ProcessInfo, StateStore

if TYPE_CHECKING:
    from core.service import ImageService

__all__ = ["Coordinating", "watch"]

log = logging.getLogger(__name__)

#: A process not seen for this long is not listed as alive.
ALIVE_WITHIN_S: Final = 30.0


class Coordinating:
    """The service's side of coordination; without a ``CoordinationStore`` (a bare test service) each
    process behaves as if it were alone."""

    coordination: CoordinationStore | None
    owner: str
    lease_s: float
    store: ArtifactStore
    state: StateStore
    jobs: JobStore
    #: What this process does, reported with its heartbeat ("web", "telegram:poller", …).
    roles: set[str]
    #: Jobs this process ran or claimed and has not settled: never claimed again by its own catch-up.
    _handled: set[str]

    async def settle_orphans(self) -> list[JobRecord]:
        """Jobs whose process is gone: with images, stored (a front-end claims and delivers them) and in
        their chat's history; without, failed, for a front-end to tell their chat. Also run by live
        processes every few seconds, so one replica takes over another's jobs when it dies."""
        settled = await self.jobs.settle_orphans(self.owner, owner_is_dead)
        for record in settled:
            if record.artifact_ids:
                await self.state.record_artifacts(record.chat_key, await self._stored(record.artifact_ids))
        return settled

    async def pending_deliveries(self, platform: str) -> list[tuple[JobRecord, list[Artifact]]]:
        """Jobs stored but never delivered whose process is gone (the bot stopped mid-send, a replica
        died), with their artifacts: now this process's to deliver, and no other's."""
        claimed = await self.jobs.claim_deliveries(self.owner, self.lease_s, platform, owner_is_dead,
                                                   skip=self._handled)
        self._handled.update(record.id for record in claimed)
        return [(record, await self._stored(record.artifact_ids)) for record in claimed]

    async def take_interrupted(self, platform: str) -> list[JobRecord]:
        """Jobs settled as failed because their process died before any image was stored, for the
        front-end to tell their chats; each is handed to one process, once."""
        return await self.jobs.claim_announcements(platform)

    async def _stored(self, artifact_ids: Sequence[str]) -> list[Artifact]:
        """These artifacts, in order, leaving out any whose files are gone (retention, an operator)."""
        return [a for a in [await self.store.get(i) for i in artifact_ids] if a is not None]

    async def first_time(self, key: str) -> bool:
        """True once per ``key`` across every process (a Telegram update delivered to two replicas)."""
        return True if self.coordination is None else await self.coordination.claim_once(key)

    async def hold_role(self, name: str, lease_s: float) -> bool:
        """Take or keep a role one process holds at a time; renew it well within ``lease_s``."""
        if self.coordination is None:
            return True
        return await self.coordination.hold_lease(name, self.owner, lease_s, owner_is_dead)

    async def release_role(self, name: str) -> None:
        if self.coordination is not None:
            await self.coordination.release_lease(name, self.owner)

    async def deployment_setting(self, key: str, default: str) -> str:
        return default if self.coordination is None else await self.coordination.setting(key, default)

    async def processes(self) -> list[ProcessInfo]:
        return [] if self.coordination is None else await self.coordination.live_processes(ALIVE_WITHIN_S)

    async def forget_coordination_before(self, day: date) -> None:
        if self.coordination is not None:
            await self.coordination.forget_once_before(day)


async def watch(service: ImageService, stop: asyncio.Event, every: float | None = None) -> None:
    """Until ``stop``: a heartbeat with this process's roles, and the jobs of dead processes settled (their
    stored images then go out through the front-ends' catch-up; the others' chats are told)."""
    every = every if every is not None else service.lease_s / 3
    started = utc_timestamp()
    coordination = service.coordination
    while True:
        try:
            if coordination is not None:
                await coordination.heartbeat(service.owner, sorted(service.roles), started)
            settled = await service.settle_orphans()
            if settled:
                log.info("took over %d job(s) of a process that stopped", len(settled))
        except PixbotError as exc:  # a database hiccup: the next round tries again
            log.warning("could not check on other processes: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if stop.is_set():
            break
    if coordination is not None:
        with contextlib.suppress(PixbotError):
            await coordination.forget_process(service.owner)
