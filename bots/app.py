"""The composition root: config → clients → providers → store/state → ImageService → front-ends.

The only place that looks provider classes up by name and opens shared resources."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import signal
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Final

from core.artifacts import ArtifactStore
from core.config import AppConfig, ProviderConfig
from core.download import ImageDownloader
from core.engines import open_storage
from core.errors import ConfigError, PixbotError
from core.net import create_client
from core.provider import ImageProvider
from core.service import ImageService
from core.watch import watch

__all__ = ["FrontEnd", "build_providers", "enabled_front_ends", "open_service", "run_front_ends"]

log = logging.getLogger(__name__)

#: A front-end runs until ``stop`` is set, then returns after shutting down cleanly.
FrontEnd = Callable[[AppConfig, ImageService, asyncio.Event], Coroutine[Any, Any, None]]


def build_providers(config: AppConfig, stack: AsyncExitStack) -> dict[str, ImageProvider]:
    """One adapter per registered provider; each configured one has its own reused httpx client and
    downloader. Unconfigured ones (``missing()`` non-empty: never called) share one idle pair, because
    every client loads the CA bundle (~20 ms each), which dominated ``pixbot`` start-up."""
    from providers.base import HttpProvider
    from providers.registry import PROVIDERS

    providers: dict[str, ImageProvider] = {}
    whitelist = config.tools.ssrf_whitelist
    idle_client = create_client(timeout=HttpProvider.default_timeout)
    stack.push_async_callback(idle_client.aclose)
    idle_downloader = ImageDownloader(whitelist=whitelist)
    stack.push_async_callback(idle_downloader.aclose)
    for name, cls in PROVIDERS.items():
        provider_cfg = config.provider(name)
        idle: ImageProvider = cls(provider_cfg, idle_client, idle_downloader)
        providers[name] = idle if idle.missing() else open_adapter(name, provider_cfg, whitelist, stack)
    return providers


def open_adapter(name: str, provider_cfg: ProviderConfig, whitelist: list[str], stack: AsyncExitStack, *,
                 timeout_cap: float | None = None) -> ImageProvider:
    """Provider ``name``'s adapter with its own httpx client and downloader (closed with ``stack``), at the
    provider's timeout (at most ``timeout_cap``)."""
    from providers.registry import PROVIDERS

    cls = PROVIDERS[name]
    timeout = provider_cfg.timeout or cls.default_timeout
    if timeout_cap is not None:
        timeout = min(timeout, timeout_cap)
    client = create_client(timeout=timeout, proxy=provider_cfg.proxy)
    stack.push_async_callback(client.aclose)
    downloader = ImageDownloader(whitelist=whitelist, proxy=provider_cfg.proxy, timeout=timeout)
    stack.push_async_callback(downloader.aclose)
    return cls(provider_cfg, client, downloader)


@asynccontextmanager
async def open_service(config: AppConfig) -> AsyncIterator[ImageService]:
    async with AsyncExitStack() as stack:
        providers = build_providers(config, stack)
        store = ArtifactStore(config.media_dir, config.image.save_dir, max_pixels=config.limits.max_pixels)
        storage = await stack.enter_async_context(open_storage(config))
        service = ImageService(config, providers, store, storage.state, storage.jobs,
                               coordination=storage.coordination)
        service.events = storage.events
        service.storage_info = {"engine": storage.engine, "location": storage.location,
                                "schema_version": storage.schema_version}
        await _check_data_dir(config, service)
        swept = await store.sweep_temp()
        if swept:
            log.info("removed %d partial files left by a crash", swept)
        # Jobs whose process is gone (a crash, a restart) are settled; those of a live process (a running
        # bot, another CLI call on this data dir) keep running: each job names its owner and holds a lease.
        settled = await service.recover()
        if settled:
            log.info("settled %d jobs interrupted by the last shutdown", len(settled))
        yield service


#: Names the data dir; the database remembers the first one it was used with.
DATA_DIR_ID: Final = ".pixbot-data-id"


async def _check_data_dir(config: AppConfig, service: ImageService) -> None:
    """Every process must see the same data dir (the images): a process whose data dir is not the one
    the database was first used with (a shared volume that failed to mount, another machine's folder)
    stops instead of recording images the others cannot read."""
    identity = await asyncio.to_thread(_data_dir_identity, config.data_dir / DATA_DIR_ID)
    recorded = await service.deployment_setting("data_dir_id", identity)
    if recorded != identity:
        raise ConfigError(f"storage.dataDir {config.data_dir} is not the data directory this database was first "
                          "used with: every pixbot process must see the same shared folder (is the shared volume "
                          "mounted?). See docs/scaling.md.")


