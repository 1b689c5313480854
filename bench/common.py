"""Shared benchmark plumbing: the fake provider process, pixbot and nanobot set-ups, rows, tables, machine.

Every benchmark compares pixbot and nanobot in one run against the same loopback fake provider
(``tests/fakes/fake_provider.py``), started as its own process so that its CPU time and memory never
count against either client. Both clients speak to it as the ``custom`` provider (OpenAI Images
wire format, ``b64_json`` answers: nanobot refuses to download from loopback URLs).
"""

from __future__ import annotations

import json
import os
import platform
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "CHAT_KEY",
    "MODEL",
    "PROMPT",
    "REPO",
    "BenchError",
    "Benchmark",
    "FakeServer",
    "Row",
    "fmt",
    "machine",
    "markdown_table",
    "median",
    "nanobot_generate",
    "nanobot_tool",
    "pixbot_cli",
    "pixbot_config",
    "pixbot_generate",
    "pixbot_service",
    "progress",
    "scratch_dir",
    "timed",
]

REPO = Path(__file__).resolve().parent.parent
PROMPT = "a lighthouse on a cliff at dusk, oil painting"
MODEL = "gpt-image-1"
CHAT_KEY = "bench:1"
_FAKE_START_S = 60.0


class BenchError(RuntimeError):
    """A benchmark could not produce a trustworthy number (a generation failed, a process died)."""


@dataclass
class Row:
    """One comparison: the same case measured for pixbot and (when it applies) nanobot.

    Later benchmarks (Telegram chats, HTTP API throughput) add rows of this shape; either side may be
    None when it has no counterpart. ``extra`` holds raw samples and anything the JSON should keep.
    """

    benchmark: str
    case: str
    unit: str
    pixbot: float | None = None
    nanobot: float | None = None
    goal: str = ""
    met: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """pixbot ÷ nanobot (below 1 means pixbot is faster or smaller)."""
        if self.pixbot is None or not self.nanobot:
            return None
        return self.pixbot / self.nanobot

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


@dataclass(frozen=True)
class Benchmark:
    """A registry entry: ``run()`` prints its own detailed table and returns its rows."""

    name: str
    title: str
    run: Callable[[], list[Row]]


def progress(message: str) -> None:
    """Progress goes to stderr so that stdout holds only the tables."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- the fake provider, in its own process -------------------------------------------------------


class FakeServer:
    """``python -m tests.fakes.fake_provider`` as a subprocess; ``with FakeServer(...) as fake``.

    The fake builds (and caches) its image before printing its URL, so the first request is not slower.
    """

    def __init__(self, *, latency_ms: float = 0.0, image_bytes: int | None = None) -> None:
        self.latency_ms = latency_ms
        self.image_bytes = image_bytes
        self.url = ""
        self.pid = 0
        self._process: subprocess.Popen[str] | None = None
        self._log = tempfile.TemporaryFile(mode="w+")

    def api_base(self, provider: str = "custom") -> str:
        return f"{self.url}/{provider}/v1"

    def __enter__(self) -> FakeServer:
        argv = [sys.executable, "-m", "tests.fakes.fake_provider", "--host", "127.0.0.1", "--port", "0",
                "--latency-ms", str(self.latency_ms)]
        if self.image_bytes is not None:
            argv += ["--image-bytes", str(self.image_bytes)]
        self._process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=self._log, text=True)
        self.pid = self._process.pid
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], _FAKE_START_S)
        line = self._process.stdout.readline().strip() if ready else ""
        if not line.startswith("http://127.0.0.1:"):
            self.__exit__()
            raise BenchError(f"the fake provider did not start: {line!r} {self._stderr_tail()}")
        self.url = line
        return self

    def __exit__(self, *exc: object) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None and process.stdout is not None:
            process.stdout.close()
        self._log.close()

    def _stderr_tail(self) -> str:
        self._log.seek(0)
        return self._log.read()[-2000:]


# --- pixbot ---------------------------------------------------------------------------------------


def pixbot_config(api_base: str, data_dir: Path) -> dict[str, Any]:
    """The config file (camelCase, as users write it): custom provider at the fake, quotas off."""
    return {
        "providers": {"custom": {"apiBase": api_base}},
        "tools": {"imageGeneration": {"enabled": True, "provider": "custom", "model": MODEL,
                                      "maxImagesPerTurn": 8}},
        "storage": {"dataDir": str(data_dir)},
        "limits": {"perUserDaily": 0, "perChatJobs": 64},
    }


@asynccontextmanager
async def pixbot_service(api_base: str, data_dir: Path) -> AsyncIterator[Any]:
    """pixbot's real composition root (``bots.app.open_service``) over that config."""
    from bots.app import open_service
    from core.config import AppConfig

    config = AppConfig(**pixbot_config(api_base, data_dir))
    async with open_service(config) as service:
        yield service


