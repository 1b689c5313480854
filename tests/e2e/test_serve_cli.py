"""`pixbot serve` and `pixbot run` as real subprocesses: the API starts, answers, and exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.fakes.fake_provider import FakeProvider

_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)/v1")
_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


async def _wait_for_listening(proc: asyncio.subprocess.Process, seen: list[str]) -> str:
    assert proc.stderr is not None
    while True:
        line = (await proc.stderr.readline()).decode(errors="replace")
        if not line:
            raise AssertionError("pixbot serve exited before listening:\n" + "".join(seen))
        seen.append(line)
        if match := _LISTENING.search(line):
            return match[1]


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["run"]], ids=["serve", "run"])
async def test_api_starts_answers_and_stops_cleanly_on_sigterm(tmp_path: Path, fake: FakeProvider,
                                                               command: list[str]) -> None:
    """`serve` runs the API alone; `run` includes it because bots.api.enabled is set."""
    config = {
        "providers": {"custom": {"apiKey": "sk-test", "apiBase": fake.api_base("custom")}},
        "tools": {"imageGeneration": {"provider": "custom", "model": "flux-dev"}},
        "bots": {"api": {"enabled": True, "host": "127.0.0.1", "port": 0, "apiKey": "serve-key"}},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIXBOT_") and k not in ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN")}
    env["PYTHONPATH"] = str(_ROOT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots", command[0], "--config", str(path), *command[1:],
        cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    seen: list[str] = []
    try:
        base = await asyncio.wait_for(_wait_for_listening(proc, seen), 20)
        async with httpx.AsyncClient(base_url=base) as client:
            health = await client.get("/healthz")
        async with openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="serve-key", max_retries=0) as sdk:
            result = await sdk.images.generate(prompt="a fox")
        proc.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert result.data[0].b64_json
    assert proc.returncode == 0, "".join(seen) + rest.decode(errors="replace")
    assert "Traceback" not in rest.decode(errors="replace")
