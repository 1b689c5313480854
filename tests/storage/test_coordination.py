"""What several processes agree on through the database (core/stores.py ``CoordinationStore``, and the
job claims of ``JobStore``), for every engine; ``peer`` plays the other process."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from core.errors import RateLimited
from core.models import Artifact
from core.stores import ChatBusy, JobRecord
from tests.storage.conftest import Stores

CHAT = "telegram:1"


def _never(owner: str) -> bool:
    return False


def _always(owner: str) -> bool:
    return True


async def _stored_job(stores: Stores, owner: str, lease_s: float, chat_key: str = CHAT) -> JobRecord:
    job = await stores.jobs.create(chat_key=chat_key, user_key=None, prompt="a fox", requested=1, request={},
                                   started=True, owner=owner, lease_s=lease_s)
    artifact = Artifact(id="img_" + job.id.removeprefix("job_")[:12].rjust(12, "0"), path="/m/a.png",
                        mime="image/png", prompt="a fox", model="m", provider="p", source_images=(),
                        created_at="2026-12-05T10:00:00+00:00")
    return await stores.jobs.complete_job(job.id, chat_key, [artifact])


async def test_once_keys_are_claimed_by_exactly_one_process(stores: Stores, peer: Stores) -> None:
    results = await asyncio.gather(*(s.coordination.claim_once("telegram:1:update:42")
                                     for s in (stores, peer, stores, peer)))
    assert sorted(results) == [False, False, False, True]
    assert await peer.coordination.claim_once("telegram:1:update:43") is True
    assert await stores.coordination.forget_once_before(date(2000, 1, 1)) == 0
    assert await stores.coordination.forget_once_before(date(2999, 1, 1)) == 2
    assert await stores.coordination.claim_once("telegram:1:update:42") is True  # forgotten: new again


async def test_the_first_setting_written_wins(stores: Stores, peer: Stores) -> None:
    first, second = await asyncio.gather(stores.coordination.setting("data_dir_id", "aaa"),
                                         peer.coordination.setting("data_dir_id", "bbb"))
    assert first == second and first in ("aaa", "bbb")
    assert await peer.coordination.setting("data_dir_id", "ccc") == first


async def test_a_lease_is_held_by_one_owner_until_it_lapses_is_released_or_its_owner_dies(
        stores: Stores, peer: Stores) -> None:
    assert await stores.coordination.hold_lease("poller", "A", 30, _never) is True
    assert await peer.coordination.hold_lease("poller", "B", 30, _never) is False
    assert await stores.coordination.hold_lease("poller", "A", 30, _never) is True  # renewal
    assert await peer.coordination.hold_lease("poller", "B", 30, _always) is True  # A is gone
    assert await stores.coordination.hold_lease("poller", "A", 30, _never) is False
    await stores.coordination.release_lease("poller", "A")  # not A's: nothing happens
    assert await stores.coordination.hold_lease("poller", "A", 30, _never) is False
    await peer.coordination.release_lease("poller", "B")
    assert await stores.coordination.hold_lease("poller", "A", 0.05, _never) is True
    await asyncio.sleep(0.1)  # A's short lease lapses
    assert await peer.coordination.hold_lease("poller", "B", 30, _never) is True
    racers = await asyncio.gather(*(s.coordination.hold_lease("other", owner, 30, _never)
                                    for s, owner in ((stores, "A"), (peer, "B"), (stores, "C"), (peer, "D"))))
    assert sorted(racers) == [False, False, False, True]


async def test_live_processes_are_listed_with_their_roles(stores: Stores, peer: Stores) -> None:
    await stores.coordination.heartbeat("A", ["web", "telegram:poller"], "2026-12-05T10:00:00+00:00")
    await peer.coordination.heartbeat("B", ["telegram:standby"], "2026-12-05T10:00:01+00:00")
    await peer.coordination.heartbeat("B", ["telegram:poller"], "2026-12-05T10:00:01+00:00")
    listed = await stores.coordination.live_processes(30)
    assert [(p.owner, p.roles) for p in listed] == [("A", ("web", "telegram:poller")), ("B", ("telegram:poller",))]
    await peer.coordination.forget_process("A")
    assert [p.owner for p in await stores.coordination.live_processes(30)] == ["B"]
    assert await stores.coordination.live_processes(-60) == []  # nobody seen in the future


async def test_stored_jobs_of_a_gone_owner_are_claimed_once_and_a_live_owners_are_left_alone(
        stores: Stores, peer: Stores) -> None:
    live = await _stored_job(stores, "A", 30)
    gone = await _stored_job(stores, "Z", 30)
    lapsed = await _stored_job(stores, "Y", 0.05)
    elsewhere = await _stored_job(stores, "Z", 30, chat_key="discord:5")
    await asyncio.sleep(0.1)

    def dead(owner: str) -> bool:
        return owner == "Z"

    first, second = await asyncio.gather(stores.jobs.claim_deliveries("B", 30, "telegram", dead),
                                         peer.jobs.claim_deliveries("C", 30, "telegram", dead))
    claimed = first + second
    assert sorted(j.id for j in claimed) == sorted([gone.id, lapsed.id])  # each once, A's left alone
    assert {j.owner for j in claimed} <= {"B", "C"} and all(j.status == "stored" for j in claimed)
    assert await stores.jobs.claim_deliveries("D", 30, "telegram", dead) == []  # now held by live B or C
    assert [j.id for j in await stores.jobs.claim_deliveries("B", 30, "discord", dead)] == [elsewhere.id]
    # An owner's own stored job: claimed again unless it says it is working on it.
    assert await stores.jobs.claim_deliveries("A", 30, "telegram", _never, skip={live.id}) == []
    assert [j.id for j in await stores.jobs.claim_deliveries("A", 30, "telegram", _never)] == [live.id]


async def test_jobs_cut_short_without_images_are_announced_once(stores: Stores, peer: Stores) -> None:
    await stores.jobs.create(chat_key=CHAT, user_key=None, prompt="a fox", requested=1, request={}, started=True,
                             owner="Z", lease_s=30)
    with_image = await _stored_job(stores, "Z", 30)
    other = await stores.jobs.create(chat_key="web:t1", user_key=None, prompt="a cat", requested=1, request={},
                                     started=True, owner="Z", lease_s=30)
    settled = await peer.jobs.settle_orphans("B", _always)
    assert {j.status for j in settled} == {"failed"}  # the stored one was already settled
    assert with_image.id not in {j.id for j in settled}
    first, second = await asyncio.gather(stores.jobs.claim_announcements("telegram"),
                                         peer.jobs.claim_announcements("telegram"))
    (told,) = first + second
    assert told.prompt == "a fox" and told.status == "failed"
    assert await stores.jobs.claim_announcements("telegram") == []
    assert [j.id for j in await peer.jobs.claim_announcements("web")] == [other.id]


# -- limits.globalConcurrency: numbered slots leased in the database ---------------------------------------

async def test_slots_are_handed_out_up_to_the_capacity_and_no_further(stores: Stores, peer: Stores) -> None:
    """Eight callers on two connections race for three slots, many times over: never more than three held."""
    for round_ in range(5):
        name = f"provider:round{round_}"
        granted = await asyncio.gather(*(s.coordination.acquire_slot(name, 3, f"P{i}", 30, _never)
                                         for i, s in enumerate([stores, peer] * 4)))
        taken = [slot for slot in granted if slot is not None]
        assert sorted(taken) == [0, 1, 2], granted  # each slot to exactly one caller
        assert await peer.coordination.acquire_slot(name, 3, "late", 30, _never) is None


async def test_a_released_slot_is_free_again_and_only_its_owner_releases_it(stores: Stores, peer: Stores) -> None:
    assert await stores.coordination.acquire_slot("provider:p", 2, "A", 30, _never) == 0
    assert await stores.coordination.acquire_slot("provider:p", 2, "A", 30, _never) == 1  # an owner may hold several
    assert await peer.coordination.acquire_slot("provider:p", 2, "B", 30, _never) is None
    await peer.coordination.release_slot("provider:p", 0, "B")  # not B's: nothing happens
    assert await peer.coordination.acquire_slot("provider:p", 2, "B", 30, _never) is None
    await stores.coordination.release_slot("provider:p", 0, "A")
    assert await peer.coordination.acquire_slot("provider:p", 2, "B", 30, _never) == 0
    assert await stores.coordination.acquire_slot("provider:other", 1, "A", 30, _never) == 0  # names are apart
    assert await stores.coordination.acquire_slot("provider:p", 0, "A", 30, _never) is None  # no capacity


async def test_a_lapsed_slot_is_taken_over_unless_renewed(stores: Stores, peer: Stores) -> None:
    assert await stores.coordination.acquire_slot("provider:p", 1, "A", 0.3, _never) == 0
    assert await stores.coordination.acquire_slot("provider:q", 1, "A", 0.3, _never) == 0
    await asyncio.sleep(0.15)
    assert await stores.coordination.renew_slots("A", 0.3) == 2
    await asyncio.sleep(0.2)  # past the first lease, within the renewed one
    assert await peer.coordination.acquire_slot("provider:p", 1, "B", 30, _never) is None
    await asyncio.sleep(0.2)  # the renewed lease lapses too
    assert await peer.coordination.acquire_slot("provider:p", 1, "B", 30, _never) == 0
    assert await stores.coordination.renew_slots("A", 30) == 1  # only provider:q is still A's
    await stores.coordination.release_slot("provider:p", 0, "A")  # too late: B's now
    assert await stores.coordination.acquire_slot("provider:p", 1, "C", 30, _never) is None


async def test_a_dead_owners_slot_is_taken_over_at_once(stores: Stores, peer: Stores) -> None:
    assert await stores.coordination.acquire_slot("provider:p", 2, "Z", 30, _never) == 0
    assert await stores.coordination.acquire_slot("provider:p", 2, "A", 30, _never) == 1

    def dead(owner: str) -> bool:
        return owner == "Z"

    assert await peer.coordination.acquire_slot("provider:p", 2, "B", 30, _never) is None
    assert await peer.coordination.acquire_slot("provider:p", 2, "B", 30, dead) == 0
    assert await peer.coordination.acquire_slot("provider:p", 2, "C", 30, dead) is None  # B is alive
    await stores.coordination.release_slot("provider:p", 0, "Z")  # the dead owner's late release changes nothing
    assert await peer.coordination.acquire_slot("provider:p", 2, "C", 30, _always) == 0  # everyone gone


async def test_slots_held_beyond_a_lowered_capacity_still_count(stores: Stores, peer: Stores) -> None:
    """After the capacity was lowered from 3 to 2, slot 2 (still held) counts against the new limit."""
    for owner in "ABC":
        await stores.coordination.acquire_slot("provider:p", 3, owner, 30, _never)
    await stores.coordination.release_slot("provider:p", 0, "A")
    await stores.coordination.release_slot("provider:p", 1, "B")
    assert await peer.coordination.acquire_slot("provider:p", 2, "D", 30, _never) == 0
    assert await peer.coordination.acquire_slot("provider:p", 2, "E", 30, _never) is None  # D and C hold 2


async def test_slots_are_taken_over_from_lapsed_holders_by_exactly_one_racer(stores: Stores, peer: Stores) -> None:
    for slot in range(3):
        assert await stores.coordination.acquire_slot("provider:p", 3, f"old{slot}", 0.05, _never) == slot
    await asyncio.sleep(0.1)
    granted = await asyncio.gather(*(s.coordination.acquire_slot("provider:p", 3, f"N{i}", 30, _never)
                                     for i, s in enumerate([stores, peer] * 4)))
    assert sorted(slot for slot in granted if slot is not None) == [0, 1, 2]


# -- limits.perChatJobs: counted and created in one atomic step --------------------------------------------

async def _create(stores: Stores, chat_key: str = CHAT, limit: int = 2, owner: str = "A",
                  lease_s: float = 30) -> JobRecord:
    return await stores.jobs.create(chat_key=chat_key, user_key=None, prompt="a fox", requested=1, request={},
                                    started=True, owner=owner, lease_s=lease_s, max_running_per_chat=limit)


async def test_racing_creations_in_one_chat_never_pass_the_limit(stores: Stores, peer: Stores) -> None:
    for limit in (1, 3):
        chat = f"telegram:race{limit}"
        outcomes = await asyncio.gather(*(_create(s, chat, limit, owner=f"P{i}") for i, s in
                                          enumerate([stores, peer] * 5)), return_exceptions=True)
        created = [o for o in outcomes if isinstance(o, JobRecord)]
        refused = [o for o in outcomes if not isinstance(o, JobRecord)]
        assert len(created) == limit and all(isinstance(o, ChatBusy) for o in refused), outcomes
        assert len([j for j in await stores.jobs.for_chat(chat) if j.status == "generating"]) == limit


async def test_the_per_chat_limit_counts_live_unsettled_jobs_only(stores: Stores, peer: Stores) -> None:
    first = await _create(stores, limit=2)
    await _create(peer, limit=2, owner="B")
    with pytest.raises(ChatBusy) as busy:
        await _create(stores, limit=2)
    assert isinstance(busy.value, RateLimited) and busy.value.limit == 2
    assert str(busy.value) == "This chat already has 2 jobs running. Wait for one to finish, or cancel it."
    assert len(await stores.jobs.for_chat(CHAT)) == 2  # nothing created
    await _create(peer, chat_key="telegram:2", limit=2)  # another chat has its own count
    await stores.jobs.create(chat_key=CHAT, user_key=None, prompt="p", requested=1, request={})  # no limit asked
    await stores.jobs.fail(first.id, "made nothing")  # settled: no longer counts
    lapsing = await _create(peer, limit=3, lease_s=0.05)  # the queued job above has no lease: not counted
    with pytest.raises(ChatBusy):
        await _create(stores, limit=2)
    await asyncio.sleep(0.1)  # a lapsed lease (its process gone) does not hold the chat
    await _create(stores, limit=2)
    assert lapsing.id in {j.id for j in await stores.jobs.unsettled()}
