"""`pixbot serve` and `pixbot run` as real subprocesses: the API starts, answers, and exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

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
    """`serve` runs the API alone; `run` includes it because bots.api.enabled is set. For `serve` the
    configured port is taken, so only `--port 0` overriding it lets the API start."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1] if command[0] == "serve" else 0
        proc = await _start(tmp_path, _config(fake, port), *command)
        await _check_serving(proc)


def _config(fake: FakeProvider, port: int, **api: object) -> dict[str, Any]:
    return {
        "providers": {"custom": {"apiKey": "sk-test", "apiBase": fake.api_base("custom")}},
        "tools": {"imageGeneration": {"provider": "custom", "model": "flux-dev"}},
        "bots": {"api": {"enabled": True, "host": "127.0.0.1", "port": port, "apiKey": "serve-key", **api}},
    }


async def _start(tmp_path: Path, config: dict[str, Any], command: str, *args: str) -> asyncio.subprocess.Process:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIXBOT_") and k not in ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN")}
    env["PYTHONPATH"] = str(_ROOT)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots", command, "--config", str(path), *args,
        cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)


async def _check_serving(proc: asyncio.subprocess.Process) -> None:
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


async def test_serve_that_cannot_listen_exits_2_with_one_error_line(tmp_path: Path, fake: FakeProvider) -> None:
    """A port in use or out of range, or a public host without a key: `error: ...`, exit 2, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cases = {
            "port in use": (["--port", str(taken.getsockname()[1])], "address already in use"),
            "port out of range": (["--port", "99999"], "cannot listen on 127.0.0.1:99999"),
            "public host, no key": (["--host", "0.0.0.0"], "set bots.api.apiKey"),
        }
        for name, (args, said) in cases.items():
            proc = await _start(tmp_path, _config(fake, 0, apiKey=None), "serve", *args)
            _, err = await asyncio.wait_for(proc.communicate(), 20)
            errors = [line for line in err.decode(errors="replace").splitlines() if " INFO " not in line]
            assert proc.returncode == 2, (name, errors)
            assert len(errors) == 1 and errors[0].startswith("error: ") and said in errors[0], (name, errors)
