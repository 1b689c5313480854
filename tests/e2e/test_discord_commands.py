"""Slash commands end to end: real discord.py against the fake Discord, a real service, the fake provider."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from tests.e2e.discord_support import DiscordHarness, result_of
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_provider import FakeProvider
from tests.images import png_bytes

pytest_plugins = ["tests.e2e.discord_fixtures"]

PNG = png_bytes(96, 64)
EPHEMERAL = 1 << 6


def _command(fake: FakeDiscord, name: str, store: dict[str, dict[str, object]] | None = None) -> dict[str, object]:
    commands = store if store is not None else fake.guild_commands[fake.guild_id]
    return next(c for c in commands.values() if c["name"] == name)


async def test_commands_are_synced_to_command_guilds_and_global_leftovers_cleared(
    harness: DiscordHarness, fake: FakeDiscord
) -> None:
    await harness.start()
    synced = {c["name"]: c for c in fake.guild_commands[fake.guild_id].values()}
    assert set(synced) == {"imagine", "edit", "settings", "last", "show", "history", "cancel", "help", "Edit image…"}
    assert synced["Edit image…"]["type"] == 3
    (cleared,) = fake.calls_matching("PUT", rf"/applications/{fake.app_id}/commands$")
    assert cleared.json == [] and fake.global_commands == {}
    options = {o["name"]: o for o in synced["imagine"]["options"]}
    assert options["prompt"]["required"] and options["prompt"]["max_length"] == 4000
    assert [c["value"] for c in options["aspect_ratio"]["choices"]][:3] == ["1:1", "3:4", "9:16"]
    assert (options["count"]["min_value"], options["count"]["max_value"]) == (1, 8)
    assert [c["value"] for c in options["size"]["choices"]] == ["1K", "2K", "4K"]
    edit_options = {o["name"]: o for o in synced["edit"]["options"]}
    assert edit_options["image"]["type"] == 11 and not edit_options["image"].get("required")


async def test_without_command_guilds_commands_are_global(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    await harness.start(discord={"commandGuilds": [], "apiBase": fake.base_url})  # /api/v10 is added
    assert {c["name"] for c in fake.global_commands.values()} >= {"imagine", "Edit image…"}
    assert fake.guild_commands.get(fake.guild_id, {}) == {}
    rec = await fake.invoke_slash(fake.alice, "imagine", prompt="a lighthouse")
    result = await result_of(fake, rec)
    assert len(result["attachments"]) == 1 and len(provider.requests) == 1


async def test_imagine_defers_then_edits_the_original_with_images_embeds_and_buttons(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    service = await harness.start()
    rec = await fake.invoke_slash(fake.alice, "imagine", prompt="a red fox", aspect_ratio="16:9", count=2)
    result = await result_of(fake, rec)
    callback = fake.calls_matching("POST", rf"/interactions/{rec.id}/")[0]
    assert callback.json == {"type": 5} and not rec.ephemeral  # public "thinking…", then the result
    assert result in fake.messages()
    bodies = [r.json for r in provider.requests_of("/images/generations")]
    assert len(bodies) == 2 and all(b["prompt"] == "a red fox" and b["size"] == "1536x1024" for b in bodies)
    names = [a["filename"] for a in result["attachments"]]
    assert len(names) == 2 and all(n.startswith("img_") and n.endswith(".png") for n in names)
    assert [e["image"]["url"] for e in result["embeds"]] == [f"attachment://{n}" for n in names]
    assert [e["title"] for e in result["embeds"]] == ["Image 1 of 2", "Image 2 of 2"]
    assert all(e["description"] == "a red fox" for e in result["embeds"])
    first, second = (n.removesuffix(".png") for n in names)
    ids = [[c["custom_id"] for c in row["components"]] for row in result["components"]]
    assert ids[0] == [f"pixbot:again:{first}", f"pixbot:r1x1:{first}", f"pixbot:r16x9:{first}",
                      f"pixbot:r9x16:{first}"]
    assert ids[1] == [f"pixbot:edit:{first}", f"pixbot:orig:{first}", f"pixbot:edit:{second}",
                      f"pixbot:orig:{second}"]
    chat = f"discord:{fake.channel_id}"
    assert await harness.wait_delivered() == [(result["id"], first), (f"{result['id']}#2", second)]
    assert await service.state.artifact_for_message(chat, result["id"]) == first
    assert await service.state.last_artifact(chat) == second


async def test_ignored_settings_are_shown_in_the_embed(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    await harness.start()
    rec = await fake.invoke_slash(fake.alice, "imagine", prompt="a tower", aspect_ratio="21:9")
    result = await result_of(fake, rec)
    (embed,) = result["embeds"]
    (field,) = embed["fields"]
    assert field["name"] == "Not applied" and "21:9" in field["value"]


async def test_edit_with_an_attachment_edits_that_image(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    await harness.start()
    rec = await fake.invoke_slash(fake.alice, "edit", prompt="make it blue", image=("cat.png", PNG))
    result = await result_of(fake, rec)
    (edit,) = provider.requests_of("/images/edits")
    assert edit.form_fields["prompt"] == "make it blue" and [f.data for f in edit.files] == [PNG]
    assert result["content"] == "✏️ Edited cat.png" and len(result["attachments"]) == 1


async def test_edit_without_attachment_edits_the_channels_last_image(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    service = await harness.start()
    first = await result_of(fake, await fake.invoke_slash(fake.bob, "imagine", prompt="a boat"))
    last = first["attachments"][0]["filename"].removesuffix(".png")
    rec = await fake.invoke_slash(fake.alice, "edit", prompt="add a sail")
    result = await result_of(fake, rec)
    (edit,) = provider.requests_of("/images/edits")
    stored = await service.store.get(last)
    assert stored is not None and [f.data for f in edit.files] == [await service.store.read(stored)]
    assert result["content"] == f"✏️ Edited the last image in this chat ({last})"


async def test_edit_with_nothing_to_edit_is_an_ephemeral_first_response(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    await harness.start()
    rec = await fake.invoke_slash(fake.alice, "edit", prompt="make it blue")
    answer = await result_of(fake, rec)
    assert rec.response_type == 4 and rec.ephemeral and answer["flags"] & EPHEMERAL
    assert "no image in this chat to edit" in answer["content"]
    assert provider.requests == []


async def test_settings_change_show_and_reset_the_channel_defaults(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    await harness.start(tools={"imageGeneration": {"provider": "custom", "model": "flux-dev",
                                                   "maxImagesPerTurn": 3, "defaultImageSize": ""}})
    changed = await result_of(fake, await fake.invoke_slash(fake.alice, "settings", aspect_ratio="9:16", count=2))
    assert changed["flags"] & EPHEMERAL
    assert "aspect ratio (ar): 9:16" in changed["content"] and "images per request (n): 2" in changed["content"]
    result = await result_of(fake, await fake.invoke_slash(fake.bob, "imagine", prompt="a tree"))
    assert len(result["attachments"]) == 2  # the channel's default count, for everyone in it
    assert {r.json["size"] for r in provider.requests} == {"1024x1536"}
    too_many = await result_of(fake, await fake.invoke_slash(fake.alice, "settings", count=4))
    assert too_many["content"] == "You can ask for 1 to 3 images at a time (you asked for 4)."
    reset = await result_of(fake, await fake.invoke_slash(fake.alice, "settings", reset=True))
    assert "aspect ratio (ar): default (1:1)" in reset["content"] and "(n): default (1)" in reset["content"]
    shown = await result_of(fake, await fake.invoke_slash(fake.alice, "settings"))
    assert shown["content"].startswith("Settings for this chat") and "custom / flux-dev" in shown["content"]


async def test_history_lists_the_channels_images_newest_first(harness: DiscordHarness, fake: FakeDiscord) -> None:
    await harness.start()
    empty = await result_of(fake, await fake.invoke_slash(fake.alice, "history"))
    assert empty["content"] == "There is no image in this chat yet. Try /imagine a red fox."
    assert empty["flags"] & EPHEMERAL
    for prompt in ("a cat", "a dog"):
        await result_of(fake, await fake.invoke_slash(fake.alice, "imagine", prompt=prompt))
    listed = await result_of(fake, await fake.invoke_slash(fake.bob, "history", count=5))
    header, *lines = listed["content"].splitlines()
    assert header.startswith("Recent images, newest first")
    assert len(lines) == 2 and lines[0].endswith("a dog") and lines[1].endswith("a cat")
    assert lines[0].startswith("img_") and " · " in lines[0]


async def test_help_names_the_gestures_and_the_model(harness: DiscordHarness, fake: FakeDiscord) -> None:
    await harness.start()
    shown = await result_of(fake, await fake.invoke_slash(fake.alice, "help"))
    assert shown["flags"] & EPHEMERAL and "/imagine" in shown["content"] and "custom/flux-dev" in shown["content"]


async def test_cancel_stops_your_own_running_job_not_someone_elses(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    await harness.start()
    provider.hold()
    running = await fake.invoke_slash(fake.alice, "imagine", prompt="a slow fox")
    await provider.wait_for_requests(1)
    idle = await result_of(fake, await fake.invoke_slash(fake.bob, "cancel"))  # bob has nothing running
    assert idle["content"] == "Nothing of yours is running in this chat." and idle["flags"] & EPHEMERAL
    stopped = await result_of(fake, await fake.invoke_slash(fake.alice, "cancel"))
    assert stopped["content"].startswith("Stopping your running job.") and stopped["flags"] & EPHEMERAL
    answer = await result_of(fake, running)
    assert answer["content"] == "Stopped. No image was made." and answer["attachments"] == []
    provider.release()


async def test_a_rejected_token_is_a_clear_configuration_error(harness: DiscordHarness, fake: FakeDiscord) -> None:
    with pytest.raises(ConfigError, match=r"Discord rejected bots\.discord\.token"):
        await harness.start(discord={"token": "not-the-token"})
    assert fake.identifies == []


async def test_image_ids_are_accepted_by_edit_and_show(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    service = await harness.start()
    first = await result_of(fake, await fake.invoke_slash(fake.alice, "imagine", prompt="a boat"))
    await result_of(fake, await fake.invoke_slash(fake.alice, "imagine", prompt="a car"))  # the last image now
    image_id = first["attachments"][0]["filename"].removesuffix(".png")

    edited = await result_of(fake, await fake.invoke_slash(fake.alice, "edit", prompt=f"{image_id} add a sail"))
    (edit,) = provider.requests_of("/images/edits")
    stored = await service.artifact(image_id)
    assert stored is not None and [f.data for f in edit.files] == [await service.read(stored)]
    assert edit.form_fields["prompt"] == "add a sail" and edited["content"] == f"✏️ Edited {image_id}"

    shown = await result_of(fake, await fake.invoke_slash(fake.bob, "show", image_id=image_id))
    assert [a["filename"] for a in shown["attachments"]] == [f"{image_id}.png"] and shown["components"]
    refused = await result_of(fake, await fake.invoke_slash(fake.bob, "show", image_id="img_000000000000"))
    assert refused["content"].startswith("There is no image img_000000000000 in this chat")
    assert len(provider.requests_of("/images/edits")) == 1
