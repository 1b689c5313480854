"""Discord sharding (`bots.discord.shardCount`/`shardIds`): the config rules, one process running several shards
of the gateway, and three `pixbot run` processes splitting it (one shard each) on one shared data dir, against
one fake Discord with three guilds: each answers in its own guild only, and the commands are synced once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bots.discord.bot import ShardedPixbotBot
from core.config_file import load_config
from core.errors import ConfigError
from core.models import ChatRef, ImageRequest
from tests.e2e.cli_support import Cli
from tests.e2e.discord_support import DiscordHarness, bot_messages, result_of
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_provider import FakeProvider

pytest_plugins = ["tests.e2e.discord_fixtures"]


@pytest.mark.parametrize(("block", "expected"), [
    ({"shardIds": [0]}, "bots.discord: shardIds needs shardCount"),
    ({"shardCount": 3, "shardIds": [1, 3]}, "bots.discord: shardIds [3]: not a shard of shardCount 3 "
                                           "(shard ids run from 0 to 2)"),
    ({"shardCount": 2, "shardIds": [-1]}, "shardIds [-1]: not a shard of shardCount 2"),
    ({"shardCount": 2, "shardIds": [1, 1]}, "bots.discord: shardIds [1, 1] lists a shard twice"),
    ({"shardCount": 2, "shardIds": []}, "bots.discord: shardIds is empty"),
    ({"shardCount": 0}, "bots.discord.shardCount: Input should be greater than or equal to 1"),
])
def test_shard_settings_are_checked(tmp_path: Path, block: dict[str, Any], expected: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"bots": {"discord": {"token": "t", **block}}}))
    with pytest.raises(ConfigError) as caught:
        load_config(path, env_file=None)
    assert expected in str(caught.value)


def test_shard_settings_default_to_one_connection(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"bots": {"discord": {"token": "t"}}}))
    settings = load_config(path, env_file=None).bots.discord
    assert (settings.shard_count, settings.shard_ids) == (None, [])
    path.write_text(json.dumps({"bots": {"discord": {"token": "t", "shardCount": 4, "shardIds": [3, 1]}}}))
    settings = load_config(path, env_file=None).bots.discord
    assert (settings.shard_count, settings.shard_ids) == (4, [3, 1])


async def _identify_at_once(self: ShardedPixbotBot, shard_id: int | None, *, initial: bool = False) -> None:
    """discord.py waits 5 s before each identify after the first (Discord's max_concurrency 1); the fake
    has no identify rate limit."""


async def test_one_process_runs_two_shards_and_answers_in_guilds_on_both(
    harness: DiscordHarness, fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ShardedPixbotBot, "before_identify_hook", _identify_at_once)
    second = fake.add_guild()
    assert [g.shard(2) for g in fake.guilds] == [0, 1]
    caplog.set_level(logging.INFO, "bots.discord")
    service = await harness.start(discord={"shardCount": 2})
    assert sorted(fake.connected_shards()) == [(0, 2), (1, 2)]
    assert sorted(tuple(i["shard"]) for i in fake.identifies) == [(0, 2), (1, 2)]
    assert "discord:shards 0,1/2" in service.roles
    assert "Discord shards 0,1 of 2 in this process; it syncs the application commands" in caplog.text
    assert len(fake.calls_matching("PUT", r"/guilds/\d+/commands$")) == 2  # both command guilds, once

    for guild, shard in ((fake.guild(), 0), (second, 1)):
        rec = await fake.invoke_slash(fake.alice, "imagine", guild_id=guild.id, prompt=f"a fox on shard {shard}")
        assert rec.shard == (shard, 2)
        result = await result_of(fake, rec)
        assert result["channel_id"] == guild.channel_id and len(result["attachments"]) == 1
        assert result["embeds"][0]["description"] == f"a fox on shard {shard}"


async def test_sharded_the_bot_still_falls_back_when_the_message_content_intent_is_refused(
    harness: DiscordHarness, fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ShardedPixbotBot, "before_identify_hook", _identify_at_once)
    fake.message_content_granted = False
    second = fake.add_guild()
    await harness.start(discord={"shardCount": 2})
    assert "Discord refused the Message Content intent" in caplog.text
    assert sorted(fake.connected_shards()) == [(0, 2), (1, 2)]
    assert len(fake.calls_matching("PUT", r"/guilds/\d+/commands$")) == 2  # the second attempt does not sync again
    rec = await fake.invoke_slash(fake.alice, "imagine", guild_id=second.id, prompt="a quiet owl")
    assert rec.shard == (1, 2)
    assert (await result_of(fake, rec))["embeds"][0]["description"] == "a quiet owl"


async def test_a_process_without_shard_0_leaves_the_commands_alone(
    harness: DiscordHarness, fake: FakeDiscord
) -> None:
    fake.add_guild()
    service = await harness.start(discord={"shardCount": 2, "shardIds": [1]})
    assert fake.connected_shards() == [(1, 2)]
    assert fake.calls_matching("PUT", r"/commands$") == []
    assert "discord:shard 1/2" in service.roles


async def test_a_result_left_from_the_last_run_is_posted_by_a_process_without_that_servers_shard(
    harness: DiscordHarness, fake: FakeDiscord
) -> None:
    """Posting is REST, not tied to a shard: the shard-1 process delivers a job made for a shard-0 server."""
    fake.add_guild()
    service = await harness.start(discord={"shardCount": 2, "shardIds": [1]})
    chat = ChatRef("discord", fake.channel_id, fake.alice.id)  # the first server: shard 0, not running here
    await service.submit(ImageRequest("a harvest moon", chat, origin={"channel_id": fake.channel_id,
                                                                    "user_id": fake.alice.id}))  # never sent
    await harness.restart()
    (posted,) = await fake.wait_for(lambda: bot_messages(fake), timeout=15)
    assert posted["content"].startswith(fake.alice.mention) and len(posted["attachments"]) == 1
    assert posted["guild_id"] == fake.guild_id and fake.connected_shards() == [(1, 2)]


@dataclass
class _Process:
    """One `pixbot run` child and the lines of its log (stderr)."""

    shard: int
    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    @property
    def log(self) -> str:
        return "".join(self.lines)


@pytest.fixture
async def processes() -> AsyncIterator[list[_Process]]:
    """Started children; stopped with SIGTERM (then SIGKILL) before the fakes go away."""
    started: list[_Process] = []
    yield started
    for child in started:
        if child.process.returncode is None:
            child.process.send_signal(signal.SIGTERM)
    for child in started:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(child.process.wait(), 30)
        if child.process.returncode is None:
            child.process.kill()
            await child.process.wait()
        if child.reader is not None:
            await child.reader


async def _start(processes: list[_Process], cli: Cli, shard: int, config: dict[str, Any]) -> _Process:
    path = cli.write_config(config, f"shard-{shard}.json")
    child = _Process(shard, await cli.start("run", config=path))

    async def read() -> None:
        assert child.process.stderr is not None
        while line := await child.process.stderr.readline():
            child.lines.append(line.decode(errors="replace"))

    child.reader = asyncio.create_task(read())
    processes.append(child)
    return child


async def test_three_processes_split_the_gateway_and_each_answers_in_its_own_guild(
    harness: DiscordHarness, fake: FakeDiscord, provider: FakeProvider, tmp_path: Path, processes: list[_Process]
) -> None:
    fake.add_guild()
    fake.add_guild()
    assert [g.shard(3) for g in fake.guilds] == [0, 1, 2]
    cli = Cli(tmp_path, provider)
    for shard in range(3):  # one shared data dir (SQLite in it): harness.config's storage.dataDir
        await _start(processes, cli, shard, harness.config(discord={"shardCount": 3, "shardIds": [shard]}))
    everyone = [(0, 3), (1, 3), (2, 3)]
    await fake.wait_for(lambda: sorted(fake.connected_shards()) == everyone, timeout=60)

    # Only the process running shard 0 synced (each process syncs, or not, before it identifies): one PUT
    # per scope, the three command guilds and global.
    puts = sorted(c.path for c in fake.calls_matching("PUT", r"/commands$"))
    expected = sorted([f"/applications/{fake.app_id}/commands",
                       *(f"/applications/{fake.app_id}/guilds/{g.id}/commands" for g in fake.guilds)])
    assert puts == expected

    recs = [await fake.invoke_slash(fake.alice, "imagine", guild_id=g.id, prompt=f"a fox in guild {n}")
            for n, g in enumerate(fake.guilds)]
    for n, (guild, rec) in enumerate(zip(fake.guilds, recs, strict=True)):
        result = await result_of(fake, rec, timeout=60)
        assert result["channel_id"] == guild.channel_id
        assert result["embeds"][0]["description"] == f"a fox in guild {n}"
        assert rec.shard == (n, 3) and rec.session_id  # sent on the gateway session of the guild's shard

    for child in processes:
        child.process.send_signal(signal.SIGTERM)
    for child in processes:
        assert await asyncio.wait_for(child.process.wait(), 30) == 0, child.log
        assert child.reader is not None
        await child.reader  # all of its log is read
        assert " ERROR " not in child.log and "Traceback" not in child.log, child.log
    assert "Discord shard 0 of 3 in this process; it syncs the application commands" in processes[0].log
    for child in processes[1:]:
        assert (f"Discord shard {child.shard} of 3 in this process; not syncing application commands "
                "(the process running shard 0 does)") in child.log
    for guild, rec, child in zip(fake.guilds, recs, processes, strict=True):
        # Only that process holds the session the interaction went to (discord.py logs its session id) ...
        holders = [c.shard for c in processes if f"(Session ID: {rec.session_id})" in c.log]
        assert holders == [child.shard], [c.log for c in processes]
        # ... and only it ran the job (the job log names the chat: the guild's channel).
        runners = [c.shard for c in processes if f"new->generating chat=discord:{guild.channel_id}" in c.log]
        assert runners == [child.shard], [c.log for c in processes]
