"""run_telegram end to end: webhook mode behind its secret, clean shutdown that finishes (or records) running
jobs, and the buttons under results: 🔁 Again, 📐 ratios and 📎 Original, which work from stored state."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from bots.app import open_service
from bots.telegram.keyboards import Again, AgainJob, Original, Reratio
from core.errors import ConfigError
from core.jobs import JobLedger
from core.models import ChatRef, ImageRequest, RequestSummary
from core.state import open_database
from tests.e2e.telegram_support import FAST, TelegramHarness, artifact_of, free_port, upload_of
from tests.fakes.fake_telegram import ALICE
from tests.images import png_bytes

pytest_plugins = ["tests.e2e.telegram_fixtures"]

SECRET = "pixbot-hook_secret"


async def test_webhook_mode_takes_updates_with_the_secret_and_refuses_others(tg: TelegramHarness) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram/hook"
    await tg.start(telegram={"mode": "webhook", "webhookUrl": url, "listenPort": port, "webhookSecret": SECRET})
    (hook,) = tg.server.calls_of("setWebhook")
    await tg.server.push_text("/imagine a kite")
    (delivery,) = await tg.server.wait_for_deliveries()
    (photo,) = await tg.server.wait_for("sendPhoto")
    async with aiohttp.ClientSession() as http:
        forged = {"update_id": 1, "message": {"message_id": 9, "date": 0, "text": "/imagine a forged fox",
                                              "chat": {"id": ALICE.id, "type": "private"},
                                              "from": {"id": ALICE.id, "is_bot": False, "first_name": "A"}}}
        async with http.post(url, json=forged, headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"}) as resp:
            assert resp.status == 401
    await tg.stop()

    assert hook.params["url"] == url and hook.params["secret_token"] == SECRET
    assert {"message", "callback_query"} <= set(hook.params["allowed_updates"])
    assert delivery.status == 200 and photo.params["caption"] == "a kite"
    assert len(tg.provider.requests) == 1
    assert tg.server.calls_of("getUpdates") == []


async def test_a_webhook_port_in_use_is_a_plain_configuration_error(tg: TelegramHarness) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        hook = {"mode": "webhook", "webhookUrl": f"http://127.0.0.1:{port}/hook", "listenPort": port}
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            await tg.start(telegram=hook)
    assert tg.server.calls_of("setWebhook") == []


async def test_a_webhook_telegram_refuses_is_a_plain_configuration_error(tg: TelegramHarness) -> None:
    port = free_port()
    hook = {"mode": "webhook", "webhookUrl": f"http://127.0.0.1:{port}/hook", "listenPort": port,
            "webhookSecret": "not allowed!"}
    with pytest.raises(ConfigError, match=r"Telegram refused the webhook .*unallowed characters"):
        await tg.start(telegram=hook)


async def test_stop_lets_a_running_job_finish_and_deliver(tg: TelegramHarness) -> None:
    service = await tg.start()
    tg.provider.hold()
    await tg.server.push_text("/imagine a slow comet")
    await tg.provider.wait_for_requests(1)
    stopping = asyncio.create_task(tg.stop())
    await tg.server.wait_until(lambda: tg.server.polls_waiting == 0, what="polling to stop")
    tg.provider.release()
    await stopping

    (photo,) = tg.server.calls_of("sendPhoto")
    assert photo.params["caption"] == "a slow comet"
    assert await service.pending_deliveries("telegram") == [] and service.running_jobs() == []


async def test_a_job_outlasting_the_shutdown_grace_is_cancelled_and_the_chat_told(tg: TelegramHarness) -> None:
    service = await tg.start(options=replace(FAST, shutdown_grace=0.05))
    tg.provider.hold()
    await tg.server.push_text("/imagine an endless story")
    await tg.provider.wait_for_requests(1)
    await tg.stop()

    (told,) = tg.server.calls_of("sendMessage")
    assert told.params["text"].startswith("The bot is restarting, so this was stopped")
    assert await service.jobs.unsettled() == []  # recorded as failed, not left "generating"


async def test_again_and_ratio_buttons_make_new_images_from_stored_state(tg: TelegramHarness) -> None:
    await tg.start()
    await tg.server.push_text("/imagine a red kite --ar 16:9")
    (made,) = await tg.server.wait_for("sendPhoto")
    kite = artifact_of(made)
    await tg.server.push_callback(made.result, Again(artifact_id=kite).pack())
    (_, again) = await tg.server.wait_for("sendPhoto", 2)
    await tg.server.push_callback(made.result, Reratio(artifact_id=kite, ratio="9x16").pack())
    (_, _, tall) = await tg.server.wait_for("sendPhoto", 3)
    await tg.stop()

    sizes = [r.json["size"] for r in tg.provider.requests_of("/images/generations")]
    prompts = {r.json["prompt"] for r in tg.provider.requests_of("/images/generations")}
    assert sizes == ["1536x1024", "1536x1024", "1024x1536"] and prompts == {"a red kite"}
    assert again.params["reply_parameters"]["message_id"] == made.result["message_id"]
    assert artifact_of(again) != kite and artifact_of(tall) not in (kite, artifact_of(again))
    assert (again.params["caption"], tall.params["caption"]) == ("a red kite\n🔁 Again", "a red kite\n📐 9:16")
    answers = [c.params.get("text") for c in tg.server.calls_of("answerCallbackQuery")]
    assert answers == ["🔁 Again…", "📐 9:16…"]


async def test_again_on_an_edit_redoes_the_edit_from_the_users_file(tg: TelegramHarness) -> None:
    await tg.start()
    await tg.server.push_photo(png_bytes(120, 80), caption="make it gold")
    (made,) = await tg.server.wait_for("sendPhoto")
    await tg.server.push_callback(made.result, Again(artifact_id=artifact_of(made)).pack())
    await tg.server.wait_for("sendPhoto", 2)

    first, second = tg.provider.requests_of("/images/edits")
    assert first.files[0].data == second.files[0].data
    assert len(tg.server.calls_of("getFile")) == 1  # the photo was kept at the first edit: no second download


async def test_again_on_an_edit_of_the_last_image_redoes_that_image_and_says_so(tg: TelegramHarness) -> None:
    await tg.start()
    await tg.server.push_text("/imagine a village")
    (village,) = await tg.server.wait_for("sendPhoto")
    await tg.server.push_text("/edit make it night")
    (_, night) = await tg.server.wait_for("sendPhoto", 2)
    await tg.server.push_text("/imagine a castle")  # now the chat's last image
    await tg.server.wait_for("sendPhoto", 3)
    await tg.server.push_callback(night.result, Again(artifact_id=artifact_of(night)).pack())
    (*_, again) = await tg.server.wait_for("sendPhoto", 4)

    first, second = tg.provider.requests_of("/images/edits")
    assert first.files[0].data == second.files[0].data  # the village both times
    assert again.params["caption"] == (f"make it night\n🔁 Again\n✏️ Edited the same image as before "
                                       f"({artifact_of(village)})")


async def test_original_button_sends_the_untouched_file(tg: TelegramHarness) -> None:
    service = await tg.start()
    await tg.server.push_text("/imagine a stained glass window")
    (made,) = await tg.server.wait_for("sendPhoto")
    artifact_id = artifact_of(made)
    await tg.server.push_callback(made.result, Original(artifact_id=artifact_id).pack())
    (document,) = await tg.server.wait_for("sendDocument")
    await tg.stop()

    artifact = await service.store.get(artifact_id)
    assert artifact is not None
    sent = upload_of(document, "document")
    assert sent.data == Path(artifact.path).read_bytes() and sent.filename == f"{artifact_id}.png"
    mapped = await service.state.artifact_for_message(f"telegram:{ALICE.id}", str(document.result["message_id"]))
    assert mapped == artifact_id


async def test_buttons_for_unknown_images_and_old_versions_answer_plainly(tg: TelegramHarness) -> None:
    await tg.start()
    message = await tg.server.push_text("hello?")  # generates: a message to hang buttons on
    await tg.server.wait_for("sendPhoto")
    await tg.server.push_callback(message, Again(artifact_id="img_000000000000").pack())
    await tg.server.push_callback(message, "v0-button")
    await tg.server.wait_for("sendMessage")
    await tg.server.wait_for("answerCallbackQuery", 2)

    texts = [c.params["text"] for c in tg.server.calls_of("sendMessage")]
    assert texts == ["That image is no longer stored, so it cannot be made again."]
    alerts = [c.params.get("text") for c in tg.server.calls_of("answerCallbackQuery")]
    assert "This button no longer works. Use /help." in alerts
    await tg.stop()
    answered = tg.server.calls_of("answerCallbackQuery")  # each click answered once: a second answer is a 400
    assert len(answered) == 2 and all(c.ok for c in answered)


async def test_a_job_a_crash_cut_short_is_answered_after_the_restart(tg: TelegramHarness) -> None:
    """kill -9 mid-job used to leave the chat with nothing but a stale "🎨 Generating…" message. Now the
    next start removes the status message and says what happened, with 🔁 Again to ask once more."""
    chat_key = f"telegram:{ALICE.id}"
    async with open_database(tg.tmp_path / "pixbot.db") as db:  # the state the dead process left
        summary = RequestSummary("a red fox", "generate", 2, "custom", "flux-dev")
        job = await JobLedger(db).create(
            chat_key=chat_key, user_key=chat_key, prompt="a red fox", requested=2, request=summary.to_dict(),
            origin={"chat_id": ALICE.id, "reply_to": 77, "status_message": 555}, started=True,
            owner="gone-host/1/1/x", lease_s=0.001)
    await asyncio.sleep(0.01)  # the dead process's lease lapses
    await tg.start()
    (told,) = await tg.server.wait_for("sendMessage")
    (deleted,) = await tg.server.wait_for("deleteMessage")
    assert deleted.params["message_id"] == 555 and deleted.params["chat_id"] == ALICE.id
    assert told.params["text"].startswith("The bot restarted before this was finished, and no image was made: "
                                          "“a red fox”")
    assert told.params["reply_parameters"]["message_id"] == 77
    (button,) = [b["callback_data"] for row in told.params["reply_markup"]["inline_keyboard"] for b in row]
    assert button == AgainJob(job_id=job.id).pack()

    await tg.server.push_callback(told.result, button)  # 🔁 Again: the same request, once more
    (album,) = await tg.server.wait_for("sendMediaGroup")
    await tg.stop()
    assert album.params["media"][0]["caption"] == "a red fox\n🔁 Again"
    assert len(tg.provider.requests_of("/images/generations")) == 2


async def test_a_status_message_left_by_a_crash_is_removed_when_its_images_are_delivered(
        tg: TelegramHarness) -> None:
    await tg.open()
    async with open_service(tg.config) as crashed:  # the run that crashed before its delivery
        made = await crashed.submit(ImageRequest("a lantern", ChatRef("telegram", str(ALICE.id), str(ALICE.id)),
                                                 origin={"chat_id": ALICE.id, "reply_to": 77}))
        await crashed.annotate_job(made.job_id, status_message=556)
    await tg.run_bot()
    (photo,) = await tg.server.wait_for("sendPhoto")
    (deleted,) = await tg.server.wait_for("deleteMessage")
    await tg.stop()
    assert deleted.params["message_id"] == 556
    assert photo.params["caption"] == "a lantern\n⏱ Delivered after the bot restarted."
