"""Who may use the bot (allowFrom, allowGuilds, allowRoles) and the service's quota and per-channel limits:
refusals are ephemeral first responses (replies for message gestures), and the provider is never called."""

from __future__ import annotations

from tests.e2e.discord_support import DiscordHarness, result_of
from tests.fakes.discord_wire import Json
from tests.fakes.fake_discord import FakeDiscord, FakeInteraction
from tests.fakes.fake_provider import FakeProvider

pytest_plugins = ["tests.e2e.discord_fixtures"]

EPHEMERAL = 1 << 6
NOT_ALLOWED = "You are not allowed to use this bot."


async def _refused(fake: FakeDiscord, rec: FakeInteraction) -> str:
    answer = await result_of(fake, rec)
    assert rec.response_type == 4 and rec.ephemeral and answer["flags"] & EPHEMERAL
    assert answer not in fake.messages()
    return str(answer["content"])


async def _reply_to(fake: FakeDiscord, message: Json) -> Json:
    def find() -> Json | None:
        return next((m for m in fake.messages()
                     if (m.get("message_reference") or {}).get("message_id") == message["id"]), None)

    return await fake.wait_for(find)


async def test_users_outside_allow_from_are_refused_everywhere_without_a_provider_call(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    await harness.start(discord={"allowFrom": [int(fake.bob.id)]})  # ids may be numbers or strings
    result = await result_of(fake, await fake.invoke_slash(fake.bob, "imagine", prompt="a fox"))
    artifact_id = result["attachments"][0]["filename"].removesuffix(".png")
    assert len(provider.requests) == 1

    assert await _refused(fake, await fake.invoke_slash(fake.alice, "imagine", prompt="a fox")) == NOT_ALLOWED
    assert await _refused(fake, await fake.invoke_slash(fake.alice, "history")) == NOT_ALLOWED
    menu = await fake.invoke_message_command(fake.alice, "Edit image…", result)
    assert await _refused(fake, menu) == NOT_ALLOWED and menu.modal is None
    for action in ("again", "r16x9", "edit", "orig"):
        click = await fake.click_button(fake.alice, result, f"pixbot:{action}:{artifact_id}")
        assert await _refused(fake, click) == NOT_ALLOWED
    sent = await fake.send_user_message(fake.alice, f"{fake.bot_user.mention} make it night", reply_to=result)
    assert (await _reply_to(fake, sent))["content"] == NOT_ALLOWED
    assert len(provider.requests) == 1


async def test_allow_guilds_limits_the_servers(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    await harness.start(discord={"allowGuilds": ["1234"]})
    refusal = await _refused(fake, await fake.invoke_slash(fake.alice, "imagine", prompt="a fox"))
    assert refusal == "This bot is not enabled in this server." and provider.requests == []


async def test_allow_roles_admits_role_holders_and_listed_users_only(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    artist = fake.add_role("artist")
    fake.give_role(fake.bob, artist)
    carol = fake.add_role("bystander")
    fake.give_role(fake.alice, carol)
    await harness.start(discord={"allowRoles": [artist]})
    result = await result_of(fake, await fake.invoke_slash(fake.bob, "imagine", prompt="a fox"))
    assert len(result["attachments"]) == 1
    refusal = await _refused(fake, await fake.invoke_slash(fake.alice, "imagine", prompt="a fox"))
    assert refusal == "You need one of this server's image roles to use this bot." and len(provider.requests) == 1

    await harness.stop()
    await harness.start(discord={"allowRoles": [artist], "allowFrom": [fake.alice.id]})
    listed = await result_of(fake, await fake.invoke_slash(fake.alice, "imagine", prompt="a fox"))
    assert len(listed["attachments"]) == 1 and len(provider.requests) == 2


async def test_the_daily_quota_refusal_is_an_ephemeral_first_response(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    await harness.start(limits={"perUserDaily": 1})
    await result_of(fake, await fake.invoke_slash(fake.alice, "imagine", prompt="a fox"))
    refusal = await _refused(fake, await fake.invoke_slash(fake.alice, "imagine", prompt="another fox"))
    assert refusal.startswith("You have used your 1 image for today: the quota resets at midnight UTC")
    await result_of(fake, await fake.invoke_slash(fake.bob, "imagine", prompt="bob's fox"))  # per user
    assert len(provider.requests) == 2


async def test_a_busy_channel_refuses_more_jobs_until_the_running_one_ends(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider
) -> None:
    await harness.start(limits={"perUserDaily": 0, "perChatJobs": 1})
    provider.hold()
    running = await fake.invoke_slash(fake.alice, "imagine", prompt="a slow fox")
    await provider.wait_for_requests(1)
    refusal = await _refused(fake, await fake.invoke_slash(fake.bob, "imagine", prompt="me too"))
    assert refusal == "This chat already has 1 jobs running. Wait for one to finish, or cancel it."
    provider.release()
    assert len((await result_of(fake, running))["attachments"]) == 1 and len(provider.requests) == 1
