"""Result buttons are persistent: after a restart (a new process over the same data) every one still works."""

from __future__ import annotations

from tests.e2e.discord_support import DiscordHarness, result_of
from tests.fakes.discord_wire import walk_components
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_provider import FakeProvider
from tests.images import png_bytes

pytest_plugins = ["tests.e2e.discord_fixtures"]

EPHEMERAL = 1 << 6


async def test_every_button_works_after_a_restart(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    await harness.start()
    rec = await fake.invoke_slash(fake.alice, "imagine", prompt="a red fox", aspect_ratio="1:1", count=2)
    result = await result_of(fake, rec)
    first, second = (a["filename"].removesuffix(".png") for a in result["attachments"])
    await harness.wait_delivered()
    service = await harness.restart()
    assert len(fake.identifies) == 2

    again = await result_of(fake, await fake.click_button(fake.bob, result, f"pixbot:again:{first}"))
    assert len(again["attachments"]) == 2 and again["id"] != result["id"] and again in fake.messages()
    assert [r.json["prompt"] for r in provider.requests] == ["a red fox"] * 4
    assert {r.json["size"] for r in provider.requests[2:]} == {"1024x1024"}

    wide = await result_of(fake, await fake.click_button(fake.bob, result, f"pixbot:r16x9:{first}"))
    assert len(wide["attachments"]) == 2 and {r.json["size"] for r in provider.requests[4:]} == {"1536x1024"}

    opened = await fake.click_button(fake.alice, result, f"pixbot:edit:{second}")
    modal = await fake.wait_for(lambda: opened.modal)
    (text_input,) = [c for c in walk_components(modal["components"]) if c["type"] == 4]
    submitted = await fake.submit_modal(fake.alice, modal["custom_id"], {text_input["custom_id"]: "add snow"})
    edited = await result_of(fake, submitted)
    (edit,) = provider.requests_of("/images/edits")
    stored = await service.store.get(second)
    assert stored is not None and [f.data for f in edit.files] == [await service.store.read(stored)]
    assert edited["content"] == f"✏️ Edited {second}"

    original = await result_of(fake, await fake.click_button(fake.bob, result, f"pixbot:orig:{second}"))
    (attachment,) = original["attachments"]
    assert original["flags"] & EPHEMERAL and original["content"].startswith(f"Original of `{second}`")
    assert fake.cdn_bytes(attachment["url"]) == await service.store.read(stored)
    assert result["components"] and result["content"] == ""  # the clicked message itself is left alone


async def test_again_on_an_edit_repeats_the_edit_of_the_same_source(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    service = await harness.start()
    base = await result_of(fake, await fake.invoke_slash(fake.alice, "imagine", prompt="a boat"))
    source = base["attachments"][0]["filename"].removesuffix(".png")
    edited = await result_of(fake, await fake.invoke_slash(fake.alice, "edit", prompt="add a sail"))
    made = edited["attachments"][0]["filename"].removesuffix(".png")
    again = await result_of(fake, await fake.click_button(fake.bob, edited, f"pixbot:again:{made}"))
    first_edit, second_edit = provider.requests_of("/images/edits")
    assert first_edit.files[0].data == second_edit.files[0].data
    stored = await service.store.get(source)
    assert stored is not None and second_edit.files[0].data == await service.store.read(stored)
    assert again["content"] == f"🔁 Again\n✏️ Edited the same image as before ({source})"


async def test_buttons_on_unknown_artifacts_answer_plainly(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    service = await harness.start()
    result = await result_of(fake, await fake.invoke_slash(fake.alice, "imagine", prompt="a kite"))
    artifact_id = result["attachments"][0]["filename"].removesuffix(".png")
    stored = await service.store.get(artifact_id)
    assert stored is not None
    for suffix in (".png", ".json"):  # the operator cleaned the media folder
        (service.store.root / stored.created_at[:10] / f"{artifact_id}{suffix}").unlink()
    click = await fake.click_button(fake.bob, result, f"pixbot:again:{artifact_id}")
    gone = await result_of(fake, click)
    assert click.response_type == 4 and click.ephemeral
    assert gone["content"] == "That image is no longer stored, so it cannot be made again."
    original = await result_of(fake, await fake.click_button(fake.bob, result, f"pixbot:orig:{artifact_id}"))
    assert original["content"] == "That image is no longer stored." and original["flags"] & EPHEMERAL
    assert len(provider.requests) == 1


async def test_again_on_an_image_made_from_an_upload_redoes_that_edit(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    """The attachment is kept when the edit runs, so 🔁 Again works after a restart (and after Discord's
    attachment URL has expired), as on every platform."""
    await harness.start()
    upload = png_bytes(96, 64)
    edited = await result_of(fake, await fake.invoke_slash(fake.alice, "edit", prompt="make it gold",
                                                           image=("cat.png", upload)))
    made = edited["attachments"][0]["filename"].removesuffix(".png")
    await harness.wait_delivered()
    await harness.restart()
    again = await result_of(fake, await fake.click_button(fake.bob, edited, f"pixbot:again:{made}"))
    first, second = provider.requests_of("/images/edits")
    assert first.files[0].data == second.files[0].data == upload
    assert len(again["attachments"]) == 1 and again["content"] == "🔁 Again\n✏️ Edited cat.png"
