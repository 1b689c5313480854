"""Harness for the Discord front-end e2e tests: the fake Discord, the fake provider, a real service built by
the composition root from a config file, and `run_discord` started and stopped as `pixbot run` would.

Its fixtures are in tests/e2e/discord_fixtures.py, which test modules load as a plugin."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from bots.app import open_service
from bots.discord import run_discord
from core.config_file import load_config
from core.net import RetryPolicy
from core.service import ImageService
from tests.fakes.discord_wire import FakeInteraction, Json
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_provider import FakeProvider

__all__ = ["DiscordHarness", "bot_messages", "result_of"]

FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002, total=5.0)


class DiscordHarness:
    """`await h.start(**config_sections)` runs the bot; `await h.restart()` is a process restart (a new
    service over the same data directory); teardown stops everything."""

    def __init__(self, tmp_path: Path, fake: FakeDiscord, provider: FakeProvider) -> None:
        self.tmp_path = tmp_path
        self.fake = fake
        self.provider = provider
        self.sections: dict[str, Any] = {}
        self.service: ImageService | None = None
        self._stack: AsyncExitStack | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        #: (job id, chat key, [(message id, artifact id)]) for every mark_delivered, in order
        self.deliveries: list[tuple[str, str, list[tuple[str, str]]]] = []
        self._delivered = asyncio.Condition()

    def config(self, **sections: Any) -> dict[str, Any]:
        discord_block: dict[str, Any] = {"token": self.fake.token, "apiBase": self.fake.api_base,
                                         "gatewayUrl": self.fake.gateway_url,
                                         "commandGuilds": [g.id for g in self.fake.guilds]}
        raw: dict[str, Any] = {
            "providers": {"custom": {"apiKey": "sk-test", "apiBase": self.provider.api_base("custom")}},
            "tools": {"imageGeneration": {"provider": "custom", "model": "flux-dev", "maxImagesPerTurn": 8,
                                          "defaultImageSize": ""},
                      "ssrfWhitelist": ["127.0.0.0/8"]},
            # ``pixbot run`` in a test serves no studio (its default port may be taken by a parallel test).
            "bots": {"discord": discord_block, "web": {"enabled": False}},
            "limits": {"perUserDaily": 0},
            "storage": {"dataDir": str(self.tmp_path / "data")},
        }
        for section, values in sections.items():
            target = discord_block if section == "discord" else raw.setdefault(section, {})
            target.update(values)
        return raw

    async def start(self, **sections: Any) -> ImageService:
        """Start the front-end and wait until it is connected (a READY past the ones before for each shard
        it runs)."""
        self.sections = sections or self.sections
        path = self.tmp_path / "config.json"
        path.write_text(json.dumps(self.config(**self.sections)))
        config = load_config(path, env_file=None)
        self._stack = AsyncExitStack()
        service = await self._stack.enter_async_context(open_service(config))
        service.retry = FAST_RETRY
        self._spy_on_deliveries(service)
        self.service = service
        self._stop = asyncio.Event()
        settings = config.bots.discord
        readies = self.fake.ready_count + (len(settings.shard_ids) or settings.shard_count or 1)
        task = asyncio.create_task(run_discord(config, service, self._stop))
        self._task = task
        connected = asyncio.create_task(self.fake.wait_for(lambda: self.fake.ready_count >= readies, timeout=10))
        await asyncio.wait({task, connected}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            connected.cancel()
            self._task = None  # already ended: stop() must not raise its exception again
            await task  # raises what stopped it
            raise AssertionError("run_discord returned before connecting")
        await connected
        return service

    def _spy_on_deliveries(self, service: ImageService) -> None:
        """Record mark_delivered calls (the service's state has no change events to wait on)."""
        original = service.mark_delivered

        async def mark_delivered(job_id: str, chat_key: str, shown: Sequence[tuple[str, str]]) -> None:
            await original(job_id, chat_key, shown)
            self.deliveries.append((job_id, chat_key, list(shown)))
            async with self._delivered:
                self._delivered.notify_all()

        service.mark_delivered = mark_delivered  # type: ignore[method-assign]

    async def wait_delivered(self, count: int = 1, timeout: float = 10.0) -> list[tuple[str, str]]:  # noqa: ASYNC109
        """Wait for the `count`-th recorded delivery; returns its (message id, artifact id) pairs."""
        async with asyncio.timeout(timeout), self._delivered:
            await self._delivered.wait_for(lambda: len(self.deliveries) >= count)
        return self.deliveries[count - 1][2]

    async def stop(self) -> None:
        task, self._task = self._task, None
        try:
            if task is not None and self._stop is not None:
                self._stop.set()
                await asyncio.wait_for(task, 15)
        finally:
            if self._stack is not None:
                stack, self._stack = self._stack, None
                await stack.aclose()

    async def restart(self) -> ImageService:
        await self.stop()
        return await self.start()

    @property
    def running(self) -> asyncio.Task[None]:
        assert self._task is not None
        return self._task


def bot_messages(fake: FakeDiscord) -> list[Json]:
    """Public messages the bot posted, oldest first."""
    return [m for m in fake.messages() if m["author"]["id"] == fake.app_id]


async def result_of(fake: FakeDiscord, rec: FakeInteraction, timeout: float = 10.0) -> Json:  # noqa: ASYNC109
    """The interaction's original response once it holds attachments or final text (not "thinking…")."""
    return await fake.original_response(rec, lambda m: m["attachments"] or m["content"], timeout=timeout)

