"""Delivery: fitting to the upload limit, failures edited into the original response, partial results,
jobs delivered after a restart, and a clean shutdown that lets a running job finish."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bots.chat.inflight import Inflight
from core.models import ChatRef, ImageRequest
from core.service import ImageService
from tests.e2e.cli_support import Cli
from tests.e2e.discord_support import DiscordHarness, bot_messages, result_of
from tests.fakes.discord_wire import walk_components
from tests.fakes.fake_discord import MIB, FakeDiscord
from tests.fakes.fake_provider import FakeProvider

pytest_plugins = ["tests.e2e.discord_fixtures"]

EPHEMERAL = 1 << 6


async def test_a_result_over_the_upload_limit_is_re_encoded_to_fit_and_says_so(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    provider.image_bytes = 11_000_000  # an incompressible ~11 MB PNG
    service = await harness.start()
    rec = await fake.invoke_slash(fake.alice, "imagine", prompt="static")
    result = await result_of(fake, rec, timeout=30)
    (patch,) = fake.calls_matching("PATCH", r"/webhooks/.*/@original")
    (upload,) = patch.files
    assert len(upload.data) <= 10 * MIB < (await service.store.get(upload.filename[:16]) or _missing()).bytes
    (attachment,) = result["attachments"]
    assert attachment["content_type"] in ("image/webp", "image/jpeg")
    assert "to fit this server's 10 MiB upload limit" in result["content"]
    artifact_id = attachment["filename"].split(".")[0]
    original = await result_of(fake, await fake.click_button(fake.alice, result, f"pixbot:orig:{artifact_id}"))
    assert "over this server's 10 MiB upload limit" in original["content"] and original["attachments"] == []


async def test_a_larger_interaction_limit_keeps_the_original_png(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    provider.image_bytes = 11_000_000
    await harness.start()
    rec = await fake.invoke_slash(fake.alice, "imagine", prompt="static", attachment_size_limit=50 * MIB)
    result = await result_of(fake, rec, timeout=30)
    (attachment,) = result["attachments"]
    assert attachment["content_type"] == "image/png" and attachment["size"] > 10 * MIB
    assert result["content"] == ""


async def test_a_provider_failure_edits_the_original_response_into_the_plain_error(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    await harness.start()
    provider.fail_next(500, times=3)  # every attempt of the retry policy
    rec = await fake.invoke_slash(fake.alice, "imagine", prompt="a fox")
    answer = await result_of(fake, rec)
    assert rec.response_type == 5 and not rec.ephemeral  # work had started: the public defer stays
    assert answer["content"] == "The image service is unavailable right now. Try again later."
    assert answer["attachments"] == [] and answer["embeds"] == [] and answer["components"] == []
    assert len(provider.requests) == 3 and "Traceback" not in answer["content"]


async def test_a_partial_result_delivers_what_arrived_and_says_what_failed(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    await harness.start()
    provider.fail_next(400)  # one of the two concurrent requests is refused (not retried)
    result = await result_of(fake, await fake.invoke_slash(fake.alice, "imagine", prompt="two cats", count=2))
    assert len(result["attachments"]) == 1 and len(provider.requests) == 2
    assert result["content"].startswith("⚠️ 1 of 2 images failed: ")


async def test_jobs_stored_but_never_delivered_are_posted_on_the_next_start(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    service = await harness.start()
    asked = await fake.send_user_message(fake.alice, "draw me a moon please")
    chat = ChatRef("discord", fake.channel_id, fake.alice.id)
    origin = {"channel_id": fake.channel_id, "user_id": fake.alice.id, "reply_to": asked["id"]}
    job = await service.submit(ImageRequest("a moon", chat, origin=origin))  # stored, never sent
    fake.fail_next("PATCH", r"/webhooks/.*/@original", 400, {"message": "Invalid Form Body", "code": 50035})
    refused = await result_of(fake, await fake.invoke_slash(fake.bob, "imagine", prompt="a sun"))
    assert refused["content"].startswith("The image was made, but sending the image to this chat failed "
                                          "(Discord said: 400")

    service = await harness.restart()
    await harness.wait_delivered(2, timeout=15)  # after READY and discord.py's wait for guilds
    (_, _, first), (_, _, second) = harness.deliveries
    posted = bot_messages(fake)[-2:]
    assert [m["content"].split(" ", 1)[0] for m in posted] == [fake.alice.mention, fake.bob.mention]
    assert posted[0]["content"].endswith("⏱ Delivered after the bot restarted.")
    assert posted[0]["message_reference"]["message_id"] == asked["id"] and len(posted[0]["attachments"]) == 1
    assert posted[0]["components"] and first == [(posted[0]["id"], job.artifacts[0].id)]
    assert second[0][0] == posted[1]["id"]
    record = await service.jobs.get(job.job_id)
    assert record is not None and record.status == "delivered"
    assert await service.pending_deliveries("discord") == []


async def test_stopping_lets_a_running_job_finish_and_refuses_new_gestures(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    await harness.start()
    provider.hold()
    rec = await fake.invoke_slash(fake.alice, "imagine", prompt="a slow fox")
    await provider.wait_for_requests(1)
    waiting = asyncio.Event()
    drain = Inflight.drain

    async def spy(self: Inflight, service: ImageService, grace: float) -> None:
        waiting.set()
        await drain(self, service, grace)

    monkeypatch.setattr(Inflight, "drain", spy)
    stopping = asyncio.create_task(harness.stop())
    await asyncio.wait_for(waiting.wait(), 5)
    late = await fake.invoke_slash(fake.bob, "imagine", prompt="too late")
    refusal = await result_of(fake, late)
    assert refusal["content"] == "The bot is restarting. Try again in a minute." and late.ephemeral
    provider.release()
    await asyncio.wait_for(stopping, 15)
    assert len((await fake.original_response(rec))["attachments"]) == 1 and len(provider.requests) == 1


def _missing() -> object:
    raise AssertionError("the artifact was not stored")


async def test_a_job_that_outlives_the_interaction_token_is_posted_in_the_channel(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    service = await harness.start()
    provider.hold()
    rec = await fake.invoke_slash(fake.alice, "imagine", prompt="a slow fox")
    await provider.wait_for_requests(1)
    fake.expire(rec)  # the job took longer than Discord's 15 minutes
    provider.release()
    posted = await fake.wait_for(lambda: [m for m in bot_messages(fake) if m["attachments"]], timeout=10)
    (message,) = posted
    assert message["content"].startswith(fake.alice.mention) and len(message["attachments"]) == 1
    await harness.wait_delivered(1)
    assert await service.pending_deliveries("discord") == []  # delivered, so nothing is left for a restart


async def test_a_413_from_discord_is_answered_with_smaller_files(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    provider.image_bytes = 7_000_000  # fits the 10 MiB limit we are told, but Discord says otherwise
    await harness.start()
    fake.fail_next("PATCH", r"/webhooks/.*/@original", 413, {"message": "Request entity too large", "code": 40005})
    result = await result_of(fake, await fake.invoke_slash(fake.alice, "imagine", prompt="static"), timeout=30)
    (attachment,) = result["attachments"]
    assert attachment["size"] <= 5 * MIB
    assert "to fit this server's 5 MiB upload limit" in result["content"]


async def test_a_413_on_a_delivery_after_restart_is_answered_with_smaller_files(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    provider.image_bytes = 7_000_000
    service = await harness.start()
    chat = ChatRef("discord", fake.channel_id, fake.alice.id)
    job = await service.submit(ImageRequest("static", chat, origin={"channel_id": fake.channel_id,
                                                                    "user_id": fake.alice.id}))  # never sent
    fake.fail_next("POST", r"/channels/\d+/messages$", 413, {"message": "Request entity too large", "code": 40005})
    service = await harness.restart()
    ((message_id, artifact_id),) = await harness.wait_delivered(timeout=30)
    (attachment,) = fake.message(message_id)["attachments"]
    assert artifact_id == job.artifacts[0].id and attachment["size"] <= 5 * MIB
    assert "to fit this server's 5 MiB upload limit" in fake.message(message_id)["content"]
    record = await service.jobs.get(job.job_id)
    assert record is not None and record.status == "delivered"


async def test_several_images_over_the_upload_limit_share_it_in_one_message(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    """Three ~4 MB images under a 10 MiB limit: each alone fits, together they do not. The budget is shared,
    so the first upload already fits (no 413 round trip) and all three are shown."""
    provider.image_bytes = 4_000_000
    await harness.start()
    rec = await fake.invoke_slash(fake.alice, "imagine", prompt="static", count=3)
    result = await result_of(fake, rec, timeout=60)
    (patch,) = fake.calls_matching("PATCH", r"/webhooks/.*/@original")
    assert patch.status == 200 and len(patch.files) == 3
    assert sum(len(f.data) for f in patch.files) <= 10 * MIB
    assert len(result["attachments"]) == 3 and "to fit this server's 10 MiB upload limit" in result["content"]


async def test_a_job_killed_mid_run_is_answered_in_its_thinking_response_after_the_restart(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider, tmp_path: Path
) -> None:
    """``pixbot run`` killed with SIGKILL while Discord shows "thinking…": the next start edits that
    response (its token still lives) into a plain answer with 🔁 Again, and Again makes the image."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(harness.config()))
    cli = Cli(tmp_path, provider)
    readies = fake.ready_count
    process = await cli.start("run", config=config)
    try:
        await fake.wait_for(lambda: fake.ready_count > readies, timeout=30)
        provider.hold()
        rec = await fake.invoke_slash(fake.alice, "imagine", prompt="a slow fox")
        await provider.wait_for_requests(1, timeout=30)
        await fake.wait_for(lambda: rec.response_type == 5, timeout=10)  # the public "thinking…"
    finally:
        process.kill()
        await process.wait()
    provider.release()

    await harness.start()
    answer = await fake.original_response(rec, lambda m: "restarted" in (m["content"] or ""), timeout=15)
    assert answer["content"].startswith("The bot restarted before this was finished, and no image was made: "
                                        "“a slow fox”")
    (button,) = [c["custom_id"] for c in walk_components(answer["components"]) if c.get("custom_id")]
    assert button.startswith("pixbot:rerun:job_")
    again = await result_of(fake, await fake.click_button(fake.alice, answer, button))
    assert len(again["attachments"]) == 1 and again["embeds"][0]["description"] == "a slow fox"


async def test_a_failure_posted_in_the_channel_says_which_request_it_is_about(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    service = await harness.start()
    chat = ChatRef("discord", fake.channel_id, fake.alice.id)
    await service.submit(ImageRequest("a harvest moon", chat, origin={"channel_id": fake.channel_id,
                                                                    "user_id": fake.alice.id}))  # never sent
    fake.fail_next("POST", r"/channels/\d+/messages$", 403, {"message": "Missing Permissions", "code": 50013})
    await harness.restart()  # the files are refused (say, attachments not allowed); a plain text still goes
    posted = await fake.wait_for(lambda: [m for m in bot_messages(fake) if "harvest" in (m["content"] or "")],
                                 timeout=15)
    assert posted[0]["content"].startswith(f"{fake.alice.mention} “a harvest moon”: The image was made, but "
                                           "sending the image to this chat failed")
