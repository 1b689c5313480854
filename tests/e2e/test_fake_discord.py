"""The unmodified discord.py client against tests/fakes/fake_discord.py: login, gateway, commands, uploads."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket

from tests.fakes.fake_discord import MIB, FakeDiscord, shard_of
from tests.fakes.logcheck import assert_no_error_logs
from tests.images import png_bytes

PNG = png_bytes(64, 48)
_GUILD_MESSAGES, _MESSAGE_CONTENT = 1 << 9, 1 << 15


_Button = discord.ui.Button[discord.ui.View]


class AgainButton(discord.ui.DynamicItem[_Button], template=r"again:(?P<artifact>\w+)"):
    """A button whose state lives in its custom id, so any later client process can handle it."""

    def __init__(self, artifact: str) -> None:
        super().__init__(discord.ui.Button(label="Again", custom_id=f"again:{artifact}"))
        self.artifact = artifact

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> AgainButton:
        return cls(match["artifact"])

    async def callback(self, interaction: discord.Interaction) -> None:
        """Mark the clicked message (an UPDATE_MESSAGE response), then send the new image as a followup."""
        assert interaction.message is not None
        await interaction.response.edit_message(content=f"{interaction.message.content} (again)")
        await interaction.followup.send(f"again {self.artifact} for {interaction.user.name}",
                                        file=discord.File(io.BytesIO(PNG), "again.png"))


class PromptModal(discord.ui.Modal, title="Edit image"):
    prompt: discord.ui.TextInput[PromptModal] = discord.ui.TextInput(label="Prompt", custom_id="prompt")
    style: discord.ui.Label[PromptModal] = discord.ui.Label(  # newer layout: an input inside a label
        text="Style", component=discord.ui.TextInput(custom_id="style", required=False))

    def __init__(self, target_id: int) -> None:
        super().__init__(custom_id="edit-modal")
        self.target_id = target_id

    async def on_submit(self, interaction: discord.Interaction) -> None:
        style = self.style.component
        assert isinstance(style, discord.ui.TextInput)
        text = f"editing {self.target_id}: {self.prompt.value} ({style.value})"
        await interaction.response.send_message(text)


def _commands() -> list[app_commands.Command[Any, ..., None] | app_commands.ContextMenu]:
    """Fresh command objects per client: each exercises one wire path the real front-end will use."""

    @app_commands.command()
    async def draw(interaction: discord.Interaction, prompt: str) -> None:
        """Defer, then deliver the image by editing the original response."""
        await interaction.response.defer(thinking=True)
        view = discord.ui.View(timeout=None).add_item(AgainButton("a1"))
        await interaction.edit_original_response(
            content=f"drew {prompt}", attachments=[discord.File(io.BytesIO(PNG), "image.png")], view=view)

    @app_commands.command()
    async def describe(interaction: discord.Interaction, image: discord.Attachment) -> None:
        """Download an attachment option from the CDN."""
        data = await image.read()
        await interaction.response.send_message(
            f"{image.filename} {len(data)} {image.content_type} {image.width}x{image.height} {data == PNG}")

    @app_commands.command()
    async def secret(interaction: discord.Interaction) -> None:
        """Answer only the caller."""
        await interaction.response.send_message("only you", ephemeral=True)

    @app_commands.command()
    async def big(interaction: discord.Interaction) -> None:
        """Upload one byte over the interaction's limit and report what Discord said."""
        await interaction.response.defer()
        blob = discord.File(io.BytesIO(bytes(interaction.filesize_limit + 1)), "big.bin")
        try:
            await interaction.edit_original_response(attachments=[blob])
        except discord.HTTPException as exc:
            await interaction.edit_original_response(content=f"too big: {exc.status} {exc.code}")

    @app_commands.context_menu(name="Edit image")
    async def edit_image(interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.send_modal(PromptModal(message.id))

    return [draw, describe, secret, big, edit_image]


class TinyBot(discord.Client):
    """Just enough bot for the tests: guild commands, a dynamic button, a reply gesture."""

    def __init__(self, guild_id: str, *, sync: bool, message_content: bool = True, **options: Any) -> None:
        intents = discord.Intents.default()
        intents.message_content = message_content
        super().__init__(intents=intents, guild_ready_timeout=0.05, **options)
        self.guild = discord.Object(int(guild_id))
        self.sync = sync
        self.tree = app_commands.CommandTree(self)
        for command in _commands():
            self.tree.add_command(command, guild=self.guild)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(AgainButton)
        if self.sync:
            await self.tree.sync(guild=self.guild)

    async def on_message(self, message: discord.Message) -> None:
        """Reply gesture: a reply mentioning the bot names the image it replies to."""
        if message.author.bot or self.user not in message.mentions or message.reference is None:
            return
        ref = message.reference.resolved
        if not isinstance(ref, discord.Message):
            assert message.reference.message_id is not None
            ref = await message.channel.fetch_message(message.reference.message_id)
        await message.reply(f"ref {ref.id} {ref.attachments[0].filename}", mention_author=False)


class ShardedTinyBot(TinyBot, discord.AutoShardedClient):
    """TinyBot over discord.py's AutoShardedClient (`shard_count`, `shard_ids`)."""

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """No 5 s wait between shards' identifies: the fake has no identify rate limit."""


StartBot = Callable[..., Awaitable[TinyBot]]


@pytest.fixture(autouse=True)
def _fail_on_discord_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    yield
    assert_no_error_logs(caplog, "discord")


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    monkeypatch.setattr(discord.http.Route, "BASE", server.api_base)
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(server.gateway_url))
    yield server
    await server.stop()


