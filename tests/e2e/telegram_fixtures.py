"""Fixtures for the Telegram e2e tests, loaded as a plugin: ``pytest_plugins = ["tests.e2e.telegram_fixtures"]``.

``tg_server`` (FakeTelegramServer), ``tg_provider`` (FakeProvider) and ``tg`` (TelegramHarness, not started).
``tg`` fails the test on any error logged by aiogram or the front-end: handler exceptions never reach
the test otherwise (aiogram logs them and carries on)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.telegram_support import TelegramHarness
from tests.fakes.fake_provider import FakeProvider
from tests.fakes.fake_telegram import FakeTelegramServer
from tests.fakes.logcheck import assert_no_error_logs

__all__ = ["tg", "tg_provider", "tg_server"]


@pytest.fixture
async def tg_server() -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer() as server:
        yield server


@pytest.fixture
async def tg_provider() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


@pytest.fixture
async def tg(tmp_path: Path, tg_server: FakeTelegramServer, tg_provider: FakeProvider,
             caplog: pytest.LogCaptureFixture) -> AsyncIterator[TelegramHarness]:
    harness = TelegramHarness(tmp_path, tg_server, tg_provider)
    try:
        yield harness
    finally:
        tg_provider.release()  # a test that held requests must not stall the shutdown
        await harness.close()
    assert_no_error_logs(caplog, "aiogram", "bots", "core", "providers", "aiohttp", "asyncio", "tests.fakes")
