"""ImageService through the real composition root, providers and store, against the loopback fake."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from bots.app import open_service
from core.config_file import load_config
from core.errors import InvalidRequest, QuotaExceeded, RateLimited, Unsupported
from core.models import ChatRef, ImageRequest, Reference
from core.net import RetryPolicy
from core.service import ImageService, Progress
from tests.fakes.fake_provider import FakeProvider
from tests.images import png_bytes

CHAT = ChatRef("telegram", "100", "7")
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002, total=5.0)

ServiceFactory = Callable[..., AbstractAsyncContextManager[ImageService]]


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


@pytest.fixture
def make_service(tmp_path: Path, fake: FakeProvider) -> ServiceFactory:
    def build(**overrides: Any) -> AbstractAsyncContextManager[ImageService]:
        raw: dict[str, Any] = {
            "providers": {"custom": {"apiKey": "sk-test", "apiBase": fake.api_base("custom")},
                          "openai": {"apiKey": "sk-oa", "apiBase": fake.api_base("openai")},
                          "zhipu": {"apiKey": "z", "apiBase": fake.api_base("zhipu")}},
            "tools": {"imageGeneration": {"provider": "custom", "model": "flux-dev", "maxImagesPerTurn": 8},
                      "ssrfWhitelist": ["127.0.0.0/8"]},
            "limits": {"perUserDaily": 0},
        }
        for section, values in overrides.items():
            raw.setdefault(section, {}).update(values)
        path = tmp_path / "config.json"
        path.write_text(json.dumps(raw))
        return _with_fast_retry(open_service(load_config(path, env_file=None)))

    return build


class _with_fast_retry:
    def __init__(self, inner: AbstractAsyncContextManager[ImageService]) -> None:
        self.inner = inner

    async def __aenter__(self) -> ImageService:
        service = await self.inner.__aenter__()
        service.retry = FAST_RETRY
        return service

    async def __aexit__(self, *exc: object) -> None:
        await self.inner.__aexit__(*exc)  # type: ignore[arg-type]


async def test_count_four_runs_four_requests_at_once(make_service: ServiceFactory, fake: FakeProvider) -> None:
    async with make_service() as service:
        fake.hold()
        job = asyncio.create_task(service.submit(ImageRequest("a red fox", CHAT, count=4)))
        await fake.wait_for_requests(4)
        assert fake.in_flight == 4
        fake.release()
        result = await job
    assert result.ok and len(result.artifacts) == 4
    assert len({a.id for a in result.artifacts}) == 4
    for artifact in result.artifacts:
        sidecar = json.loads(Path(artifact.path).with_suffix(".json").read_text())
        assert sidecar["id"] == artifact.id and sidecar["job_id"] == result.job_id
        assert sidecar["chat"] == "telegram:100" and sidecar["provider"] == "custom"
        assert Path(artifact.path).parent.parent.name == "generated"
    body = fake.requests_of("images/generations")[0].json
    assert body == {"model": "flux-dev", "prompt": "a red fox", "response_format": "b64_json", "n": 1,
                    "size": "1024x1024"}


async def test_one_failed_slot_keeps_the_other_images(make_service: ServiceFactory, fake: FakeProvider) -> None:
    fake.fail_next(400, {"error": {"message": "bad things sk-test"}})
    async with make_service() as service:
        result = await service.submit(ImageRequest("a fox", CHAT, count=3))
        record = await service.jobs.get(result.job_id)
    assert len(result.artifacts) == 2
    assert [(e.category, e.message) for e in result.errors] == [
        ("invalid_request", "The image service rejected the request. Try a different prompt or options.")]
    assert "sk-test" not in result.errors[0].message
    assert record is not None and record.status == "stored" and len(record.artifact_ids) == 2


async def test_rate_limit_is_retried_then_succeeds(make_service: ServiceFactory, fake: FakeProvider) -> None:
    fake.fail_next(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0"})
    async with make_service() as service:
        result = await service.submit(ImageRequest("a fox", CHAT))
    assert result.ok
    assert len(fake.requests_of("images/generations")) == 2


async def test_falls_back_when_the_provider_is_down(make_service: ServiceFactory, fake: FakeProvider) -> None:
    fake.fail_next(503, {"error": {"message": "down"}}, times=3)
    fallbacks = {"provider": "custom", "model": "flux-dev", "maxImagesPerTurn": 8,
                 "fallbacks": [{"provider": "openai", "model": "gpt-image-1"}]}
    async with make_service(tools={"imageGeneration": fallbacks, "ssrfWhitelist": ["127.0.0.0/8"]}) as service:
        result = await service.submit(ImageRequest("a fox", CHAT))
    assert result.ok
    assert (result.artifacts[0].provider, result.artifacts[0].model) == ("openai", "gpt-image-1")
    assert any("fell back to openai/gpt-image-1" in note for note in result.report.notes)
    assert len(fake.requests_of("/custom/v1/images/generations")) == 3
    assert len(fake.requests_of("/openai/v1/images/generations")) == 1


async def test_edit_last_sends_the_chats_last_image(make_service: ServiceFactory, fake: FakeProvider) -> None:
    async with make_service() as service:
        first = await service.submit(ImageRequest("a fox", CHAT))
        edited = await service.submit(ImageRequest("make it night", CHAT, mode="edit"))
    assert edited.ok
    (upload,) = fake.requests_of("images/edits")[0].files
    assert upload.field == "image[]"
    assert upload.data == Path(first.artifacts[0].path).read_bytes()
    assert edited.artifacts[0].parent_id == first.artifacts[0].id
    assert edited.artifacts[0].source_images == (first.artifacts[0].path,)
    assert edited.edited == (first.artifacts[0].id,)


async def test_edit_without_any_image_is_refused_before_any_call(make_service: ServiceFactory,
                                                                fake: FakeProvider) -> None:
    async with make_service() as service:
        with pytest.raises(InvalidRequest, match="no image in this chat to edit"):
            await service.submit(ImageRequest("make it night", ChatRef("telegram", "empty"), mode="edit"))
    assert fake.requests == []


async def test_references_to_a_model_without_edits_are_unsupported(make_service: ServiceFactory,
                                                                   fake: FakeProvider) -> None:
    image = {"provider": "zhipu", "model": "glm-image"}
    async with make_service(tools={"imageGeneration": image, "ssrfWhitelist": ["127.0.0.0/8"]}) as service:
        with pytest.raises(Unsupported, match="cannot edit images"):
            await service.submit(ImageRequest("x", CHAT, references=(Reference(data=png_bytes()),)))
        result = await service.submit(ImageRequest("a fox", CHAT))
    assert result.ok and result.artifacts[0].provider == "zhipu"
    assert len(fake.requests) == 2  # the zhipu call and its url download; nothing for the refusal


async def test_daily_quota_refuses_and_refunds_failures(make_service: ServiceFactory, fake: FakeProvider) -> None:
    async with make_service(limits={"perUserDaily": 3}) as service:
        fake.fail_next(400)
        result = await service.submit(ImageRequest("a fox", CHAT, count=2))
        assert len(result.artifacts) == 1
        assert await service.state.usage_today(CHAT.user_key) == 1
        await service.submit(ImageRequest("a fox", CHAT, count=2))
        with pytest.raises(QuotaExceeded, match="used your 3 images for today"):
            await service.submit(ImageRequest("a fox", CHAT))


async def test_per_chat_concurrency_and_cancel(make_service: ServiceFactory, fake: FakeProvider) -> None:
    async with make_service(limits={"perChatJobs": 1, "perUserDaily": 0}) as service:
        fake.hold()
        job = asyncio.create_task(service.submit(ImageRequest("a fox", CHAT, count=2)))
        await fake.wait_for_requests(2)
        with pytest.raises(RateLimited, match="already has 1 jobs running"):
            await service.submit(ImageRequest("another", CHAT))
        assert await service.cancel(CHAT.key) == 1
        result = await job
        fake.release()
        record = await service.jobs.get(result.job_id)
    assert result.artifacts == ()
    assert [e.category for e in result.errors] == ["cancelled", "cancelled"]
    assert record is not None and record.status == "failed"


async def test_job_timeout_keeps_what_arrived(make_service: ServiceFactory, fake: FakeProvider) -> None:
    async with make_service(limits={"jobTimeoutS": 1.0, "perUserDaily": 0}) as service:
        fake.stall_next(1)  # one slot never answers; the other does
        result = await service.submit(ImageRequest("a fox", CHAT, count=2))
        fake.release_stalled()
        record = await service.jobs.get(result.job_id)
    assert [e.category for e in result.errors] == ["timeout"]
    assert len(result.artifacts) == 1 and Path(result.artifacts[0].path).is_file()
    assert record is not None and record.status == "stored"
    assert record.artifact_ids == (result.artifacts[0].id,)


async def test_a_chat_default_count_above_the_limit_is_capped(make_service: ServiceFactory,
                                                              fake: FakeProvider) -> None:
    image = {"provider": "custom", "model": "flux-dev", "maxImagesPerTurn": 2}
    async with make_service(tools={"imageGeneration": image, "ssrfWhitelist": ["127.0.0.0/8"]}) as service:
        await service.state.update_settings(CHAT.key, count=3)  # set before the operator lowered the limit
        result = await service.submit(ImageRequest("a fox", CHAT))
        with pytest.raises(InvalidRequest, match="1 to 2 images"):
            await service.submit(ImageRequest("a fox", CHAT, count=3))  # an explicit ask is still refused
    assert result.ok and result.requested == 2 and len(result.artifacts) == 2


async def test_an_unreadable_reference_is_a_plain_refusal(make_service: ServiceFactory, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          fake: FakeProvider) -> None:
    ref = tmp_path / "locked.png"
    ref.write_bytes(png_bytes())
    real_open = os.open

    def denied(path: Any, *args: Any, **kwargs: Any) -> int:  # a mode-000 file (root could read one anyway)
        if Path(path) == ref.resolve():
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    async with make_service() as service:
        with pytest.raises(InvalidRequest, match=r"cannot be read: locked\.png"):
            await service.submit(ImageRequest("x", CHAT, references=(Reference(path=str(ref), trusted=True),)))
    assert fake.requests == []


async def test_untrusted_paths_must_stay_in_the_media_dir(make_service: ServiceFactory, tmp_path: Path,
                                                          fake: FakeProvider) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes())
    async with make_service() as service:
        with pytest.raises(InvalidRequest, match="inside the media directory"):
            await service.submit(ImageRequest("x", CHAT, references=(Reference(path=str(outside)),)))
        media = service.config.media_dir
        media.mkdir(parents=True, exist_ok=True)
        (media / "link.png").symlink_to(outside)
        with pytest.raises(InvalidRequest, match="inside the media directory"):
            await service.submit(ImageRequest("x", CHAT, references=(Reference(path=str(media / "link.png")),)))
        result = await service.submit(ImageRequest("x", CHAT, references=(Reference(path=str(outside),
                                                                                     trusted=True),)))
    assert result.ok and result.artifacts[0].source_images == (str(outside.resolve()),)


async def test_progress_and_delivery_are_recorded(make_service: ServiceFactory, fake: FakeProvider) -> None:
    seen: list[Progress] = []

    async def progress(event: Progress) -> None:
        seen.append(event)

    async with make_service() as service:
        result = await service.submit(ImageRequest("a fox", CHAT, count=2), progress=progress)
        assert [p.stored for p in seen] == [0, 1, 2]
        assert [record.id for record in await service.jobs.pending_delivery("telegram")] == [result.job_id]
        # This process is delivering it: its own catch-up (and any other live process) leaves it alone.
        assert await service.pending_deliveries("telegram") == []
        await service.mark_delivered(result.job_id, CHAT.key, [(str(i), a.id) for i, a in
                                                               enumerate(result.artifacts)])
        assert await service.pending_deliveries("telegram") == []
        assert await service.state.artifact_for_message(CHAT.key, "1") == result.artifacts[1].id
        assert await service.state.last_artifact(CHAT.key) == result.artifacts[-1].id


async def test_a_failing_progress_callback_does_not_fail_the_job(make_service: ServiceFactory,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    async def progress(event: Progress) -> None:
        calls.append(event.stored)
        raise RuntimeError("status message could not be edited")

    async with make_service() as service:
        result = await service.submit(ImageRequest("a fox", CHAT, count=2), progress=progress)
        assert result.ok and len(result.artifacts) == 2
        assert calls == [0, 1, 2]
        assert [record.id for record in await service.jobs.pending_delivery("telegram")] == [result.job_id]
    assert "progress callback failed" in caplog.text


async def test_cancelling_the_caller_stops_the_slots_and_settles_the_job(make_service: ServiceFactory,
                                                                          fake: FakeProvider) -> None:
    """A front-end task cancelled mid-job (a shutdown, a dropped HTTP client): the slots stop, the image
    that arrived is kept, the ledger is settled and the unmade image refunded, then the cancel goes on."""
    async with make_service(limits={"perUserDaily": 5}) as service:
        fake.stall_next(1)  # one slot never answers
        stored = asyncio.Event()

        async def progress(update: Progress) -> None:
            if update.stored:
                stored.set()

        job = asyncio.create_task(service.submit(ImageRequest("a fox", CHAT, count=2), progress=progress))
        await asyncio.wait_for(stored.wait(), 5)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        assert service.running_jobs() == [] and await service.wait_idle(0)
        fake.release_stalled()
        (record,) = await service.jobs.pending_delivery("telegram")
        assert record.status == "stored" and len(record.artifact_ids) == 1
        assert await service.state.usage_today(CHAT.user_key) == 1  # the image that was not made is refunded
        # nothing of the job keeps running: the chat's limit and /cancel see an idle chat
        assert await service.cancel(CHAT.key) == 0


async def test_cancelled_slots_have_their_own_category(make_service: ServiceFactory, fake: FakeProvider) -> None:
    async with make_service() as service:
        fake.hold()
        job = asyncio.create_task(service.submit(ImageRequest("a fox", CHAT)))
        await fake.wait_for_requests(1)
        await service.cancel(CHAT.key)
        result = await job
        fake.release()
    assert [(e.category, e.message) for e in result.errors] == [("cancelled", "Stopped before it finished.")]


# -- limits across processes sharing one database ---------------------------------------------------------

OTHER_CHAT = ChatRef("telegram", "200", "8")


@pytest.mark.parametrize(("shared_limit", "most_at_once"), [(1, 1), (3, 3), (0, 4)])
async def test_global_concurrency_holds_across_two_services_on_one_database(
        make_service: ServiceFactory, fake: FakeProvider, shared_limit: int, most_at_once: int) -> None:
    """Two services (as two processes: each its own connection to one SQLite file) ask for two images each;
    with ``globalConcurrency`` N no more than N requests are ever at the provider (0: only each process's
    ``concurrency``, so all four at once)."""
    limits = {"globalConcurrency": shared_limit, "perUserDaily": 0}
    async with make_service(limits=limits) as first, make_service(limits=limits) as second:
        assert first.storage_info["location"] == second.storage_info["location"]
        fake.hold()
        jobs = [asyncio.create_task(first.submit(ImageRequest("a fox", CHAT, count=2))),
                asyncio.create_task(second.submit(ImageRequest("a cat", OTHER_CHAT, count=2)))]
        await fake.wait_for_requests(most_at_once)
        await asyncio.sleep(0.3)  # time for any request the limit should hold back to arrive anyway
        assert (fake.in_flight, len(fake.requests)) == (most_at_once, most_at_once)
        fake.latency = 0.05  # the rest overlap unless the limit keeps them apart
        fake.release()
        results = await asyncio.gather(*jobs)
        assert all(result.ok and len(result.artifacts) == 2 for result in results)
        assert fake.max_in_flight == most_at_once
        assert first.coordination is not None
        if shared_limit:  # every slot was given back
            probes = [await first.coordination.acquire_slot("provider:custom", shared_limit, "probe", 30,
                                                            lambda owner: False) for _ in range(shared_limit)]
            assert probes == list(range(shared_limit))


async def test_a_job_waiting_for_a_shared_slot_gives_up_at_its_timeout(make_service: ServiceFactory,
                                                                       fake: FakeProvider) -> None:
    limits = {"globalConcurrency": 1, "perUserDaily": 0}
    async with make_service(limits=limits) as first, make_service(limits={**limits, "jobTimeoutS": 1.0}) as second:
        fake.hold()
        holding = asyncio.create_task(first.submit(ImageRequest("a fox", CHAT)))
        await fake.wait_for_requests(1)
        started = asyncio.get_running_loop().time()
        waited = await second.submit(ImageRequest("a cat", OTHER_CHAT))
        assert 0.9 <= asyncio.get_running_loop().time() - started < 3
        assert [e.category for e in waited.errors] == ["timeout"] and waited.artifacts == ()
        record = await second.jobs.get(waited.job_id)
        assert record is not None and record.status == "failed"
        # a job cancelled while it waits for a slot leaves none behind
        waiting = asyncio.create_task(second.submit(ImageRequest("a cow", OTHER_CHAT)))
        await asyncio.sleep(0.2)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        fake.release()
        assert (await holding).ok and len(fake.requests) == 1
        assert first.coordination is not None
        assert await first.coordination.acquire_slot("provider:custom", 1, "probe", 30, lambda owner: False) == 0


async def test_a_shared_slot_is_kept_while_its_call_outlasts_the_lease(make_service: ServiceFactory,
                                                                       fake: FakeProvider) -> None:
    """Slots are leased like jobs and renewed with them: a call longer than several leases keeps its slot."""
    async with make_service(limits={"globalConcurrency": 1, "perUserDaily": 0}) as opened:
        services = [ImageService(opened.config, opened.providers, opened.store, opened.state, opened.jobs,
                                 retry=FAST_RETRY, owner=owner, lease_s=0.3, coordination=opened.coordination)
                    for owner in ("host-a/1", "host-b/2")]
        fake.hold()
        jobs = [asyncio.create_task(service.submit(ImageRequest("a fox", chat)))
                for service, chat in zip(services, (CHAT, OTHER_CHAT), strict=True)]
        await fake.wait_for_requests(1)
        await asyncio.sleep(1.0)  # more than three leases: held only because it is renewed
        assert (fake.in_flight, len(fake.requests)) == (1, 1)
        fake.release()
        assert all(result.ok for result in await asyncio.gather(*jobs))
        assert fake.max_in_flight == 1


async def test_the_per_chat_limit_holds_across_two_services_on_one_database(make_service: ServiceFactory,
                                                                            fake: FakeProvider) -> None:
    limits = {"perChatJobs": 1, "perUserDaily": 5}
    async with make_service(limits=limits) as first, make_service(limits=limits) as second:
        fake.hold()
        job = asyncio.create_task(first.submit(ImageRequest("a fox", CHAT)))
        await fake.wait_for_requests(1)
        assert second.running_jobs(CHAT.key) == []  # the other process knows of the job only through the database
        with pytest.raises(RateLimited) as refused:
            await second.submit(ImageRequest("another", CHAT))
        assert str(refused.value) == "This chat already has 1 jobs running. Wait for one to finish, or cancel it."
        assert await second.state.usage_today(CHAT.user_key) == 1  # the refused request's image refunded
        other = asyncio.create_task(second.submit(ImageRequest("elsewhere", OTHER_CHAT)))
        await fake.wait_for_requests(2)  # other chats are not held up
        fake.release()
        assert (await job).ok and (await other).ok
        assert (await second.submit(ImageRequest("now", CHAT))).ok  # the chat is free again