async def pixbot_generate(service: Any, count: int, size: str | None = None) -> list[int]:
    """One ``ImageService.submit`` as a chat front-end makes it; returns the stored byte sizes."""
    from core.models import ChatRef, ImageRequest

    request = ImageRequest(prompt=PROMPT, chat=ChatRef.from_key(CHAT_KEY, user_id="bench"), count=count,
                           size=size, mode="generate")
    result = await service.submit(request)
    if not result.ok or len(result.artifacts) != count:
        raise BenchError(f"pixbot stored {len(result.artifacts)}/{count} images: {result.errors}")
    return [artifact.bytes for artifact in result.artifacts]


def pixbot_cli() -> list[str]:
    """The installed ``pixbot`` console script beside this interpreter, else ``python -m bots``."""
    script = Path(sys.executable).with_name("pixbot")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bots"]


# --- nanobot --------------------------------------------------------------------------------------


def _quiet_nanobot() -> None:
    """nanobot logs every request body through loguru; silenced so that stderr stays readable."""
    from loguru import logger

    logger.disable("nanobot")


def nanobot_tool(api_base: str, data_dir: Path, *, max_images: int = 8) -> Any:
    """nanobot's own ``generate_image`` tool, configured as its config file would (provider custom).

    nanobot derives its media directory from one process-wide config path, so the last call wins.
    """
    _quiet_nanobot()
    from nanobot.agent.tools.image_generation import ImageGenerationTool, ImageGenerationToolConfig
    from nanobot.config.loader import set_config_path
    from nanobot.config.schema import ProviderConfig

    data_dir.mkdir(parents=True, exist_ok=True)
    set_config_path(data_dir / "config.json")
    config = ImageGenerationToolConfig(enabled=True, provider="custom", model=MODEL,
                                       max_images_per_turn=max_images)
    return ImageGenerationTool(workspace=data_dir / "workspace", config=config,
                               provider_configs={"custom": ProviderConfig(api_base=api_base)})


async def nanobot_generate(tool: Any, count: int, size: str | None = None) -> list[str]:
    """One ``generate_image`` call as the agent loop makes it; returns the stored paths."""
    answer = await tool.execute(prompt=PROMPT, count=count, image_size=size)
    try:
        artifacts = json.loads(answer)["artifacts"]
    except (ValueError, KeyError, TypeError):
        raise BenchError(f"nanobot failed: {str(answer)[:300]}") from None
    if len(artifacts) != count:
        raise BenchError(f"nanobot stored {len(artifacts)}/{count} images")
    return [str(a["path"]) for a in artifacts]


# --- measuring and reporting ----------------------------------------------------------------------


async def timed(call: Awaitable[object]) -> float:
    """Wall seconds of one awaited call."""
    started = time.perf_counter()
    await call
    return time.perf_counter() - started


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def scratch_dir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    """A fresh directory for one benchmark's data (media, SQLite, nanobot's media root)."""
    return tempfile.TemporaryDirectory(prefix=f"pixbot-bench-{prefix}-")


def fmt(value: object) -> str:
    """Numbers with three significant-ish digits; None as a dash; booleans as yes/no."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        magnitude = abs(value)
        if magnitude >= 100:
            return f"{value:.0f}"
        if magnitude >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """What the numbers were measured on; goes into the JSON and docs/performance.md."""
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "nproc": nproc,
        "cpu_model": _cpu_model(),
        "memory_gb": _mem_total_gb(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "versions": {name: _version(name) for name in
                     ("pixbot", "nanobot-ai", "httpx", "pillow", "aiohttp", "pydantic")},
        "tmp_dir": tempfile.gettempdir(),
    }
