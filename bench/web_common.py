"""Shared web-studio plumbing for the benchmarks: an in-process studio server, a signed-in client, Chromium.

The server is pixbot's real service and ``bots.web.server.make_server`` (studio pages and the ``/v1`` API in
one aiohttp app) on a free 127.0.0.1 port; the browser is Debian's Chromium driven through Playwright.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from bench.common import BenchError, pixbot_config

__all__ = ["TIMEOUT_S", "TOKEN", "WORDS", "Server", "browser", "chromium", "serve", "signed_in"]

#: The studio's sign-in token (``?token=``) for this run.
TOKEN = "bench-studio-" + secrets.token_hex(16)
TIMEOUT_S = 30.0
#: Prompts for the images the benchmarks make or store.
WORDS = ("a fox in snow", "a red bicycle", "a castle at night", "a bowl of ramen", "an old map",
         "a glass teapot", "a desert road", "a paper boat", "a city in rain", "a cat asleep",
         "a mountain lake", "a neon sign", "a winter forest", "a sailing ship", "a clockwork bird",
         "a koi pond", "a jazz club", "a robot gardener", "a tea house")
_CSRF = re.compile(r'data-csrf="([0-9a-f]+)"')


@dataclass
class Server:
    base: str
    service: Any


@asynccontextmanager
async def serve(root: Path, api_base: str) -> AsyncIterator[Server]:
    """pixbot's service and ``make_server`` (studio and API) on a free loopback port."""
    from bots.app import open_service
    from bots.web.server import make_server
    from core.config import AppConfig

    raw = pixbot_config(api_base, root / "data")
    raw["bots"] = {"api": {"enabled": True, "host": "127.0.0.1", "port": 0}, "web": {"token": TOKEN}}
    config = AppConfig(**raw)
    async with open_service(config) as service:
        runner = web.AppRunner(make_server(config, service, token=TOKEN), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            yield Server(f"http://127.0.0.1:{runner.addresses[0][1]}", service)
        finally:
            await runner.cleanup()


async def signed_in(base: str) -> tuple[httpx.AsyncClient, str]:
    """An httpx client holding the session cookie, and the pages' CSRF token."""
    client = httpx.AsyncClient(base_url=base, timeout=TIMEOUT_S)
    signed = await client.get(f"/gallery?token={TOKEN}")
    page = await client.get("/gallery")
    match = _CSRF.search(page.text)
    if signed.status_code != 302 or page.status_code != 200 or not match:
        await client.aclose()
        raise BenchError(f"could not sign in to the studio: {signed.status_code} {page.status_code}")
    return client, match[1]


def chromium() -> str | None:
    """Chromium's executable (``PIXBOT_CHROMIUM``, else on PATH), or None without it or without Playwright."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return None
    return os.environ.get("PIXBOT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@asynccontextmanager
async def browser(executable: str) -> AsyncIterator[Any]:
    """Chromium launched headless through Playwright."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chrome = await playwright.chromium.launch(executable_path=executable,
                                                  args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield chrome
        finally:
            await chrome.close()
