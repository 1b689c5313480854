"""Gestures on messages: the Edit image… menu and its modal, the reply gesture, and running without the
Message Content intent when Discord refuses it (gateway close 4014)."""

from __future__ import annotations

from tests.e2e.discord_support import DiscordHarness, result_of
from tests.fakes.discord_wire import Json, walk_components
from tests.fakes.fake_discord import FakeDiscord, FakeInteraction, FakeUser
from tests.fakes.fake_provider import FakeProvider
from tests.images import jpeg_bytes, png_bytes

pytest_plugins = ["tests.e2e.discord_fixtures"]

PNG = png_bytes(80, 60)
JPEG = jpeg_bytes(50, 40)
EPHEMERAL = 1 << 6
MESSAGE_CONTENT = 1 << 15
MENU = "Edit image…"


async def _imagine(fake: FakeDiscord, prompt: str = "a fox") -> tuple[Json, str]:
    """A result message and the artifact id it shows."""
    result = await result_of(fake, await fake.invoke_slash(fake.alice, "imagine", prompt=prompt))
    return result, result["attachments"][0]["filename"].removesuffix(".png")


async def _submit_prompt(fake: FakeDiscord, user: FakeUser, opened: FakeInteraction, prompt: str) -> FakeInteraction:
    modal = await fake.wait_for(lambda: opened.modal)
    (text_input,) = [c for c in walk_components(modal["components"]) if c["type"] == 4]
    return await fake.submit_modal(user, modal["custom_id"], {text_input["custom_id"]: prompt})


async def _reply_to(fake: FakeDiscord, message: Json) -> Json:
    """The bot's reply to `message`, once posted."""
    def find() -> Json | None:
        return next((m for m in fake.messages() if m["author"]["id"] == fake.app_id
                     and (m.get("message_reference") or {}).get("message_id") == message["id"]), None)

    return await fake.wait_for(find, timeout=10)


async def _stored_bytes(harness: DiscordHarness, artifact_id: str) -> bytes:
    assert harness.service is not None
    artifact = await harness.service.store.get(artifact_id)
    assert artifact is not None
    return await harness.service.store.read(artifact)


