"""Running the real ``pixbot`` command as a subprocess against the in-process loopback fake provider.

The child is ``python -m bots`` started with ``asyncio.create_subprocess_exec`` so the fake (served by
the test's own event loop) keeps answering while the test awaits the child. Each run gets: cwd = the
test's temp dir (no stray ``.env``), HOME there too, no provider keys, bot tokens, ``PIXBOT_*`` or proxy
variables from the developer's environment, and an explicit ``--config``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from core.config import ProviderConfig
from core.config_file import BOT_TOKEN_ENV, PROVIDER_BASE_ENV, PROVIDER_KEY_ENV
from core.provider import Capabilities
from providers.registry import PROVIDERS
from tests.fakes.fake_provider import FakeProvider, Recorded

__all__ = ["RUN_TIMEOUT", "Cli", "CliResult", "adapter_capabilities", "carries_reference", "clean_env"]

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Generous: a child costs ~0.7 s to start, more when the machine is busy. Never a sleep, only a bound.
RUN_TIMEOUT = 60.0
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def clean_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The developer's environment minus anything that would configure pixbot behind the test's back."""
    drop = {name for names in PROVIDER_KEY_ENV.values() for name in names}
    drop |= set(PROVIDER_BASE_ENV.values()) | set(BOT_TOKEN_ENV.values())
    env = {
        key: value for key, value in os.environ.items()
        if key not in drop and not key.startswith("PIXBOT_") and key.lower() not in _PROXY_VARS
    }
    env["HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class CliResult:
    """One finished ``pixbot`` run."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.out.strip(), f"no stdout from pixbot {' '.join(self.args)}; stderr: {self.err}"
        return json.loads(self.out)

    def __str__(self) -> str:
        command = " ".join(a[:60] for a in self.args)
        return f"pixbot {command} → {self.code}\nstdout: {self.out}\nstderr: {self.err}"


class Cli:
    """A temp working directory with config files, and a way to run ``pixbot`` in it."""

    def __init__(self, root: Path, fake: FakeProvider) -> None:
        self.root = root
        self.fake = fake
        self.env = clean_env(root)

    def write_config(self, raw: dict[str, Any], name: str = "config.json") -> Path:
        path = self.root / name
        path.write_text(json.dumps(raw), encoding="utf-8")
        return path

    def provider_config(self, provider: str, model: str, *, api_key: str = "sk-e2e",
                        extra: dict[str, Any] | None = None, whitelist: bool = True) -> dict[str, Any]:
        """A config whose default (and only configured) provider is ``provider`` on the fake."""
        block: dict[str, Any] = {"apiKey": api_key, "apiBase": self.fake.api_base(provider), **(extra or {})}
        tools: dict[str, Any] = {"imageGeneration": {"provider": provider, "model": model}}
        if whitelist:
            tools["ssrfWhitelist"] = ["127.0.0.0/8"]
        return {"providers": {provider: block}, "tools": tools}

    async def start(self, *args: str, config: Path | None = None,
                    env: Mapping[str, str] | None = None) -> asyncio.subprocess.Process:
        """Start ``pixbot ARGS --config CONFIG`` (stdout and stderr piped)."""
        argv = [*args, "--config", str(config)] if config is not None else list(args)
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bots", *argv, cwd=self.root, env=dict(env or self.env),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )

    async def run(self, *args: str, config: Path | None = None,
                  env: Mapping[str, str] | None = None) -> CliResult:
        """Run ``pixbot ARGS --config CONFIG`` to the end; waits for the child without blocking the loop."""
        proc = await self.start(*args, config=config, env=env)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert proc.returncode is not None
        return CliResult(tuple(args), proc.returncode, out.decode(), err.decode())


def carries_reference(request: Recorded, image: bytes) -> bool:
    """Did this request upload ``image``: as a multipart file part, or base64 inside its JSON body?"""
    if any(upload.data == image for upload in request.files):
        return True
    return request.json is not None and base64.b64encode(image).decode() in json.dumps(request.json)


async def adapter_capabilities(provider: str, model: str) -> Capabilities:
    """What the adapter itself says ``model`` can do (the source of truth the tests compare against)."""
    async with httpx.AsyncClient() as client:
        return PROVIDERS[provider](ProviderConfig(), client).capabilities(model)
