"""The ``scale`` benchmark's processes (see ``bench/bench_scale.py``): ``pixbot`` subprocesses and databases.

``Fleet`` starts ``pixbot`` processes with a config file each and collects their stderr; ``open_fleet()`` stops
every one still running at the end. ``database()`` makes a fresh PostgreSQL database on the benchmark's server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import BenchError, pixbot_cli, pixbot_config

__all__ = ["START_S", "Fleet", "Proc", "api_config", "database", "open_fleet"]

START_S = 60.0
STOP_S = 15.0


@dataclass
class Proc:
    """One ``pixbot`` subprocess with its stderr collected line by line."""

    name: str
    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def wait_for(self, text: str, timeout: float = START_S) -> str:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for line in self.lines[seen:]:
                if text in line:
                    return line
            seen = len(self.lines)
            if self.process.returncode is not None:
                break
            await asyncio.sleep(0.02)
        raise BenchError(f"{self.name}: no {text!r} in its log:\n" + "".join(self.lines[-30:]))

    async def api_url(self) -> str:
        """The base URL from "pixbot API listening on http://…/v1"."""
        line = await self.wait_for("pixbot API listening on ")
        return line.rsplit("listening on ", 1)[1].split()[0].removesuffix("/v1")

    async def kill(self) -> None:
        """kill -9, and reap it (a zombie counts as gone too, but leave none behind)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
        await self.process.wait()


class Fleet:
    """The pixbot processes of one case; ``stop()`` ends every one still running (SIGTERM, then SIGKILL)."""

    def __init__(self, root: Path) -> None:
        from tests.e2e.cli_support import clean_env

        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.env = clean_env(root)  # no bot tokens, provider keys or PIXBOT_* from the caller's environment
        self.procs: list[Proc] = []

    async def start(self, name: str, config: dict[str, Any], *args: str) -> Proc:
        path = self.root / f"{name}.json"
        path.write_text(json.dumps(config))
        process = await asyncio.create_subprocess_exec(
            *pixbot_cli(), *args, "--config", str(path), cwd=self.root, env=self.env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        proc = Proc(name, process)

        async def read() -> None:
            assert process.stderr is not None
            while line := await process.stderr.readline():
                proc.lines.append(line.decode(errors="replace"))

        proc.reader = asyncio.create_task(read())
        self.procs.append(proc)
        return proc

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.process.returncode is None:
                proc.process.send_signal(signal.SIGTERM)
        for proc in self.procs:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.process.wait(), STOP_S)
            await proc.kill()
            if proc.reader is not None:
                await proc.reader


@contextlib.asynccontextmanager
async def open_fleet(root: Path) -> AsyncIterator[Fleet]:
    """A ``Fleet`` in ``root``, stopped on the way out."""
    fleet = Fleet(root)
    try:
        yield fleet
    finally:
        await fleet.stop()


@contextlib.asynccontextmanager
async def database(pg: Any) -> AsyncIterator[str]:
    """A fresh PostgreSQL database on the benchmark's server; its URL."""
    name = await pg.create_database()
    try:
        yield pg.url(name)
    finally:
        await pg.drop_database(name)


def api_config(api_base: str, data_dir: Path, url: str | None) -> dict[str, Any]:
    """A ``pixbot serve`` config: the API on a free loopback port, on PostgreSQL when ``url`` is given."""
    config = pixbot_config(api_base, data_dir)
    config["bots"] = {"api": {"enabled": True, "host": "127.0.0.1", "port": 0}}
    if url:
        config["storage"]["databaseUrl"] = url
    return config
