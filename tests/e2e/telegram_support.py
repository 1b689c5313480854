"""The Telegram e2e harness: the real ``run_telegram`` (aiogram Bot + Dispatcher) against the fake Bot API,
with a real ImageService on a tmp_path config whose provider is the loopback FakeProvider."""

from __future__ import annotations

import asyncio
import json
import socket
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from bots.app import open_service
from bots.telegram import TelegramOptions, run_telegram
from core.config import AppConfig
from core.config_file import load_config
from core.net import RetryPolicy
from core.service import ImageService
from tests.fakes.fake_provider import FakeProvider
from tests.fakes.fake_telegram import Call, FakeTelegramServer, Upload

__all__ = ["FAST", "TelegramHarness", "artifact_of", "free_port", "upload_of"]

#: Short waits so the suite stays fast; status messages only where a test asks for them.
FAST = TelegramOptions(album_window=0.25, status_after=60.0, status_edit_interval=0.05, polling_timeout=5,
                       shutdown_grace=5.0)
_FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002, total=5.0)


def free_port() -> int:
    """A port for a webhook URL that must be known before the bot binds it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def upload_of(call: Call, field: str) -> Upload:
    """The file a sendPhoto/sendDocument call uploaded in ``field`` (``attach://<part>``)."""
    return call.uploads[str(call.params[field]).removeprefix("attach://")]


def artifact_of(call: Call) -> str:
    """The artifact behind a result message: its 📎 Original button names it."""
    rows = call.params["reply_markup"]["inline_keyboard"]
    data = next(b["callback_data"] for row in rows for b in row if b["callback_data"].startswith("orig:"))
    return str(data).removeprefix("orig:")


class TelegramHarness:
    """``await h.start(telegram={...})`` runs the bot; ``await h.stop()`` shuts it down the way ``pixbot run``
    does (stop event), after which every job has been delivered or recorded."""

    def __init__(self, tmp_path: Path, server: FakeTelegramServer, provider: FakeProvider) -> None:
        self.tmp_path, self.server, self.provider = tmp_path, server, provider
        self._stack = AsyncExitStack()
        self._service: ImageService | None = None
        self.config: AppConfig | None = None
        self.stop_event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def service(self) -> ImageService:
        assert self._service is not None, "call open() or start() first"
        return self._service

    async def open(self, *, telegram: dict[str, Any] | None = None, limits: dict[str, Any] | None = None,
                   image: dict[str, Any] | None = None) -> ImageService:
        """Write the config and open the service (without the bot), e.g. to create jobs before a start."""
        raw: dict[str, Any] = {
            "providers": {"custom": {"apiKey": "sk-test", "apiBase": self.provider.api_base("custom")}},
            "tools": {"imageGeneration": {"provider": "custom", "model": "flux-dev", "maxImagesPerTurn": 8,
                                          **(image or {})},
                      "ssrfWhitelist": ["127.0.0.0/8"]},
            "bots": {"telegram": {"token": self.server.token, "apiBase": self.server.base_url, **(telegram or {})}},
            "limits": {"perUserDaily": 0, **(limits or {})},
        }
        path = self.tmp_path / "config.json"
        path.write_text(json.dumps(raw))
        self.config = load_config(path, env_file=None)
        self._service = await self._stack.enter_async_context(open_service(self.config))
        self._service.retry = _FAST_RETRY
        return self._service

    async def run_bot(self, options: TelegramOptions = FAST) -> None:
        assert self.config is not None
        self.task = asyncio.create_task(run_telegram(self.config, self.service, self.stop_event, options=options))
        ready = asyncio.create_task(self._ready())
        done, _ = await asyncio.wait({self.task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if self.task in done:
            ready.cancel()
            await self.task  # raises why it could not start
            raise AssertionError("run_telegram returned before it was ready")
        await ready

    async def _ready(self) -> None:
        assert self.config is not None
        if self.config.bots.telegram.mode == "webhook":
            # wait_for would also count a refused setWebhook, after which the bot is not running
            await self.server.wait_until(lambda: any(c.ok for c in self.server.calls_of("setWebhook")),
                                         what="the webhook to be set")
        else:
            await self.server.wait_until(lambda: self.server.polls_waiting >= 1, what="the bot's first long poll")

    async def start(self, *, options: TelegramOptions = FAST, **config: dict[str, Any]) -> ImageService:
        service = await self.open(**config)
        await self.run_bot(options)
        return service

    async def stop(self) -> None:
        """Set the stop event and wait for run_telegram to return (it drains running jobs first)."""
        self.stop_event.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 15)

    async def close(self) -> None:
        try:
            if self.task is not None and not self.task.done():
                await self.stop()
        finally:
            await self._stack.aclose()
