"""What several processes agree on through the database (core/stores.py ``CoordinationStore``, and the
job claims of ``JobStore``), for every engine; ``peer`` plays the other process."""

from __future__ import annotations

import asyncio
from datetime import date

from core.models import Artifact
from core.stores import JobRecord
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