def _data_dir_identity(path: Path) -> str:
    """The data dir's id, made by the first process to look (the others read the winner's)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
        draft.write_text(secrets.token_hex(16) + "\n", encoding="utf-8")
        try:
            os.link(draft, path)  # appears whole, and only the first of several processes' drafts wins
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text(encoding="utf-8").strip()


def enabled_front_ends(config: AppConfig) -> dict[str, FrontEnd]:
    """The front-ends this config turns on, imported only when used."""
    front_ends: dict[str, FrontEnd] = {}
    if config.bots.telegram.active:
        from bots.telegram import run_telegram

        front_ends["telegram"] = run_telegram
    if config.bots.discord.active:
        from bots.discord import run_discord

        front_ends["discord"] = run_discord
    if config.bots.web.enabled or config.bots.api.enabled:
        from bots.web import run_server

        # One server: the studio's pages and the API under /v1 (either may be off).
        front_ends["web"] = run_server
    return front_ends


@contextlib.contextmanager
def frozen_startup_heap() -> Iterator[None]:
    """What is alive once a bot has started (modules, pydantic, aiogram and discord.py schemas, the
    config) lives until it stops. Freezing it keeps the collector from walking it on every full
    collection, each of which stalled the event loop for 160-190 ms in the Telegram benchmark."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def run_front_ends(config: AppConfig, front_ends: dict[str, FrontEnd],
                         stop: asyncio.Event | None = None) -> None:
    """Run front-ends until SIGINT/SIGTERM (or ``stop``), then let running jobs finish briefly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with open_service(config) as service, AsyncExitStack() as clients:
            with frozen_startup_heap():
                async with asyncio.TaskGroup() as group:
                    launcher = Launcher(config, service, stop, group, clients)
                    for name, start in front_ends.items():
                        launcher.start(name, start)
                    group.create_task(watch(service, stop), name="watch")
                    if config.storage.retention_days:
                        group.create_task(_retention(service, stop), name="retention")
    except BaseExceptionGroup as failed:
        # A front-end that cannot run (a rejected token, a port in use) stops them all. Raise its own error,
        # so the command line prints its one ``error:`` line instead of a task-group traceback.
        first, *others = _leaves(failed)
        for other in others:
            log.error("front-end failed: %s", other, exc_info=None if isinstance(other, PixbotError) else other)
        raise first from None
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


class Launcher:
    """Starts front-ends, also later: the studio's set-up page saves a config, the service takes its
    providers, and a bot whose token was just set starts without a restart."""

    def __init__(self, config: AppConfig, service: ImageService, stop: asyncio.Event, group: asyncio.TaskGroup,
                 clients: AsyncExitStack) -> None:
        self.config, self.service, self.stop, self.group, self.clients = config, service, stop, group, clients
        self.running: set[str] = set()

    def start(self, name: str, start: FrontEnd) -> asyncio.Task[None]:
        log.info("starting %s front-end", name)
        self.running.add(name)
        work = (start(self.config, self.service, self.stop, reconfigure=self.reconfigure)  # type: ignore[call-arg]
                if name == "web" else start(self.config, self.service, self.stop))
        return self.group.create_task(work, name=f"front-end:{name}")

    async def reconfigure(self) -> list[str]:
        """Load the config file again and apply what can change while running; say what happened."""
        from core.config_file import load_config

        config = await asyncio.to_thread(load_config, self.config.config_path, env_file=None)
        # Clients of the providers replaced stay open until the process stops: jobs running now use them.
        self.service.reconfigure(config, build_providers(config, self.clients))
        said = [f"New requests use {config.image.provider} / {config.image.model}."]
        previous, self.config = self.config, config
        for name in ("telegram", "discord"):
            if name in self.running and getattr(previous.bots, name).token != getattr(config.bots, name).token:
                said.append(f"Restart pixbot to use the new {name.capitalize()} token.")
        for name, start in enabled_front_ends(config).items():
            if name not in self.running:
                said.append(await self._start_late(name, start))
        return said

    async def _start_late(self, name: str, start: FrontEnd) -> str:
        """A bot set up while running: one that cannot start (a refused token) is reported, and the
        rest of the process carries on (at start-up the same failure stops everything)."""
        log.info("starting %s front-end", name)
        self.running.add(name)
        task = self.group.create_task(self._guarded(name, start(self.config, self.service, self.stop)),
                                      name=f"front-end:{name}")
        done, _ = await asyncio.wait([task], timeout=LATE_START_CHECK_S)
        failure = task.result() if done else None
        if failure is not None:
            return f"The {name.capitalize()} bot did not start: {failure}"
        return f"The {name.capitalize()} bot started."

    async def _guarded(self, name: str, work: Coroutine[Any, Any, None]) -> str | None:
        try:
            await work
        except Exception as exc:
            self.running.discard(name)
            log.error("the %s front-end stopped: %s", name, exc, exc_info=None if isinstance(exc, PixbotError) else exc)
            return exc.public_message if isinstance(exc, PixbotError) and exc.category != "internal" else str(exc)
        return None


#: How long a bot started from the set-up page is watched for an immediate failure (a refused token).
LATE_START_CHECK_S = 3.0
#: How often a running bot applies ``storage.retentionDays``.
RETENTION_EVERY_S = 6 * 3600


async def _retention(service: ImageService, stop: asyncio.Event) -> None:
    """Apply the retention policy at start (even when stopping at once) and every few hours until
    ``stop``; never fatal."""
    while True:
        try:
            removed = await service.prune()
            if removed:
                log.info("retention: %d image(s) older than %d days removed", removed,
                         service.config.storage.retention_days)
        except (OSError, PixbotError) as exc:
            log.warning("retention: prune failed, will try again: %s", exc)
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RETENTION_EVERY_S)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions inside a (possibly nested) exception group, in order."""
    return [leaf for error in group.exceptions
            for leaf in (_leaves(error) if isinstance(error, BaseExceptionGroup) else [error])]