@pytest.fixture
async def bots(fake: FakeDiscord) -> AsyncIterator[dict[TinyBot, asyncio.Task[None]]]:
    running: dict[TinyBot, asyncio.Task[None]] = {}
    yield running
    for client, task in running.items():
        await client.close()
        await task


@pytest.fixture
def start_bot(fake: FakeDiscord, bots: dict[TinyBot, asyncio.Task[None]]) -> StartBot:
    async def start(*, sync: bool = True, message_content: bool = True) -> TinyBot:
        client = TinyBot(fake.guild_id, sync=sync, message_content=message_content)
        await client.login(fake.token)
        bots[client] = asyncio.create_task(client.connect(reconnect=False))
        await asyncio.wait_for(client.wait_until_ready(), 5)
        return client

    return start


async def stop_bot(client: TinyBot, bots: dict[TinyBot, asyncio.Task[None]]) -> None:
    await client.close()
    await bots.pop(client)


async def test_login_identify_and_guild_sync(fake: FakeDiscord, start_bot: StartBot) -> None:
    client = await start_bot()
    (identify,) = fake.identifies
    assert identify["intents"] & _GUILD_MESSAGES and identify["intents"] & _MESSAGE_CONTENT
    (put,) = fake.calls_matching("PUT", rf"/applications/{fake.app_id}/guilds/{fake.guild_id}/commands$")
    assert {c["name"] for c in put.json} == {"draw", "describe", "secret", "big", "Edit image"}
    menu = next(c for c in fake.guild_commands[fake.guild_id].values() if c["type"] == 3)
    assert menu["description"] == ""
    guild = client.get_guild(int(fake.guild_id))
    assert guild is not None and guild.premium_tier == 0 and guild.filesize_limit == 10 * MIB
    assert guild.me.name == "pixbot" and guild.member_count == 3  # others only with the presences intent
    assert client.user is not None and client.user.id == int(fake.app_id)
    with pytest.raises(LookupError):
        await fake.invoke_slash(fake.alice, "never-synced")


