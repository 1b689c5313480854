"""The studio served in-process (``bots.web.server.make_server`` on a loopback port) over the real
service and the loopback fake provider; ``Studio.client()`` is a signed-in browser-like client."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from bots.app import open_service
from bots.web.server import make_server
from core.config_file import load_config
from core.net import RetryPolicy
from core.service import ImageService
from tests.fakes.fake_provider import FakeProvider

TOKEN = "studio-test-token-0123456789"
FAST_RETRY = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.002, total=5.0)
_CSRF = re.compile(r'data-csrf="([0-9a-f]+)"')


@dataclass
class Studio:
    base_url: str
    service: ImageService
    fake: FakeProvider
    config_path: Path
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def anonymous(self) -> httpx.AsyncClient:
        client = httpx.AsyncClient(base_url=self.base_url, timeout=20)
        self.clients.append(client)
        return client

    async def client(self) -> tuple[httpx.AsyncClient, str]:
        """Signed in with the token URL, as a browser opening the start-up line; and its CSRF token."""
        client = self.anonymous()
        signed = await client.get(f"/gallery?token={TOKEN}")
        assert signed.status_code == 302 and signed.headers["location"] == "/gallery", signed
        page = await client.get("/gallery")
        match = _CSRF.search(page.text)
        assert match, page.text[:500]
        return client, match[1]


StudioFactory = Callable[..., AbstractAsyncContextManager[Studio]]


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


def studio_config(fake: FakeProvider, *, image: dict[str, Any] | None = None, limits: dict[str, Any] | None = None,
                  api: bool = False, storage: dict[str, Any] | None = None) -> dict[str, Any]:
    """The studio's config.json: the fake provider's ``custom`` (default) and ``openai``, the test token."""
    raw: dict[str, Any] = {
        "providers": {"custom": {"apiKey": "sk-test", "apiBase": fake.api_base("custom")},
                      "openai": {"apiKey": "sk-oa", "apiBase": fake.api_base("openai")}},
        "tools": {"imageGeneration": {"provider": "custom", "model": "flux-dev", "maxImagesPerTurn": 4,
                                      "defaultImageSize": "", **(image or {})},
                  "ssrfWhitelist": ["127.0.0.0/8"]},
        "bots": {"api": {"enabled": api, "port": 0}, "web": {"token": TOKEN}},
        "limits": {"perUserDaily": 0, **(limits or {})},
    }
    if storage:
        raw["storage"] = storage
    return raw


@asynccontextmanager
async def serve(path: Path, raw: dict[str, Any], fake: FakeProvider) -> AsyncIterator[Studio]:
    """Write ``raw`` to ``path``, open the service on it and serve the studio on a free loopback port."""
    path.write_text(json.dumps(raw))
    config = load_config(path, env_file=None)
    async with open_service(config) as service:
        service.retry = FAST_RETRY
        runner = web.AppRunner(make_server(config, service), shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        studio = Studio(f"http://127.0.0.1:{runner.addresses[0][1]}", service, fake, path)
        try:
            yield studio
        finally:
            for client in studio.clients:
                await client.aclose()
            await runner.cleanup()


async def listen(client: httpx.AsyncClient, thread: str, into: list[dict[str, Any]], ready: asyncio.Event) -> None:
    """Read a thread's event stream into ``into``; ``ready`` once the stream is open."""
    async with client.stream("GET", f"/t/{thread}/events", headers={"Accept": "text/event-stream"}) as stream:
        async for line in stream.aiter_lines():
            if line.startswith(": connected"):
                ready.set()
            if line.startswith("data: "):
                into.append(json.loads(line[6:]))


@pytest.fixture
def serve_studio(tmp_path: Path, fake: FakeProvider) -> StudioFactory:
    def build(*, image: dict[str, Any] | None = None, limits: dict[str, Any] | None = None,
              api: bool = False) -> AbstractAsyncContextManager[Studio]:
        return serve(tmp_path / "config.json", studio_config(fake, image=image, limits=limits, api=api), fake)

    return build
