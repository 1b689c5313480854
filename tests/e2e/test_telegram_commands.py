"""Telegram commands end to end: registration, /imagine and its aliases and options, /help, /ratio,
/settings (text and buttons), /last, /history, /cancel, and the feedback while a job runs."""

from __future__ import annotations

from dataclasses import replace

from bots.telegram import COMMANDS
from bots.telegram.keyboards import Setting
from tests.e2e.telegram_support import FAST, TelegramHarness, artifact_of, upload_of
from tests.fakes.fake_telegram import ALICE, BOB, GROUP

pytest_plugins = ["tests.e2e.telegram_fixtures"]


def _generation_bodies(tg: TelegramHarness) -> list[dict[str, object]]:
    return [r.json for r in tg.provider.requests_of("/images/generations")]


async def test_commands_are_registered_and_help_names_the_model(tg: TelegramHarness) -> None:
    await tg.start()
    await tg.server.push_text("/start")
    (answer,) = await tg.server.wait_for("sendMessage")

    (registered,) = tg.server.calls_of("setMyCommands")
    names = [c["command"] for c in registered.params["commands"]]
    assert names == [c.command for c in COMMANDS]
    assert {"imagine", "image", "draw", "edit", "ratio", "settings", "last", "history", "cancel", "help"} <= set(names)
    assert "custom (flux-dev)" in answer.params["text"] and "/imagine" in answer.params["text"]
    assert tg.provider.requests == []


async def test_imagine_aliases_and_inline_options_reach_the_provider(tg: TelegramHarness) -> None:
    await tg.start()
    await tg.server.push_text("/imagine a red fox --ar 16:9")
    await tg.server.wait_for("sendPhoto")
    await tg.server.push_text("/draw a blue fox —size 640x320")  # a phone turned "--" into an em dash
    await tg.server.wait_for("sendPhoto", 2)
    await tg.server.push_text("/image a green fox --n 2 --ar=9:16")
    (album,) = await tg.server.wait_for("sendMediaGroup")
    await tg.stop()

    bodies = _generation_bodies(tg)
    assert [(b["prompt"], b["size"]) for b in bodies[:2]] == [("a red fox", "1536x1024"), ("a blue fox", "640x320")]
    assert [(b["prompt"], b["size"]) for b in bodies[2:]] == [("a green fox", "1024x1536")] * 2
    first, second = tg.server.calls_of("sendPhoto")
    assert first.params["caption"] == "a red fox" and second.params["caption"] == "a blue fox"
    assert [m.get("caption") for m in album.result] == ["a green fox", None]


async def test_bad_options_are_explained_without_a_provider_call(tg: TelegramHarness) -> None:
    await tg.start()
    await tg.server.push_text("/imagine a fox --style noir")
    await tg.server.push_text("/imagine")
    await tg.server.push_text("/imagine a fox --ar 50:1")
    answers = await tg.server.wait_for("sendMessage", 3)

    texts = sorted(a.params["text"] for a in answers)
    assert any(t.startswith("Unknown option --style") for t in texts)
    assert any("Usage: /imagine" in t for t in texts)
    assert any("too extreme" in t for t in texts)
    assert tg.provider.requests == []


async def test_commands_addressed_to_the_bot_work_in_groups(tg: TelegramHarness) -> None:
    await tg.start()
    await tg.server.push_text("/imagine@pixbot_test_bot a castle", chat=GROUP)
    (photo,) = await tg.server.wait_for("sendPhoto")

    assert photo.params["chat_id"] == GROUP.id and photo.params["caption"] == "a castle"


async def test_ratio_and_settings_change_this_chats_requests(tg: TelegramHarness) -> None:
    await tg.start()
    await tg.server.push_text("/ratio 9:16")
    await tg.server.wait_for("sendMessage")
    await tg.server.push_text("/settings style document")
    (_, shown) = await tg.server.wait_for("sendMessage", 2)
    await tg.server.push_text("/imagine a tall tower")
    (document,) = await tg.server.wait_for("sendDocument")

    assert "aspect ratio (ar): 9:16" in shown.params["text"] and "sent as (style): document" in shown.params["text"]
    assert _generation_bodies(tg)[0]["size"] == "1024x1536"
    assert tg.server.calls_of("sendPhoto") == []
    assert document.params["caption"] == "a tall tower" and upload_of(document, "document").filename.endswith(".png")

    query = await tg.server.push_callback(shown.result, Setting(name="style", value="photo").pack())
    edited = (await tg.server.wait_for("editMessageText"))[0]
    assert "sent as (style): photo" in edited.params["text"]
    assert tg.server.calls_of("answerCallbackQuery")[0].params["callback_query_id"] == query["id"]
    await tg.server.push_text("/imagine a short tower")
    await tg.server.wait_for("sendPhoto")


async def test_settings_refuse_bad_values(tg: TelegramHarness) -> None:
    await tg.start()
    await tg.server.push_text("/settings n 99")
    (answer,) = await tg.server.wait_for("sendMessage")
    assert "1 to 8 images" in answer.params["text"]


async def test_last_and_history_show_this_chats_images(tg: TelegramHarness) -> None:
    await tg.start()
    await tg.server.push_text("/last")
    (empty,) = await tg.server.wait_for("sendMessage")
    await tg.server.push_text("/imagine a lighthouse")
    (made,) = await tg.server.wait_for("sendPhoto")
    await tg.server.push_text("/last")
    (_, again) = await tg.server.wait_for("sendPhoto", 2)
    await tg.server.push_text("/history")
    (_, history) = await tg.server.wait_for("sendMessage", 2)
    await tg.stop()

    artifact_id = artifact_of(made)
    assert "no image in this chat yet" in empty.params["text"]
    assert again.params["caption"] == f"{artifact_id}: a lighthouse"
    assert f"{artifact_id} · " in history.params["text"] and "a lighthouse" in history.params["text"]
    shown = await tg.service.state.artifact_for_message(f"telegram:{ALICE.id}", str(again.result["message_id"]))
    assert shown == artifact_id  # replying to /last's photo edits it