async def test_slash_defers_then_edits_original_with_file(fake: FakeDiscord, start_bot: StartBot) -> None:
    await start_bot()
    rec = await fake.invoke_slash(fake.alice, "draw", prompt="a cat")
    original = await fake.original_response(rec)
    (callback,) = fake.calls_matching("POST", rf"/interactions/{rec.id}/")
    assert callback.json == {"type": 5} and callback.query["with_response"] == "1"
    (patch,) = await fake.wait_for("PATCH /webhooks/.*/messages/@original")
    assert [f.filename for f in patch.files] == ["image.png"]
    (attachment,) = original["attachments"]
    assert (attachment["content_type"], attachment["width"], attachment["height"]) == ("image/png", 64, 48)
    assert fake.cdn_bytes(attachment["url"]) == PNG
    assert original["content"] == "drew a cat" and not original["flags"] & 128  # no longer "thinking…"
    assert original in fake.messages()


async def test_attachment_option_is_downloaded_from_the_cdn(fake: FakeDiscord, start_bot: StartBot) -> None:
    await start_bot()
    rec = await fake.invoke_slash(fake.alice, "describe", image=("cat.png", PNG))
    original = await fake.original_response(rec)
    assert original["content"] == f"cat.png {len(PNG)} image/png 64x48 True"
    assert fake.calls_matching("GET", r"^/attachments/.*/cat\.png$")


async def test_ephemeral_response_is_flagged_and_not_in_history(
    fake: FakeDiscord, start_bot: StartBot
) -> None:
    await start_bot()
    rec = await fake.invoke_slash(fake.bob, "secret")
    original = await fake.original_response(rec)
    assert rec.ephemeral and original["flags"] & 64 and original["content"] == "only you"
    assert original not in fake.messages()


async def test_message_context_menu_opens_modal_and_submit_is_answered(
    fake: FakeDiscord, start_bot: StartBot
) -> None:
    await start_bot()
    target = await fake.send_user_message(fake.alice, "look", files=[("cat.png", PNG)])
    opened = await fake.invoke_message_command(fake.alice, "Edit image", target)
    modal = await fake.wait_for(lambda: opened.modal)
    assert opened.response_type == 9 and modal["custom_id"] == "edit-modal"
    assert [c["type"] for c in modal["components"]] == [1, 18]  # action row, label
    submitted = await fake.submit_modal(fake.alice, "edit-modal", {"prompt": "make it blue", "style": "ink"})
    answer = await fake.original_response(submitted)
    assert answer["content"] == f"editing {target['id']}: make it blue (ink)"


async def test_dynamic_button_is_handled_after_a_client_restart(
    fake: FakeDiscord, start_bot: StartBot, bots: dict[TinyBot, asyncio.Task[None]]
) -> None:
    first = await start_bot()
    drawn = await fake.invoke_slash(fake.alice, "draw", prompt="a fox")
    result = await fake.original_response(drawn, lambda m: m["components"])
    await stop_bot(first, bots)
    await start_bot(sync=False)
    assert len(fake.identifies) == 2 and len(fake.calls_matching("PUT")) == 1
    with pytest.raises(LookupError):
        await fake.click_button(fake.bob, result, "again:nope")
    click = await fake.click_button(fake.bob, result, "again:a1")
    (followup,) = await fake.wait_for(lambda: click.followups)
    assert followup["content"] == "again a1 for bob" and followup["attachments"][0]["filename"] == "again.png"
    assert click.response_type == 7 and click.original is result  # the clicked message itself was edited
    assert result["content"] == "drew a fox (again)" and result["components"]


async def test_reply_resolves_the_reference_or_fetches_it(fake: FakeDiscord, start_bot: StartBot) -> None:
    client = await start_bot()
    assert client.user is not None
    image = await fake.send_user_message(fake.bob, "", files=[("old.png", PNG)], dispatch=False)  # not cached
    mention = f"<@{fake.app_id}> grey please"
    for include_referenced, count in ((True, 1), (False, 2)):
        sent = await fake.send_user_message(
            fake.alice, mention, reply_to=image, include_referenced=include_referenced)
        replies = await fake.wait_for(r"POST /channels/\d+/messages$", count=count)
        assert replies[-1].json["message_reference"]["message_id"] == int(sent["id"])
        assert fake.messages()[-1]["content"] == f"ref {image['id']} old.png"
        assert fake.messages()[-1]["type"] == 19
    (fetch,) = fake.calls_matching("GET", rf"/channels/{fake.channel_id}/messages/{image['id']}$")
    assert fetch.status == 200


