"""The storage contract (core/stores.py), through the protocol methods only, for every engine."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import pytest

from core.errors import InvalidRequest
from core.models import Artifact
from core.stores import ChatSettings, JobRecord
from tests.storage.conftest import Stores

CHAT, OTHER = "telegram:1", "discord:2"


def _artifact(n: int, job_id: str | None = None) -> Artifact:
    artifact_id = f"img_{n:012x}"
    return Artifact(id=artifact_id, path=f"/media/{artifact_id}.png", mime="image/png", prompt=f"picture {n}",
                    model="m", provider="p", source_images=(), created_at=f"2026-12-05T10:00:{n:02d}+00:00",
                    job_id=job_id)


async def _job(stores: Stores, chat_key: str = CHAT, *, owner: str | None = "me", lease_s: float = 30.0,
               started: bool = True) -> JobRecord:
    return await stores.jobs.create(chat_key=chat_key, user_key=f"{chat_key}-user", prompt="a fox", requested=2,
                                    request={"prompt": "a fox", "count": 2}, origin={"reply_to": 7},
                                    started=started, owner=owner, lease_s=lease_s)


def _never(owner: str) -> bool:
    return False


# -- chats -----------------------------------------------------------------------------------
async def test_settings_round_trip_and_reject_bad_values(stores: Stores) -> None:
    assert await stores.state.settings(CHAT) == ChatSettings()
    changed = await stores.state.update_settings(CHAT, aspect_ratio="16:9", count=2)
    assert changed == ChatSettings("16:9", 2, None) == await stores.state.settings(CHAT)
    assert await stores.state.update_settings(CHAT, delivery="document") == ChatSettings("16:9", 2, "document")
    assert await stores.state.update_settings(CHAT, aspect_ratio=None) == ChatSettings(None, 2, "document")
    for bad in ({"aspect_ratio": "wide"}, {"count": 0}, {"delivery": "fax"}):
        with pytest.raises(InvalidRequest):
            await stores.state.update_settings(CHAT, **bad)
    with pytest.raises(TypeError):
        await stores.state.update_settings(CHAT, colour="red")
    assert await stores.state.settings(OTHER) == ChatSettings()


async def test_history_is_newest_first_per_chat_and_recording_is_idempotent(stores: Stores) -> None:
    await stores.state.record_artifacts(CHAT, [_artifact(1), _artifact(2)])
    await stores.state.record_artifacts(OTHER, [_artifact(3)])
    await stores.state.record_artifacts(CHAT, [_artifact(2)])  # again: no duplicate
    assert [e.artifact_id for e in await stores.state.history(CHAT)] == [_artifact(2).id, _artifact(1).id]
    assert [e.artifact_id for e in await stores.state.history(None, 2)] == [_artifact(3).id, _artifact(2).id]
    assert await stores.state.last_artifact(CHAT) == _artifact(2).id
    assert await stores.state.last_artifact(OTHER) == _artifact(3).id
    assert await stores.state.history(CHAT, 0) == []


async def test_a_later_mapping_of_a_message_wins(stores: Stores) -> None:
    await stores.state.map_messages(CHAT, [("m1", "img_a"), ("m2", "img_b")])
    await stores.state.map_messages(CHAT, [("m1", "img_c")])
    assert await stores.state.artifact_for_message(CHAT, "m1") == "img_c"
    assert await stores.state.artifact_for_message(CHAT, "m2") == "img_b"
    assert await stores.state.artifact_for_message(OTHER, "m1") is None


async def test_forgetting_images_clears_history_messages_and_last_image(stores: Stores) -> None:
    first, second = _artifact(1), _artifact(2)
    await stores.state.record_artifacts(CHAT, [first, second])
    await stores.state.map_messages(CHAT, [("m1", first.id), ("m2", second.id)])
    await stores.state.forget_artifacts([second.id])
    assert [e.artifact_id for e in await stores.state.history(CHAT)] == [first.id]
    assert await stores.state.artifact_for_message(CHAT, "m2") is None
    assert await stores.state.artifact_for_message(CHAT, "m1") == first.id
    assert await stores.state.last_artifact(CHAT) is None


# -- usage -----------------------------------------------------------------------------------
async def test_concurrent_consumption_never_passes_the_limit(stores: Stores, peer: Stores) -> None:
    """Two connections (two processes) take from one quota at once: exactly the limit is admitted."""
    states = (stores.state, peer.state)
    results = await asyncio.gather(*(states[i % 2].try_consume("u", 1, 7) for i in range(20)))
    assert sorted(r for r in results if r is not None) == list(range(1, 8))
    assert results.count(None) == 13 and await peer.state.usage_today("u") == 7
    assert await stores.state.try_consume("u", 2, 8) is None  # over the limit: nothing is taken
    assert await stores.state.try_consume("u", 1, 8) == 8


async def test_refunds_floor_at_zero_and_old_days_are_forgotten(stores: Stores) -> None:
    old, today = date(2026, 1, 1), date(2026, 1, 3)
    assert await stores.state.try_consume("u", 3, 0, today=old) == 3  # 0: unlimited
    assert await stores.state.try_consume("u", 2, 5, today=today) == 2
    await stores.state.refund("u", 9, today=today)
    assert await stores.state.usage_today("u", today=today) == 0
    assert await stores.state.forget_usage_before(date(2026, 1, 2)) == 1
    assert await stores.state.usage_today("u", today=old) == 0


# -- jobs ------------------------------------------------------------------------------------
async def test_a_job_runs_its_lifecycle_through_the_public_methods(stores: Stores) -> None:
    job = await _job(stores)
    assert (job.status, job.owner) == ("generating", "me") and await stores.jobs.get(job.id) == job
    first, second = _artifact(1, job.id), _artifact(2, job.id)
    await stores.jobs.add_artifacts(job.id, [second.id])
    stored = await stores.jobs.complete_job(job.id, CHAT, [first, second])
    assert stored.status == "stored" and stored.artifact_ids == (first.id, second.id)  # this order, not arrival's
    assert [e.artifact_id for e in await stores.state.history(CHAT)] == [second.id, first.id]
    assert await stores.state.last_artifact(CHAT) == second.id
    assert [j.id for j in await stores.jobs.pending_delivery("telegram")] == [job.id]
    assert await stores.jobs.pending_delivery("discord") == []
    assert await stores.jobs.deliver(job.id) is True
    assert await stores.jobs.deliver(job.id) is False  # a repeated delivery is not an error
    assert (await stores.jobs.get(job.id)).status == "delivered"  # type: ignore[union-attr]
    assert await stores.jobs.get("job_000000000000") is None


async def test_a_job_records_its_owner_and_lease(stores: Stores) -> None:
    before = datetime.now(UTC)
    held = await _job(stores, owner="host/1/2/3", lease_s=30)
    assert held.owner == "host/1/2/3" and held.lease_until is not None
    assert datetime.fromisoformat(held.lease_until) > before  # ISO 8601 with its offset, like every timestamp
    assert await stores.jobs.get(held.id) == held
    free = await _job(stores, owner=None, lease_s=0, started=False)
    assert (free.status, free.owner, free.lease_until) == ("queued", None, None)
    assert [j.id for j in await stores.jobs.unsettled()] == [held.id, free.id]  # oldest first


async def test_complete_job_keeps_exactly_the_given_artifacts(stores: Stores) -> None:
    job = await _job(stores)
    kept, dropped = _artifact(1, job.id), _artifact(2, job.id)
    await stores.jobs.add_artifacts(job.id, [dropped.id, kept.id])
    stored = await stores.jobs.complete_job(job.id, CHAT, [kept])
    assert stored.artifact_ids == (kept.id,) and await stores.jobs.get(job.id) == stored
    assert [e.artifact_id for e in await stores.state.history(CHAT)] == [kept.id]
    assert await stores.jobs.unsettled() == []


async def test_a_job_settled_meanwhile_can_still_be_completed(stores: Stores, peer: Stores) -> None:
    """Another process took the job for an orphan and stored what had arrived; its owner then
    finishes it: the final list and the history win, and it is delivered once."""
    job = await _job(stores, owner="slow", lease_s=0)
    first, second = _artifact(1, job.id), _artifact(2, job.id)
    await stores.jobs.add_artifacts(job.id, [first.id])
    (settled,) = await peer.jobs.settle_orphans("peer", _never)
    assert settled.status == "stored"
    done = await stores.jobs.complete_job(job.id, CHAT, [first, second])
    assert (done.status, done.artifact_ids) == ("stored", (first.id, second.id))
    assert await peer.state.last_artifact(CHAT) == second.id
    assert await peer.jobs.deliver(job.id) is True and await stores.jobs.deliver(job.id) is False


async def test_illegal_moves_are_refused(stores: Stores) -> None:
    queued = await _job(stores, started=False)
    with pytest.raises(ValueError):
        await stores.jobs.complete_job(queued.id, CHAT, [_artifact(8, queued.id)])  # never started
    assert await stores.jobs.get(queued.id) == queued and await stores.state.history(CHAT) == []
    assert (await stores.jobs.fail(queued.id, "cancelled")).status == "failed"
    with pytest.raises(KeyError):
        await stores.jobs.fail("job_000000000000", "internal")
    with pytest.raises(KeyError):
        await stores.jobs.complete_job("job_000000000000", CHAT, [_artifact(8)])
    job = await _job(stores)
    with pytest.raises(ValueError):
        await stores.jobs.fail(job.id, "")  # failing needs a reason
    with pytest.raises(ValueError):
        await stores.jobs.complete_job(job.id, CHAT, [])  # stored needs images
    failed = await stores.jobs.fail(job.id, "provider_unavailable")
    assert (failed.status, failed.error) == ("failed", "provider_unavailable")
    with pytest.raises(ValueError):
        await stores.jobs.complete_job(job.id, CHAT, [_artifact(1, job.id)])  # out of a terminal state
    with pytest.raises(ValueError):
        await stores.jobs.add_artifacts(job.id, ["img_000000000009"])
    with pytest.raises(ValueError):
        await stores.jobs.fail(job.id, "internal")  # settled: why it ended is not rewritten
    assert (await stores.jobs.get(job.id)) == failed
    kept = await _job(stores)
    await stores.jobs.complete_job(kept.id, CHAT, [_artifact(3, kept.id)])
    given_up = await stores.jobs.fail(kept.id, "undeliverable: chat not found")  # a stored job given up
    assert given_up.status == "failed" and await stores.jobs.pending_delivery() == []
    sent = await _job(stores)
    await stores.jobs.complete_job(sent.id, CHAT, [_artifact(4, sent.id)])
    assert await stores.jobs.deliver(sent.id)
    with pytest.raises(ValueError):
        await stores.jobs.fail(sent.id, "undeliverable: too late")
    with pytest.raises(ValueError):
        await stores.jobs.complete_job(sent.id, CHAT, [_artifact(4, sent.id)])
    assert (await stores.jobs.get(sent.id)).status == "delivered"  # type: ignore[union-attr]


async def test_live_leases_are_left_alone_lapsed_and_dead_ones_are_settled(stores: Stores) -> None:
    live = await _job(stores, owner="other-live", lease_s=30)
    lapsed = await _job(stores, owner="other-gone", lease_s=0.01)
    dead = await _job(stores, OTHER, owner="dead-process", lease_s=30)
    await stores.jobs.add_artifacts(dead.id, [_artifact(5, dead.id).id])
    mine = await _job(stores, owner="me", lease_s=0.01)
    await asyncio.sleep(0.05)

    settled = {j.id: j for j in await stores.jobs.settle_orphans("me", lambda owner: owner == "dead-process")}
    assert set(settled) == {lapsed.id, dead.id}
    assert (settled[lapsed.id].status, settled[lapsed.id].error) == ("failed", "interrupted by a restart")
    assert (settled[dead.id].status, settled[dead.id].artifact_ids) == ("stored", (_artifact(5).id,))
    assert {j.id for j in await stores.jobs.pending_delivery()} == {dead.id}
    assert [j.id for j in await stores.jobs.unsettled()] == [live.id, mine.id]
    everyone_dead = await stores.jobs.settle_orphans("me", lambda owner: True)
    assert [j.id for j in everyone_dead] == [live.id]  # the caller's own jobs, never
    assert [j.id for j in await stores.jobs.unsettled()] == [mine.id]


async def test_renewing_keeps_an_owners_jobs_alive(stores: Stores) -> None:
    job = await _job(stores, owner="busy", lease_s=0.05)
    other = await _job(stores, owner="idle", lease_s=0.05)
    assert await stores.jobs.renew("busy", 30) == 1
    await asyncio.sleep(0.1)
    assert [j.id for j in await stores.jobs.settle_orphans("me", _never)] == [other.id]  # not renewed: lapsed
    assert await stores.jobs.renew("nobody", 30) == 0
    await stores.jobs.fail(job.id, "internal")
    assert await stores.jobs.renew("busy", 30) == 0  # settled jobs are not renewed


async def test_each_orphan_is_settled_by_exactly_one_caller(stores: Stores, peer: Stores) -> None:
    """Two processes start at once after a crash: every orphan is settled, none twice."""
    orphans = [await _job(stores, owner=None, lease_s=0) for _ in range(5)]
    orphans.append(await _job(stores, owner="crashed", lease_s=30))
    await stores.jobs.add_artifacts(orphans[0].id, [_artifact(1).id])
    calls = [jobs.settle_orphans(name, lambda owner: owner == "crashed")
             for _ in range(3) for name, jobs in (("a", stores.jobs), ("b", peer.jobs))]
    ids = [job.id for settled in await asyncio.gather(*calls) for job in settled]
    assert sorted(ids) == sorted(j.id for j in orphans)
    assert [j.id for j in await peer.jobs.pending_delivery()] == [orphans[0].id]


async def test_settled_jobs_of_old_days_are_forgotten(stores: Stores) -> None:
    done = await _job(stores)
    await stores.jobs.fail(done.id, "internal")
    running = await _job(stores)
    assert await stores.jobs.forget_before(date(2999, 1, 1)) == 1
    assert await stores.jobs.get(done.id) is None and await stores.jobs.get(running.id) is not None
