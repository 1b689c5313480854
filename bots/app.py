"""The composition root: config → clients → providers → store/state → ImageService → front-ends.

The only place that looks provider classes up by name and opens shared resources."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from core.artifacts import ArtifactStore
from core.config import AppConfig
from core.db import Database
from core.jobs import JobLedger
from core.net import ImageDownloader, create_client
from core.provider import ImageProvider
from core.service import ImageService
from core.state import ChatState

__all__ = ["FrontEnd", "build_providers", "enabled_front_ends", "open_service", "run_front_ends"]

log = logging.getLogger(__name__)

#: A front-end runs until ``stop`` is set, then returns after shutting down cleanly.
FrontEnd = Callable[[AppConfig, ImageService, asyncio.Event], Awaitable[None]]


def build_providers(config: AppConfig, stack: AsyncExitStack) -> dict[str, ImageProvider]:
    """One adapter per registered provider, each with its own reused httpx client and downloader."""
    from providers.registry import PROVIDERS

    providers: dict[str, ImageProvider] = {}
    whitelist = config.tools.ssrf_whitelist
    for name, cls in PROVIDERS.items():
        provider_cfg = config.provider(name)
        timeout = provider_cfg.timeout or cls.default_timeout
        client = create_client(timeout=timeout, proxy=provider_cfg.proxy)
        stack.push_async_callback(client.aclose)
        downloader = ImageDownloader(whitelist=whitelist, proxy=provider_cfg.proxy, timeout=timeout)
        stack.push_async_callback(downloader.aclose)
        providers[name] = cls(provider_cfg, client, downloader)
    return providers


@asynccontextmanager
async def open_service(config: AppConfig) -> AsyncIterator[ImageService]:
    async with AsyncExitStack() as stack:
        providers = build_providers(config, stack)
        store = ArtifactStore(config.media_dir, config.image.save_dir, max_pixels=config.limits.max_pixels)
        db = await Database.open(config.state_path)
        stack.push_async_callback(db.close)
        service = ImageService(config, providers, store, ChatState(db), JobLedger(db))
        swept = await store.sweep_temp()
        if swept:
            log.info("removed %d partial files left by a crash", swept)
        settled = await service.recover()
        if settled:
            log.info("settled %d jobs interrupted by the last shutdown", settled)
        yield service


def enabled_front_ends(config: AppConfig) -> dict[str, FrontEnd]:
    """The front-ends this config turns on, imported only when used."""
    front_ends: dict[str, FrontEnd] = {}
    if config.bots.telegram.active:
        from bots.telegram import run_telegram

        front_ends["telegram"] = run_telegram
    if config.bots.discord.active:
        from bots.discord import run_discord

        front_ends["discord"] = run_discord
    if config.bots.api.enabled:
        from bots.http_api import run_api

        front_ends["api"] = run_api
    return front_ends


async def run_front_ends(config: AppConfig, front_ends: dict[str, FrontEnd],
                         stop: asyncio.Event | None = None) -> None:
    """Run front-ends until SIGINT/SIGTERM (or ``stop``), then let running jobs finish briefly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with open_service(config) as service:
            async with asyncio.TaskGroup() as group:
                for name, start in front_ends.items():
                    log.info("starting %s front-end", name)
                    group.create_task(start(config, service, stop), name=f"front-end:{name}")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