async def test_uploads_over_the_limit_get_413(fake: FakeDiscord, start_bot: StartBot) -> None:
    client = await start_bot()
    channel = client.get_channel(int(fake.channel_id))
    assert isinstance(channel, discord.TextChannel)
    with pytest.raises(discord.HTTPException) as caught:
        await channel.send(file=discord.File(io.BytesIO(bytes(10 * MIB + 1)), "big.bin"))
    assert (caught.value.status, caught.value.code) == (413, 40005)
    rec = await fake.invoke_slash(fake.alice, "big", attachment_size_limit=MIB)
    answer = await fake.original_response(rec)
    assert answer["content"] == "too big: 413 40005" and answer["attachments"] == []


async def test_faults_double_ack_expiry_and_unknown_routes(fake: FakeDiscord, start_bot: StartBot) -> None:
    client = await start_bot()
    channel = client.get_channel(int(fake.channel_id))
    assert isinstance(channel, discord.TextChannel)
    fake.fail_next("POST", r"/channels/\d+/messages$", 403, {"message": "Missing Permissions", "code": 50013})
    with pytest.raises(discord.Forbidden) as caught:
        await channel.send("hello")
    assert caught.value.code == 50013
    assert (await channel.send("hello again")).content == "hello again"

    rec = await fake.invoke_slash(fake.alice, "secret")
    await fake.wait_for(lambda: rec.acked)
    async with aiohttp.ClientSession(fake.api_base + "/") as http:
        again = await http.post(f"interactions/{rec.id}/{rec.token}/callback", json={"type": 5})
        assert again.status == 400 and (await again.json())["code"] == 40060
        fake.expire(rec)
        original = f"webhooks/{fake.app_id}/{rec.token}/messages/@original"
        late = await http.patch(original, json={"content": "x"})
        assert late.status == 401 and (await late.json())["code"] == 50027
        unknown = await http.get("no/such/route")
        assert unknown.status == 404 and unknown.headers["Content-Type"] == "application/json"


async def test_message_content_needs_the_intent_granted_or_a_mention(
    fake: FakeDiscord, start_bot: StartBot
) -> None:
    fake.message_content_granted = False  # the developer-portal switch is off
    client = await start_bot(message_content=False)
    seen = asyncio.create_task(client.wait_for("message", check=lambda m: not m.author.bot))
    await fake.send_user_message(fake.alice, "hello there", files=[("cat.png", PNG)])
    plain = await asyncio.wait_for(seen, 5)
    assert (plain.content, plain.attachments) == ("", [])
    seen = asyncio.create_task(client.wait_for("message", check=lambda m: not m.author.bot))
    await fake.send_user_message(fake.alice, f"<@{fake.app_id}> hello", files=[("cat.png", PNG)])
    mentioned = await asyncio.wait_for(seen, 5)
    assert mentioned.content.endswith("hello") and mentioned.attachments[0].filename == "cat.png"


async def test_asking_for_an_ungranted_privileged_intent_closes_the_gateway_with_4014(
    fake: FakeDiscord,
) -> None:
    fake.message_content_granted = False
    client = TinyBot(fake.guild_id, sync=False, message_content=True)
    await client.login(fake.token)
    with pytest.raises(discord.PrivilegedIntentsRequired):
        await asyncio.wait_for(client.connect(reconnect=True), 5)  # reconnect=True: what `Client.start` does
    await client.close()
    assert fake.identifies[0]["intents"] & _MESSAGE_CONTENT


async def test_roles_reach_the_guild_cache_interactions_and_messages(fake: FakeDiscord, start_bot: StartBot) -> None:
    artist = fake.add_role("artist")
    fake.give_role(fake.bob, artist)
    client = await start_bot()
    guild = client.get_guild(int(fake.guild_id))
    assert guild is not None and guild.get_role(int(artist)) is not None
    seen = asyncio.create_task(client.wait_for("message", check=lambda m: not m.author.bot))
    await fake.send_user_message(fake.bob, "hi")
    message = await asyncio.wait_for(seen, 5)
    assert isinstance(message.author, discord.Member)
    assert [r.name for r in message.author.roles if not r.is_default()] == ["artist"]
    rec = await fake.invoke_slash(fake.alice, "secret")
    assert rec.payload["member"]["roles"] == []
    assert (await fake.invoke_slash(fake.bob, "secret")).payload["member"]["roles"] == [artist]