async def test_cancel_stops_the_running_job_and_says_so(tg: TelegramHarness) -> None:
    await tg.start()
    tg.provider.hold()
    await tg.server.push_text("/imagine a slow painting")
    await tg.provider.wait_for_requests(1)
    await tg.server.push_text("/cancel")
    answers = await tg.server.wait_for("sendMessage", 2)
    await tg.server.push_text("/cancel")
    await tg.server.wait_for("sendMessage", 3)
    await tg.stop()

    texts = [c.params["text"] for c in tg.server.calls_of("sendMessage")]
    assert "Stopping your running job" in texts[0]
    assert "Stopped. No image was made." in {a.params["text"] for a in answers}
    assert texts[2] == "Nothing of yours is running in this chat."
    assert tg.server.calls_of("sendPhoto") == []


async def test_long_jobs_show_upload_photo_and_one_status_message_removed_at_the_end(tg: TelegramHarness) -> None:
    await tg.start(options=replace(FAST, status_after=0.0))
    tg.provider.hold()
    await tg.server.push_text("/imagine a slow sunrise --n 2")
    (status,) = await tg.server.wait_for("sendMessage")
    tg.provider.release()
    (deleted,) = await tg.server.wait_for("deleteMessage")
    await tg.server.wait_for("sendMediaGroup")

    assert status.params["text"].startswith("🎨 ")
    assert deleted.params["message_id"] == status.result["message_id"]
    assert tg.server.message(ALICE.id, status.result["message_id"]) is None
    actions = tg.server.calls_of("sendChatAction")
    assert actions and {a.params["action"] for a in actions} == {"upload_photo"}



async def test_image_ids_from_history_are_accepted_by_edit_and_show(tg: TelegramHarness) -> None:
    """/history and captions show img_… ids; /edit <id> edits that image (not the last one, and the id is
    not part of the prompt), /show <id> posts it again; an unknown or another chat's id is refused."""
    await tg.start()
    await tg.server.push_text("/imagine a lighthouse")
    (lighthouse,) = await tg.server.wait_for("sendPhoto")
    await tg.server.push_text("/imagine a harbour")  # now the chat's last image
    await tg.server.wait_for("sendPhoto", 2)
    await tg.server.push_text("/imagine a forest", chat=GROUP)  # another chat's image
    (*_, forest) = await tg.server.wait_for("sendPhoto", 3)
    image_id, foreign = artifact_of(lighthouse), artifact_of(forest)

    await tg.server.push_text(f"/edit {image_id} make it blue")
    (*_, edited) = await tg.server.wait_for("sendPhoto", 4)
    (edit,) = tg.provider.requests_of("/images/edits")
    stored = await tg.service.artifact(image_id)
    assert stored is not None and edit.files[0].data == await tg.service.read(stored)
    assert edit.form_fields["prompt"] == "make it blue"
    assert edited.params["caption"] == f"make it blue\n✏️ Edited {image_id}"

    await tg.server.push_text(f"/show {image_id}")
    (*_, shown) = await tg.server.wait_for("sendPhoto", 5)
    assert shown.params["caption"] == f"{image_id}: a lighthouse" and artifact_of(shown) == image_id
    for unknown in ("img_000000000000", foreign):
        await tg.server.push_text(f"/edit {unknown} make it red")
        await tg.server.push_text(f"/show {unknown}")
    refusals = await tg.server.wait_for("sendMessage", 4)
    await tg.stop()
    assert all(r.params["text"].startswith("There is no image img_") for r in refusals)
    assert len(tg.provider.requests_of("/images/edits")) == 1  # no provider call for a refused id


async def test_cancel_in_a_group_stops_only_your_own_jobs(tg: TelegramHarness) -> None:
    """/cancel used to stop everyone's jobs in a group, without saying whose."""
    await tg.start()
    tg.provider.hold()
    await tg.server.push_text("/imagine a slow painting", chat=GROUP, user=ALICE)
    await tg.provider.wait_for_requests(1)
    await tg.server.push_text("/cancel", chat=GROUP, user=BOB)
    (bobs,) = await tg.server.wait_for("sendMessage")
    assert bobs.params["text"] == "Nothing of yours is running in this chat."
    tg.provider.release()
    (photo,) = await tg.server.wait_for("sendPhoto")  # alice's job went on
    await tg.stop()
    assert photo.params["chat_id"] == GROUP.id and photo.params["caption"] == "a slow painting"


async def test_a_ratio_the_model_cannot_make_is_flagged_when_set_and_the_nearest_is_used(tg: TelegramHarness) -> None:
    """Every image used to say "21:9 not supported; used 1:1" after /ratio 21:9: a square for a wide ask."""
    await tg.start()
    await tg.server.push_text("/ratio 21:9")
    (answer,) = await tg.server.wait_for("sendMessage")
    assert answer.params["text"] == ("This chat's aspect ratio is now 21:9.\n"
                                     "Note: flux-dev cannot make 21:9; images will be 16:9, the nearest it makes.")
    await tg.server.push_text("/imagine a long beach")
    (photo,) = await tg.server.wait_for("sendPhoto")
    await tg.stop()
    assert [r.json["size"] for r in tg.provider.requests_of("/images/generations")] == ["1536x1024"]
    assert photo.params["caption"] == ("a long beach\nℹ️ aspect ratio 21:9 is not supported by flux-dev; "
                                       "used 16:9, the nearest it makes")
