"""Fixtures for the Discord e2e tests, loaded as a plugin: `pytest_plugins = ["tests.e2e.discord_fixtures"]`.

`fake` (FakeDiscord), `provider` (FakeProvider) and `harness` (DiscordHarness), whose teardown fails the test
on any error logged by discord.py or the front-end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import discord
import pytest
from discord.gateway import DiscordWebSocket

from tests.e2e.discord_support import DiscordHarness
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_provider import FakeProvider
from tests.fakes.logcheck import assert_no_error_logs

__all__ = ["fake", "harness", "provider"]


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    # run_discord sets these process-wide from the config; put the library's values back afterwards
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", DiscordWebSocket.DEFAULT_GATEWAY)
    server = FakeDiscord()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


@pytest.fixture
async def harness(tmp_path: Path, fake: FakeDiscord, provider: FakeProvider,
                  caplog: pytest.LogCaptureFixture) -> AsyncIterator[DiscordHarness]:
    """Stops the bot and service afterwards, then fails the test on any error discord.py or the front-end
    logged (handler exceptions never reach the test otherwise)."""
    h = DiscordHarness(tmp_path, fake, provider)
    try:
        yield h
    finally:
        await h.stop()  # a shutdown that fails or hangs fails the test
    assert_no_error_logs(caplog, "discord", "bots.discord")