def test_guild_n_is_on_shard_n_modulo_the_count() -> None:
    fake = FakeDiscord(guild_count=3)
    fake.add_guild("Fourth")
    assert len({g.id for g in fake.guilds}) == 4 and fake.guild_id == fake.guilds[0].id
    assert len({g.channel_id for g in fake.guilds}) == 4
    for count in range(1, 13):
        assert [shard_of(g.id, count) for g in fake.guilds] == [n % count for n in range(4)]
    assert [g.name for g in fake.guilds] == ["Fake Guild", "Fake Guild 1", "Fake Guild 2", "Fourth"]


async def test_a_shard_gets_only_its_guilds_and_their_events(
    fake: FakeDiscord, bots: dict[TinyBot, asyncio.Task[None]]
) -> None:
    second = fake.add_guild()
    client = ShardedTinyBot(second.id, sync=True, shard_count=2, shard_ids=[1])
    await client.login(fake.token)
    bots[client] = asyncio.create_task(client.connect(reconnect=False))
    await asyncio.wait_for(client.wait_until_ready(), 5)
    assert fake.identifies[-1]["shard"] == [1, 2] and fake.connected_shards() == [(1, 2)]
    assert [g.id for g in client.guilds] == [int(second.id)]
    guild = client.get_guild(int(second.id))
    assert guild is not None and guild.shard_id == 1 and guild.name == "Fake Guild 1"

    seen = asyncio.create_task(client.wait_for("message", check=lambda m: not m.author.bot))
    await fake.send_user_message(fake.alice, "in the first guild")  # shard 0: nobody is connected for it
    await fake.send_user_message(fake.bob, "in the second guild", channel_id=second.channel_id)
    message = await asyncio.wait_for(seen, 5)
    assert (message.content, message.guild and message.guild.id) == ("in the second guild", int(second.id))

    rec = await fake.invoke_slash(fake.alice, "draw", guild_id=second.id, prompt="a cat")
    assert rec.shard == (1, 2) and rec.payload["channel_id"] == second.channel_id
    assert (await fake.original_response(rec))["channel_id"] == second.channel_id
    fake.guild_commands[fake.guild_id] = dict(fake.guild_commands[second.id])  # as if synced there too
    with pytest.raises(RuntimeError, match=r"no bot is connected to the fake gateway on the shard of guild"):
        await fake.invoke_slash(fake.alice, "draw", prompt="a cat")  # the first guild, on shard 0
    with pytest.raises(LookupError):
        fake.guild("404")


async def test_an_auto_sharded_client_launches_the_shards_gateway_bot_recommends(
    fake: FakeDiscord, bots: dict[TinyBot, asyncio.Task[None]]
) -> None:
    fake.recommended_shards = 2
    second = fake.add_guild()
    client = ShardedTinyBot(fake.guild_id, sync=True)  # no shard_count: GET /gateway/bot decides
    await client.login(fake.token)
    bots[client] = asyncio.create_task(client.connect(reconnect=False))
    await asyncio.wait_for(client.wait_until_ready(), 5)
    assert fake.calls_matching("GET", r"^/gateway/bot$")
    assert client.shard_count == 2 and sorted(fake.connected_shards()) == [(0, 2), (1, 2)]
    assert sorted(g.id for g in client.guilds) == sorted([int(fake.guild_id), int(second.id)])
    sessions = {i.get("shard", [0, 1])[0] for i in fake.identifies}
    assert sessions == {0, 1}
    rec = await fake.invoke_slash(fake.alice, "draw", prompt="a dog")
    assert rec.shard == (0, 2) and (await fake.original_response(rec))["content"] == "drew a dog"
