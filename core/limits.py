"""Limits that hold across every process sharing the state database, the service's side of them.

``limits.globalConcurrency``: at most that many provider calls in flight per provider, over all processes
(a provider key's rate limit is shared). Each call first takes the process's own ``limits.concurrency``
semaphore (so one process never asks for more than that), then one of the provider's numbered slots leased
in the database (``CoordinationStore.acquire_slot``): when none is free it asks again after a short,
growing, jittered pause (50 ms up to 500 ms), never blocking the event loop, and gives up when the job's
time (``limits.jobTimeoutS``) is up. The slot is given back when the call ends; while it runs its lease is
renewed with the job's (``ImageService._keep_leases``), and a process that dies without giving it back
loses it when the lease lapses (at once on the same machine).

``limits.perChatJobs`` is enforced by ``JobStore.create(max_running_per_chat=…)`` (``ChatBusy``), one atomic
check-and-insert in the database; the quota message lives here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Final

from core.errors import PixbotError, ProviderTimeout
from core.owners import owner_is_dead
from core.stores import CoordinationStore, OwnerCheck

__all__ = ["FIRST_PAUSE_S", "LONGEST_PAUSE_S", "NoFreeSlot", "SharedSlots", "quota_message", "slot_name"]

log = logging.getLogger(__name__)

#: The first pause before asking for a slot again, doubled after each refusal up to the longest.
FIRST_PAUSE_S: Final = 0.05
LONGEST_PAUSE_S: Final = 0.5


def slot_name(provider: str) -> str:
    """The database name of a provider's slots."""
    return f"provider:{provider}"


class NoFreeSlot(ProviderTimeout):
    """No slot of ``limits.globalConcurrency`` came free within the job's time. Not retried: the time is up."""

    retryable = False


class SharedSlots:
    """The provider slots of ``limits.globalConcurrency`` this process holds. ``capacity`` follows the
    config (the service sets it); 0 turns the shared limit off."""

    def __init__(self, coordination: CoordinationStore, owner: str, lease_s: float, capacity: int = 0,
                 is_dead: OwnerCheck = owner_is_dead) -> None:
        self.coordination = coordination
        self.owner = owner
        self.lease_s = lease_s
        self.capacity = capacity
        self.is_dead = is_dead
        #: Slots held now (``(name, slot)``), and those a failed release left behind (given back on ``renew``).
        self.held: set[tuple[str, int]] = set()
        self._unreleased: set[tuple[str, int]] = set()
        self._releasing: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def hold(self, provider: str, deadline: float) -> AsyncIterator[int]:
        """One slot of ``provider`` for the block; waits for one until ``deadline`` (the loop's clock),
        then raises ``NoFreeSlot``."""
        name = slot_name(provider)
        slot = await self._acquire(name, deadline)
        try:
            yield slot
        finally:
            release = asyncio.ensure_future(self._give_back(name, slot))
            self._releasing.add(release)
            release.add_done_callback(self._releasing.discard)
            await asyncio.shield(release)  # a cancellation mid-release still gives the slot back

    async def _acquire(self, name: str, deadline: float) -> int:
        loop = asyncio.get_running_loop()
        started, pause = loop.time(), FIRST_PAUSE_S
        while True:
            slot = await self._take(name)
            if slot is not None:
                self.held.add((name, slot))
                if pause > FIRST_PAUSE_S:
                    log.debug("slot %d of %s after waiting %.2fs", slot, name, loop.time() - started)
                return slot
            left = deadline - loop.time()
            if left <= 0:
                raise NoFreeSlot("Too many images are being made right now: this one waited its whole time for a "
                                 "turn and was stopped. Try again in a minute.",
                                 detail=f"no free slot of {name} (limits.globalConcurrency {self.capacity}) "
                                        "within the job's time")
            await asyncio.sleep(min(left, random.uniform(pause / 2, pause)))
            pause = min(LONGEST_PAUSE_S, pause * 2)

    async def _take(self, name: str) -> int | None:
        """Ask the database once. Cancelled meanwhile, the slot it may still grant is given back."""
        asking = asyncio.ensure_future(self.coordination.acquire_slot(name, self.capacity, self.owner,
                                                                      self.lease_s, self.is_dead))
        try:
            return await asyncio.shield(asking)
        except asyncio.CancelledError:
            asking.add_done_callback(lambda done: self._give_back_late(name, done))
            raise

    def _give_back_late(self, name: str, asking: asyncio.Future[int | None]) -> None:
        slot = None if asking.cancelled() or asking.exception() is not None else asking.result()
        if slot is None:
            return
        release = asyncio.ensure_future(self._give_back(name, slot))
        self._releasing.add(release)
        release.add_done_callback(self._releasing.discard)

    async def _give_back(self, name: str, slot: int) -> None:
        self.held.discard((name, slot))
        try:
            await self.coordination.release_slot(name, slot, self.owner)
        except PixbotError as exc:  # kept until the next renewal gives it back (else its lease lapses)
            log.warning("could not give back slot %d of %s: %s", slot, name, exc)
            self._unreleased.add((name, slot))

    async def renew(self) -> None:
        """Give back what a failed release left, then extend the lease of the slots held (the lease loop)."""
        for name, slot in list(self._unreleased):
            await self.coordination.release_slot(name, slot, self.owner)
            self._unreleased.discard((name, slot))
        if self.held:
            await self.coordination.renew_slots(self.owner, self.lease_s)


def _images(n: int) -> str:
    return f"{n} image" if n == 1 else f"{n} images"


def quota_message(limit: int, used: int, asked: int) -> str:
    """What is left today, against what was asked, and exactly when the count starts again."""
    now = datetime.now(UTC)
    resets = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    hours, rest = divmod(int((resets - now).total_seconds()), 3600)
    when = f"the quota resets at midnight UTC (in {hours} h {rest // 60} min)."
    left = max(0, limit - used)
    if not left:
        return f"You have used your {_images(limit)} for today: {when}"
    return f"You have {_images(left)} left today (you asked for {asked}). Ask for {left} or fewer, or wait: {when}"
