"""The set-up page through the real composition root (``run_front_ends``): saving a Telegram token starts
the bot without a restart, against the loopback fake Bot API; saving a provider changes what new requests
use; an unknown provider is refused and the file is left as it was."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import pytest

from bots.app import enabled_front_ends, run_front_ends
from core.config_file import load_config
from tests.fakes.fake_provider import FakeProvider
from tests.fakes.fake_telegram import FakeTelegramServer
from tests.web.conftest import TOKEN

_LINE = re.compile(r"pixbot studio: (http://127\.0\.0\.1:\d+)/")
_CSRF = re.compile(r'data-csrf="([0-9a-f]+)"')


async def _studio_url(capsys: pytest.CaptureFixture[str], task: asyncio.Task[None]) -> str:
    seen = ""
    for _ in range(1000):
        seen += capsys.readouterr().out
        if match := _LINE.search(seen):
            return match[1]
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    raise AssertionError("no studio line: " + seen)


async def test_saving_a_telegram_token_starts_the_bot_and_a_provider_applies_at_once(
        tmp_path: Path, fake: FakeProvider, capsys: pytest.CaptureFixture[str]) -> None:
    async with FakeTelegramServer() as telegram:
        path = tmp_path / "config.json"
        path.write_text(json.dumps({
            "providers": {"custom": {"apiKey": "sk-one", "apiBase": fake.api_base("custom")}},
            "tools": {"imageGeneration": {"provider": "custom", "model": "flux-dev"}},
            "bots": {"api": {"port": 0}, "web": {"token": TOKEN},
                     "telegram": {"apiBase": telegram.base_url, "allowFrom": ["*"]}},
        }))
        config = load_config(path, env_file=None)
        assert list(enabled_front_ends(config)) == ["web"]
        stop = asyncio.Event()
        task = asyncio.create_task(run_front_ends(config, enabled_front_ends(config), stop))
        try:
            url = await _studio_url(capsys, task)
            async with httpx.AsyncClient(base_url=url, timeout=20) as client:
                await client.get(f"/setup?token={TOKEN}")
                csrf = _CSRF.search((await client.get("/setup")).text)[1]  # type: ignore[index]
                headers = {"X-CSRF-Token": csrf, "Accept": "application/json"}

                before = path.read_bytes()
                unknown = await client.post("/setup", headers=headers, data={"provider": "dalle-by-mail"})
                assert unknown.status_code == 400 and path.read_bytes() == before

                started = await client.post("/setup/bot", headers=headers,
                                            data={"bot": "telegram", "token": telegram.token})
                assert started.json() == {"ok": True, "message": f"Saved to {path}. New requests use custom / "
                                                                   "flux-dev. The Telegram bot started."}
                await telegram.wait_until(lambda: telegram.polls_waiting > 0, timeout=10)
                assert json.loads(path.read_text())["bots"]["telegram"]["token"] == telegram.token

                moved = await client.post("/setup", headers=headers, data={
                    "provider": "openai", "api_key": "sk-two", "api_base": fake.api_base("openai"),
                    "model": "gpt-image-1"})
                assert moved.json()["ok"] is True
                assert "New requests use openai / gpt-image-1." in moved.json()["message"]
                page = await client.get("/")
                assert 'value="openai/gpt-image-1"' in page.text
                asked = await client.post("/t/abcdef123456/ask", headers=headers,
                                          data={"prompt": "a kite", "count": "1", "aspect_ratio": "auto"})
                assert asked.status_code == 202, asked.text
                await fake.wait_for_requests(1, path_suffix="openai/v1/images/generations", timeout=10)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


async def test_a_bot_that_cannot_start_is_reported_and_the_studio_carries_on(
        tmp_path: Path, fake: FakeProvider, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"providers": {"custom": {"apiKey": "sk-one", "apiBase": fake.api_base("custom")}},
                                "tools": {"imageGeneration": {"provider": "custom", "model": "flux-dev"}},
                                "bots": {"api": {"port": 0}, "web": {"token": TOKEN}}}))
    config = load_config(path, env_file=None)
    stop = asyncio.Event()
    task = asyncio.create_task(run_front_ends(config, enabled_front_ends(config), stop))
    try:
        url = await _studio_url(capsys, task)
        async with httpx.AsyncClient(base_url=url, timeout=20) as client:
            await client.get(f"/setup?token={TOKEN}")
            csrf = _CSRF.search((await client.get("/setup")).text)[1]  # type: ignore[index]
            saved = await client.post("/setup/bot", data={"bot": "telegram", "token": "not-a-token"},
                                      headers={"X-CSRF-Token": csrf, "Accept": "application/json"})
            message = saved.json()["message"]
            assert "The Telegram bot did not start: bots.telegram.token is not a Telegram bot token" in message
            assert (await client.get("/setup")).status_code == 200 and not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
