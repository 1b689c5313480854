"""Fixtures for the reliability suite: the real composition root (open_service) against the loopback fake.

Every test here goes through ``bots.app.open_service`` (real providers, store, ledger, state database)
with the fake provider on 127.0.0.1; nothing is mocked. Retries are fast but real: the policy is the
service's own ``RetryPolicy``, only with millisecond delays.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bots.app import open_service
from core.config import AppConfig
from core.config_file import load_config
from core.net import RetryPolicy
from core.service import ImageService
from tests.fakes.fake_provider import FakeProvider
from tests.fakes.logcheck import assert_no_error_logs

__all__ = ["FAST_RETRY", "KEY", "ONE_SHOT", "Harness", "api_requests", "closed_port", "deep_merge", "slot_failures"]

#: Looks like no well-known key shape, so only pixbot's exact-secret redaction can hide it.
KEY = "pxb-live-Q7wX2mK9vL4tR8nZ"
#: The default policy's shape (3 attempts) with millisecond delays and no jitter.
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002, total=10.0, jitter=0.0)
#: No retries: a fault queued once hits exactly one slot of a job.
ONE_SHOT = RetryPolicy(attempts=1)


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, nested dicts merged rather than replaced."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def api_requests(fake: FakeProvider) -> list[str]:
    """Requests the fake saw, except downloads of ``url`` answers."""
    return [f"{r.method} {r.path}" for r in fake.requests if "/files/" not in r.path]


#: Sockets behind ``closed_port``: bound, never listening, closed when the test session ends.
_RESERVED: list[socket.socket] = []


def pytest_sessionfinish() -> None:
    while _RESERVED:
        _RESERVED.pop().close()


def closed_port() -> int:
    """A loopback port nothing listens on. It stays bound (without ``listen``) for the rest of the run, so
    a connection is refused at once and no server of another test or xdist worker can be given the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    _RESERVED.append(sock)
    port: int = sock.getsockname()[1]
    return port


@dataclass
class Harness:
    """Writes a config into the test's data dir and opens the real service on it."""

    root: Path
    fake: FakeProvider

    def raw_config(self, **overrides: Any) -> dict[str, Any]:
        raw: dict[str, Any] = {
            # One configured provider: each one costs two TLS-ready clients at start-up (~40 ms).
            "providers": {"custom": {"apiKey": KEY, "apiBase": self.fake.api_base("custom")}},
            # Small images: the fake draws them and the store decodes each one in full.
            "tools": {"imageGeneration": {"provider": "custom", "model": "flux-dev", "maxImagesPerTurn": 8,
                                          "defaultImageSize": "64x64"},
                      "ssrfWhitelist": ["127.0.0.0/8"]},
            "limits": {"perUserDaily": 0},
        }
        return deep_merge(raw, overrides)

    def write_config(self, raw: dict[str, Any], name: str = "config.json") -> Path:
        path = self.root / name
        path.write_text(json.dumps(raw), encoding="utf-8")
        return path

    def config(self, **overrides: Any) -> AppConfig:
        """The default test config (``custom`` on the fake) with ``overrides`` merged in."""
        return self.config_from(self.raw_config(**overrides))

    def config_from(self, raw: dict[str, Any]) -> AppConfig:
        return load_config(self.write_config(raw), env_file=None)

    def open(self, retry: RetryPolicy = FAST_RETRY, **overrides: Any) -> AbstractAsyncContextManager[ImageService]:
        """``open_service`` on this data dir (the same one every time, so reopening is a restart)."""
        return self.open_config(self.config(**overrides), retry)

    @asynccontextmanager
    async def open_config(self, config: AppConfig, retry: RetryPolicy = FAST_RETRY) -> AsyncIterator[ImageService]:
        async with open_service(config) as service:
            service.retry = retry
            yield service


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


@pytest.fixture
def harness(tmp_path: Path, fake: FakeProvider) -> Harness:
    return Harness(tmp_path, fake)


@pytest.fixture(autouse=True)
def no_crash(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every fault must end as a categorised error: an ERROR log (``log.exception`` of an unexpected
    exception in a slot, a failing request handler) fails the test."""
    caplog.set_level(logging.INFO)
    yield
    assert_no_error_logs(caplog, "core", "providers", "bots", "aiohttp", "asyncio")


def slot_failures(caplog: pytest.LogCaptureFixture, since: int = 0) -> list[str]:
    """The service's INFO line per failed slot, ``job … slot N <provider> failed: <category> (…)``, among
    the records captured from index ``since`` on."""
    return [r.getMessage() for r in caplog.records[since:]
            if r.name == "core.service" and " failed: " in r.getMessage()]

