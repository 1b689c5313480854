"""Delivery policy end to end: albums out, captions, photo limits (preview + original), photos Telegram
refuses, 429 retry_after, delivery styles, failures that still reach the chat, the message → artifact map,
and restart delivery of stored jobs."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from bots.app import open_service
from core.models import ChatRef, ImageRequest
from tests.e2e.telegram_support import TelegramHarness, upload_of
from tests.fakes.fake_telegram import ALICE

pytest_plugins = ["tests.e2e.telegram_fixtures"]

CHAT_KEY = f"telegram:{ALICE.id}"


def _size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        return im.size


async def test_several_images_go_out_as_one_album_with_the_caption_first_and_buttons_after(
    tg: TelegramHarness,
) -> None:
    service = await tg.start()
    await tg.server.push_text("/imagine three foxes --n 3")
    (album,) = await tg.server.wait_for("sendMediaGroup")
    (buttons,) = await tg.server.wait_for("sendMessage")
    await tg.stop()

    media = album.params["media"]
    assert [m["type"] for m in media] == ["photo"] * 3 and len(album.uploads) == 3
    assert [m.get("caption") for m in media] == ["three foxes", None, None]
    assert buttons.params["reply_parameters"]["message_id"] == album.result[0]["message_id"]
    callback_data = [b["callback_data"] for row in buttons.params["reply_markup"]["inline_keyboard"] for b in row]
    assert all(len(data.encode()) <= 64 for data in callback_data)
    assert sum(d.startswith("orig:") for d in callback_data) == 3
    shown = [await service.state.artifact_for_message(CHAT_KEY, str(m["message_id"])) for m in album.result]
    assert sorted(f"orig:{a}" for a in shown if a) == sorted(d for d in callback_data if d.startswith("orig:"))
    assert await service.pending_deliveries("telegram") == []  # marked delivered once the ids were recorded


async def test_partial_success_delivers_what_arrived_and_says_what_failed(tg: TelegramHarness) -> None:
    await tg.start()
    tg.provider.fail_next(400, {"error": {"message": "bad prompt somewhere", "type": "invalid_request_error"}})
    await tg.server.push_text("/imagine two owls --n 2")
    (photo,) = await tg.server.wait_for("sendPhoto")

    caption = photo.params["caption"]
    assert caption.startswith("two owls\n⚠️ 1 of 2 images failed: ")
    assert "bad prompt somewhere" not in caption  # the provider's raw text stays in the logs


async def test_image_breaking_photo_limits_goes_as_preview_plus_original_document(tg: TelegramHarness) -> None:
    service = await tg.start()
    await tg.server.push_text("/imagine a long banner --size 4096x100")  # 41:1, Telegram allows 20:1
    (photo,) = await tg.server.wait_for("sendPhoto")
    (document,) = await tg.server.wait_for("sendDocument")
    await tg.stop()

    preview = upload_of(photo, "photo").data
    w, h = _size(preview)
    assert max(w, h) <= 20 * min(w, h) and w + h <= 10000 and preview.startswith(b"\xff\xd8")
    original = upload_of(document, "document")
    (artifact,) = [a for a in await service.store.recent(5)]
    assert original.data == Path(artifact.path).read_bytes() and _size(original.data) == (4096, 100)
    assert document.params["reply_parameters"]["message_id"] == photo.result["message_id"]
    for message in (photo.result, document.result):
        assert await service.state.artifact_for_message(CHAT_KEY, str(message["message_id"])) == artifact.id


async def test_photo_refused_by_telegram_is_sent_as_a_document_with_caption_and_buttons(tg: TelegramHarness) -> None:
    await tg.start()
    tg.server.fail_next("sendPhoto", 400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
    await tg.server.push_text("/imagine a panorama")
    (document,) = await tg.server.wait_for("sendDocument")

    assert [c.status for c in tg.server.calls_of("sendPhoto")] == [400]
    assert document.ok and document.params["caption"] == "a panorama"
    assert "inline_keyboard" in document.params["reply_markup"]


async def test_flood_control_retry_after_is_waited_out_and_the_photo_still_arrives(tg: TelegramHarness) -> None:
    await tg.start()
    tg.server.fail_next("sendPhoto", 429, "Too Many Requests: retry after 1", retry_after=1)
    await tg.server.push_text("/imagine a busy street")
    (_, delivered) = await tg.server.wait_for("sendPhoto", 2, timeout=5)

    assert [c.status for c in tg.server.calls_of("sendPhoto")] == [429, 200]
    assert delivered.params["caption"] == "a busy street"
    assert [m.get("caption") for m in tg.server.sent_messages(ALICE.id)] == ["a busy street"]


async def test_delivery_style_both_sends_the_photo_and_the_original(tg: TelegramHarness) -> None:
    await tg.start(telegram={"delivery": "both"})
    await tg.server.push_text("/imagine two moons --n 2")
    (photos,) = await tg.server.wait_for("sendMediaGroup")
    (_, files) = await tg.server.wait_for("sendMediaGroup", 2)

    assert [m["type"] for m in photos.params["media"]] == ["photo", "photo"]
    assert [m["type"] for m in files.params["media"]] == ["document", "document"]
    assert all(m.get("caption") is None for m in files.params["media"])
    assert all(str(u.filename).endswith(".png") for u in files.uploads.values())  # the originals, untouched


async def test_a_delivery_that_keeps_failing_still_ends_with_a_message(tg: TelegramHarness) -> None:
    service = await tg.start()
    tg.server.fail_next("sendPhoto", 400, "Bad Request: not enough rights to send photos")
    tg.server.fail_next("sendDocument", 400, "Bad Request: not enough rights to send documents")
    await tg.server.push_text("/imagine a secret")
    (message,) = await tg.server.wait_for("sendMessage")
    await tg.stop()

    assert message.params["text"].startswith("The image was made, but sending the image to this chat failed")
    assert "not enough rights to send documents" in message.params["text"]
    (pending,) = await service.jobs.pending_delivery("telegram")  # not delivered: a restart tries again
    assert pending.status == "stored"


async def test_stored_but_undelivered_job_is_delivered_when_the_bot_starts(tg: TelegramHarness) -> None:
    service = await tg.open()
    request = ImageRequest("a lantern", ChatRef("telegram", str(ALICE.id), str(ALICE.id)),
                           origin={"chat_id": ALICE.id, "reply_to": 77})
    async with open_service(tg.config) as other:  # another process (a CLI call) while the bot was down
        result = await other.submit(request)
    assert [r.id for r in await service.jobs.pending_delivery("telegram")] == [result.job_id]

    await tg.run_bot()
    (photo,) = await tg.server.wait_for("sendPhoto")
    await tg.stop()

    assert photo.params["chat_id"] == ALICE.id and photo.params["reply_parameters"]["message_id"] == 77
    assert photo.params["caption"] == "a lantern\n⏱ Delivered after the bot restarted."
    record = await service.jobs.get(result.job_id)
    assert record is not None and record.status == "delivered"
    shown = await service.state.artifact_for_message(CHAT_KEY, str(photo.result["message_id"]))
    assert shown == result.artifacts[0].id


async def test_a_photo_send_that_may_have_arrived_is_not_repeated(tg: TelegramHarness) -> None:
    """A 5xx after sendPhoto can come after Telegram posted it: repeating it would show the image twice.
    The chat is told instead, and the job stays stored for the next start."""
    service = await tg.start()
    tg.server.fail_next("sendPhoto", 502, "Bad Gateway")
    await tg.server.push_text("/imagine a quiet harbour")
    (message,) = await tg.server.wait_for("sendMessage")
    await tg.stop()

    assert [c.status for c in tg.server.calls_of("sendPhoto")] == [502]
    assert message.params["text"].startswith("The image was made, but sending the image to this chat failed")
    (pending,) = await service.jobs.pending_delivery("telegram")  # for the next start, not this run
    assert pending.status == "stored"
    assert await service.pending_deliveries("telegram") == []


async def test_calls_that_post_nothing_are_still_retried_after_a_5xx(tg: TelegramHarness) -> None:
    tg.server.fail_next("setMyCommands", 502, "Bad Gateway")
    await tg.start()
    assert [c.status for c in tg.server.calls_of("setMyCommands")] == [502, 200]