async def test_menu_opens_a_modal_then_edits_the_image_of_someone_elses_message(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    await harness.start()
    target = await fake.send_user_message(fake.bob, "my cat", files=[("cat.png", PNG)])
    opened = await fake.invoke_message_command(fake.alice, MENU, target)
    await fake.wait_for(lambda: opened.modal)
    assert opened.response_type == 9 and opened.modal is not None
    assert opened.modal["custom_id"].startswith("pixbot:prompt:") and opened.modal["title"] == "Edit image"
    submitted = await _submit_prompt(fake, fake.alice, opened, "give it a hat")
    result = await result_of(fake, submitted)
    (edit,) = provider.requests_of("/images/edits")
    assert edit.form_fields["prompt"] == "give it a hat" and [f.data for f in edit.files] == [PNG]
    assert result["content"] == "✏️ Edited cat.png" and not submitted.ephemeral and result in fake.messages()


async def test_menu_on_our_result_edits_that_exact_stored_image(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    await harness.start()
    result, artifact_id = await _imagine(fake)
    await harness.wait_delivered()
    opened = await fake.invoke_message_command(fake.bob, MENU, result)
    edited = await result_of(fake, await _submit_prompt(fake, fake.bob, opened, "make it night"))
    (edit,) = provider.requests_of("/images/edits")
    assert [f.data for f in edit.files] == [await _stored_bytes(harness, artifact_id)]
    assert edited["content"] == f"✏️ Edited {artifact_id}"


async def _open_with_choice(fake: FakeDiscord, user: FakeUser, target: Json) -> tuple[FakeInteraction, Json, Json]:
    """Open the menu's modal on ``target``; returns it with its prompt and its "Which image?" inputs."""
    opened = await fake.invoke_message_command(user, MENU, target)
    modal = await fake.wait_for(lambda: opened.modal)
    prompt, which = [c for c in walk_components(modal["components"]) if c["type"] == 4]
    return opened, prompt, which


async def test_menu_on_a_result_with_several_images_asks_which_and_edits_that_one(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    await harness.start()
    result = await result_of(fake, await fake.invoke_slash(fake.alice, "imagine", prompt="two foxes", count=2))
    shown = await harness.wait_delivered()
    assert [key for key, _ in shown] == [result["id"], f"{result['id']}#2"]
    opened, prompt, which = await _open_with_choice(fake, fake.bob, result)
    assert which["label"] == "Which image? (1–2)" and which.get("value") == "1"
    submitted = await fake.submit_modal(fake.bob, opened.modal["custom_id"],  # type: ignore[index]
                                        {prompt["custom_id"]: "make it night", which["custom_id"]: "2"})
    edited = await result_of(fake, submitted)
    (edit,) = provider.requests_of("/images/edits")
    assert [f.data for f in edit.files] == [await _stored_bytes(harness, shown[1][1])]
    assert edited["content"] == f"✏️ Edited {shown[1][1]}"

    opened, prompt, which = await _open_with_choice(fake, fake.bob, result)
    refused = await result_of(fake, await fake.submit_modal(
        fake.bob, opened.modal["custom_id"], {prompt["custom_id"]: "x", which["custom_id"]: "3"}))  # type: ignore[index]
    assert "pick a number from 1 to 2" in refused["content"] and len(provider.requests_of("/images/edits")) == 1


async def test_menu_picks_the_chosen_attachment_of_someone_elses_message(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    await harness.start()
    target = await fake.send_user_message(fake.bob, "my pets", files=[("cat.png", PNG), ("dog.jpg", JPEG)])
    opened, prompt, which = await _open_with_choice(fake, fake.alice, target)
    submitted = await fake.submit_modal(fake.alice, opened.modal["custom_id"],  # type: ignore[index]
                                        {prompt["custom_id"]: "give it a hat", which["custom_id"]: "2"})
    result = await result_of(fake, submitted)
    (edit,) = provider.requests_of("/images/edits")
    assert [f.data for f in edit.files] == [JPEG] and result["content"] == "✏️ Edited dog.jpg"


async def test_menu_on_a_message_without_an_image_is_refused_at_once(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    await harness.start()
    target = await fake.send_user_message(fake.bob, "just words")
    rec = await fake.invoke_message_command(fake.alice, MENU, target)
    answer = await result_of(fake, rec)
    assert rec.modal is None and answer["flags"] & EPHEMERAL
    assert answer["content"] == "That message has no image to edit." and provider.requests == []


async def test_reply_mentioning_the_bot_edits_the_image_replied_to_and_is_remembered(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    service = await harness.start()
    result, artifact_id = await _imagine(fake)
    await harness.wait_delivered()
    sent = await fake.send_user_message(fake.bob, f"{fake.bot_user.mention} make it night", reply_to=result)
    reply = await _reply_to(fake, sent)
    (edit,) = provider.requests_of("/images/edits")
    assert edit.form_fields["prompt"] == "make it night"
    assert [f.data for f in edit.files] == [await _stored_bytes(harness, artifact_id)]
    assert reply["type"] == 19 and reply["content"] == f"✏️ Edited {artifact_id}" and len(reply["attachments"]) == 1
    ((message_id, new_id),) = await harness.wait_delivered(2)
    assert message_id == reply["id"] and new_id != artifact_id
    again = await fake.send_user_message(fake.alice, f"{fake.bot_user.mention} add stars", reply_to=reply)
    await _reply_to(fake, again)  # a reply to the reply edits the newer image
    assert [f.data for f in provider.requests_of("/images/edits")[1].files] == [await _stored_bytes(harness, new_id)]
    ((_, newest),) = await harness.wait_delivered(3)
    assert newest != new_id and await service.state.last_artifact(f"discord:{fake.channel_id}") == newest


async def test_reply_to_someone_elses_uncached_image_downloads_it(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    await harness.start()
    image = await fake.send_user_message(fake.bob, "", files=[("photo.jpg", JPEG)], dispatch=False)
    sent = await fake.send_user_message(fake.alice, f"{fake.bot_user.mention} as a painting", reply_to=image,
                                        include_referenced=False)
    reply = await _reply_to(fake, sent)
    assert fake.calls_matching("GET", rf"/channels/{fake.channel_id}/messages/{image['id']}$")
    (edit,) = provider.requests_of("/images/edits")
    assert [f.data for f in edit.files] == [JPEG] and reply["content"] == "✏️ Edited photo.jpg"


async def test_images_attached_to_the_mention_come_first(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    await harness.start()
    result, _ = await _imagine(fake)
    sent = await fake.send_user_message(fake.alice, f"{fake.bot_user.mention} blend these", reply_to=result,
                                        files=[("a.png", PNG), ("b.jpg", JPEG)])
    reply = await _reply_to(fake, sent)
    (edit,) = provider.requests_of("/images/edits")
    assert [f.data for f in edit.files] == [PNG, JPEG] and reply["content"] == "✏️ Edited a.png, b.jpg"


async def test_a_plain_mention_generates_and_an_empty_one_gets_a_hint(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    await harness.start()
    sent = await fake.send_user_message(fake.alice, f"<@!{fake.app_id}> a castle at dusk")
    reply = await _reply_to(fake, sent)
    (generation,) = provider.requests_of("/images/generations")
    assert generation.json["prompt"] == "a castle at dusk" and len(reply["attachments"]) == 1
    empty = await fake.send_user_message(fake.alice, fake.bot_user.mention)
    hint = await _reply_to(fake, empty)
    assert hint["content"].startswith("Tell me what to change") and len(provider.requests) == 1
    unrelated = await fake.send_user_message(fake.alice, "talking to bob", mentions=[fake.bob])
    await _reply_to(fake, await fake.send_user_message(fake.alice, fake.bot_user.mention))  # a later marker
    assert not [m for m in fake.messages() if (m.get("message_reference") or {}).get("message_id") == unrelated["id"]]


async def test_refused_message_content_intent_falls_back_and_the_bot_still_works(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    fake.message_content_granted = False  # the developer-portal switch is off: Discord closes with 4014
    await harness.start()
    first, second = fake.identifies
    assert first["intents"] & MESSAGE_CONTENT and not second["intents"] & MESSAGE_CONTENT
    assert len(fake.calls_matching("PUT")) == 2  # commands were synced once (guild + global clear)
    result, artifact_id = await _imagine(fake)
    await harness.wait_delivered()
    sent = await fake.send_user_message(fake.bob, f"{fake.bot_user.mention} make it night", reply_to=result)
    reply = await _reply_to(fake, sent)  # the bot's own images stay visible, so this gesture still works
    assert reply["content"] == f"✏️ Edited {artifact_id}"
    image = await fake.send_user_message(fake.bob, "", files=[("cat.png", PNG)])
    blind = await fake.send_user_message(fake.alice, f"{fake.bot_user.mention} grey", reply_to=image)
    hint = await _reply_to(fake, blind)
    assert "Edit image…" in hint["content"] and len(provider.requests) == 2
    opened = await fake.invoke_message_command(fake.alice, MENU, image)  # the menu sees every message
    edited = await result_of(fake, await _submit_prompt(fake, fake.alice, opened, "grey"))
    assert edited["content"] == "✏️ Edited cat.png" and provider.requests_of("/images/edits")[-1].files[0].data == PNG
