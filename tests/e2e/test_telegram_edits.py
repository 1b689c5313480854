"""Edit gestures end to end: replies to the bot's images (message → artifact map) and to users' photos and
image files (downloaded with getFile), photos and albums with a caption, /edit on the last image, the ✏️
force-reply prompt, and inputs too large for Telegram to hand over."""

from __future__ import annotations

from pathlib import Path

import pytest

from bots.telegram.keyboards import EditImage
from tests.e2e.telegram_support import TelegramHarness, artifact_of
from tests.fakes.fake_telegram import ALICE, GROUP
from tests.images import jpeg_bytes, png_bytes

pytest_plugins = ["tests.e2e.telegram_fixtures"]

_EDITS = "/images/edits"


async def test_reply_to_the_bots_image_edits_exactly_that_image(tg: TelegramHarness) -> None:
    service = await tg.start()
    await tg.server.push_text("/imagine a cat")
    (first,) = await tg.server.wait_for("sendPhoto")
    await tg.server.push_text("/imagine a dog")
    (_, second) = await tg.server.wait_for("sendPhoto", 2)
    await tg.server.push_text("make it grey", reply_to=first.result)  # not the last image: the first one
    (_, _, edited) = await tg.server.wait_for("sendPhoto", 3)

    cat = await service.store.get(artifact_of(first))
    assert cat is not None and artifact_of(second) != cat.id
    (edit_request,) = tg.provider.requests_of(_EDITS)
    assert [f.data for f in edit_request.files] == [Path(cat.path).read_bytes()]
    assert edit_request.form_fields["prompt"] == "make it grey"
    assert edited.params["caption"] == f"make it grey\n✏️ Edited the image you replied to ({cat.id})"
    assert tg.server.calls_of("getFile") == []  # ours: found through the map, not downloaded


async def test_reply_to_a_users_photo_downloads_the_largest_size(tg: TelegramHarness) -> None:
    await tg.start()
    user_photo = await tg.server.push_photo(png_bytes(900, 600))
    (hint,) = await tg.server.wait_for("sendMessage")
    await tg.server.push_text("turn it into a watercolour", reply_to=user_photo)
    (edited,) = await tg.server.wait_for("sendPhoto")

    assert "Add a caption" in hint.params["text"]
    (get_file,) = tg.server.calls_of("getFile")
    largest = user_photo["photo"][-1]
    assert get_file.params["file_id"] == largest["file_id"]
    (edit_request,) = tg.provider.requests_of(_EDITS)
    assert edit_request.files[0].data == tg.server.file_bytes(largest["file_id"])
    assert edited.params["caption"].endswith("✏️ Edited the image you replied to")


async def test_reply_to_a_users_image_file_uses_its_original_bytes(tg: TelegramHarness) -> None:
    await tg.start()
    original = jpeg_bytes(500, 300)
    user_file = await tg.server.push_document(original, "scan.jpg")
    await tg.server.wait_for("sendMessage")  # the "add a caption" hint
    await tg.server.push_text("sharpen it", reply_to=user_file)
    await tg.server.wait_for("sendPhoto")

    (edit_request,) = tg.provider.requests_of(_EDITS)
    assert edit_request.files[0].data == original and edit_request.files[0].filename == "scan.jpg"


async def test_photo_with_caption_and_image_file_with_caption_are_edited(tg: TelegramHarness) -> None:
    await tg.start()
    original = jpeg_bytes(300, 200)
    await tg.server.push_document(original, "holiday.jpg", caption="remove the tourists")
    (from_file,) = await tg.server.wait_for("sendPhoto")
    await tg.server.push_photo(png_bytes(), caption="add a moon")
    await tg.server.wait_for("sendPhoto", 2)

    first, second = tg.provider.requests_of(_EDITS)
    assert first.files[0].data == original and first.files[0].filename == "holiday.jpg"  # a file keeps its bytes
    assert first.form_fields["prompt"] == "remove the tourists" and second.form_fields["prompt"] == "add a moon"
    assert "✏️ Edited your image" in from_file.params["caption"]


async def test_album_with_caption_uses_every_image_as_a_reference(tg: TelegramHarness) -> None:
    await tg.start()
    for index in range(3):
        await tg.server.push_photo(png_bytes(64 + index, 64), caption="combine these" if index == 0 else None,
                                   media_group_id="album-1")
    (result,) = await tg.server.wait_for("sendPhoto")
    await tg.stop()

    (edit_request,) = tg.provider.requests_of(_EDITS)
    assert len(edit_request.files) == 3 and edit_request.form_fields["prompt"] == "combine these"
    assert len(tg.server.calls_of("getFile")) == 3
    assert result.params["caption"] == "combine these\n✏️ Edited your 3 images"


async def test_album_in_a_group_needs_a_mention(tg: TelegramHarness) -> None:
    await tg.start()
    for index in range(2):
        await tg.server.push_photo(png_bytes(), caption="holiday pics" if index == 0 else None,
                                   media_group_id="chatter", chat=GROUP)
    for index in range(2):
        caption = "@pixbot_test_bot make them one panorama" if index == 0 else None
        await tg.server.push_photo(png_bytes(), caption=caption, media_group_id="for-the-bot", chat=GROUP)
    (result,) = await tg.server.wait_for("sendPhoto")
    await tg.stop()

    (edit_request,) = tg.provider.requests_of(_EDITS)
    assert edit_request.form_fields["prompt"] == "make them one panorama"
    assert result.params["chat_id"] == GROUP.id and len(tg.server.calls_of("sendPhoto")) == 1


async def test_edit_command_without_a_reply_edits_the_chats_last_image(tg: TelegramHarness) -> None:
    service = await tg.start()
    await tg.server.push_text("/edit make it night")
    (nothing,) = await tg.server.wait_for("sendMessage")
    await tg.server.push_text("/imagine a village")
    (made,) = await tg.server.wait_for("sendPhoto")
    await tg.server.push_text("/edit make it night")
    (_, edited) = await tg.server.wait_for("sendPhoto", 2)

    assert "no image in this chat to edit yet" in nothing.params["text"]
    village = artifact_of(made)
    assert edited.params["caption"] == f"make it night\n✏️ Edited the last image in this chat ({village})"
    night = await service.store.get(artifact_of(edited))
    assert night is not None and night.parent_id == village


async def test_edit_button_asks_for_the_change_and_the_reply_edits_that_image(tg: TelegramHarness) -> None:
    await tg.start()
    await tg.server.push_text("/imagine a boat")
    (made,) = await tg.server.wait_for("sendPhoto")
    boat = artifact_of(made)
    await tg.server.push_callback(made.result, EditImage(artifact_id=boat).pack())
    (prompt,) = await tg.server.wait_for("sendMessage")
    await tg.server.push_text("paint it red", reply_to=prompt.result)
    (_, edited) = await tg.server.wait_for("sendPhoto", 2)

    assert prompt.params["reply_markup"]["force_reply"] is True and boat in prompt.params["text"]
    assert prompt.params["entities"][0]["type"] == "text_mention"  # so the force-reply is the clicker's
    assert edited.params["caption"] == f"paint it red\n✏️ Edited the image you replied to ({boat})"


async def test_input_over_20_mb_is_refused_before_any_download_or_provider_call(tg: TelegramHarness) -> None:
    await tg.start()
    await tg.server.push_document(b"\x89PNG" + b"\0" * (20 * 1024 * 1024), "huge.png", caption="make it blue")
    (refusal,) = await tg.server.wait_for("sendMessage")

    assert "That file is 20 MiB" in refusal.params["text"] and "up to 20 MiB" in refusal.params["text"]
    assert tg.server.calls_of("getFile") == [] and tg.provider.requests == []
    assert refusal.params["chat_id"] == ALICE.id


async def test_a_file_that_is_not_an_image_is_refused_plainly(tg: TelegramHarness) -> None:
    await tg.start()
    await tg.server.push_document(b"%PDF-1.4", "notes.pdf", caption="illustrate this")
    (refusal,) = await tg.server.wait_for("sendMessage")

    assert refusal.params["text"].startswith("That file is not an image")
    assert tg.provider.requests == []


async def test_a_failed_file_download_is_told_plainly_without_the_token_in_the_logs(
    tg: TelegramHarness, caplog: pytest.LogCaptureFixture
) -> None:
    await tg.start()
    user_file = await tg.server.push_document(jpeg_bytes(200, 100), "scan.jpg")
    await tg.server.wait_for("sendMessage")  # the "add a caption" hint
    del tg.server.files.by_path[tg.server.files.by_id[user_file["document"]["file_id"]].file_path]  # 404 now
    await tg.server.push_text("sharpen it", reply_to=user_file)
    (_, refusal) = await tg.server.wait_for("sendMessage", 2)

    assert refusal.params["text"] == "Telegram would not hand over that image. Send it again."
    assert len(tg.server.calls_of("getFile")) == 1 and tg.provider.requests == []
    assert tg.server.token not in caplog.text


async def test_edits_keep_the_shape_of_the_image_they_change(tg: TelegramHarness) -> None:
    """A reply to a 1536×1024 result and an 800×600 photo used to come back square (size 1024x1024)."""
    await tg.start()
    await tg.server.push_text("/imagine a wide bay --ar 16:9")
    (wide,) = await tg.server.wait_for("sendPhoto")
    await tg.server.push_text("add a moon", reply_to=wide.result)
    await tg.server.wait_for("sendPhoto", 2)
    await tg.server.push_photo(jpeg_bytes(800, 600), caption="make it a watercolour")
    await tg.server.wait_for("sendPhoto", 3)
    await tg.server.push_text("/edit make it square --ar 1:1", reply_to=wide.result)  # asked for: obeyed
    await tg.server.wait_for("sendPhoto", 4)

    reply, photo, square = tg.provider.requests_of(_EDITS)
    assert reply.form_fields["size"] == "1536x1024"  # 3:2, made at the nearest of the model's shapes (4:3)
    assert photo.form_fields["size"] == "1536x1024"  # 4:3
    assert square.form_fields["size"] == "1024x1024"


async def test_a_size_with_a_ratio_becomes_dimensions_of_that_ratio(tg: TelegramHarness) -> None:
    """``--ar 16:9 --size 2K`` used to send ``size: 2K`` alone, a square, reported as applied."""
    await tg.start()
    await tg.server.push_text("/imagine a red fox --ar 16:9 --size 2K")
    (made,) = await tg.server.wait_for("sendPhoto")
    (request,) = tg.provider.requests_of("/images/generations")
    assert request.json["size"] == "2048x1152"
    stored = await tg.service.artifact(artifact_of(made))
    assert stored is not None and (stored.width, stored.height) == (2048, 1152)
    assert stored.applied["size"] == "2048x1152" and stored.applied["aspect_ratio"] == "16:9"
