"""Benchmark ``api``: images per second through ``pixbot serve`` vs straight to the fake provider.

The same client (httpx, 16 requests in flight, one image each, ``b64_json``) drives both paths, so
its own cost is the same on both sides: straight to the fake provider (``POST /custom/v1/images/
generations``), and through pixbot's OpenAI-compatible API (``pixbot serve`` as its own process,
which calls the same fake, validates and stores every image, and answers with it). Measured with a
zero-latency provider (pixbot's overhead is the whole cost) and with 200 ms (a fast real provider).
Goal: pixbot ≥ 0.8 × the direct rate. Here "nanobot" is the direct column: the provider alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    MODEL,
    PROMPT,
    REPO,
    BenchError,
    Benchmark,
    FakeServer,
    Row,
    markdown_table,
    pixbot_cli,
    pixbot_config,
    progress,
    scratch_dir,
)

__all__ = ["BENCHMARK", "run"]

REQUESTS = 160
IN_FLIGHT = 16
LATENCIES_MS = (0, 200)
GOAL_RATIO = 0.8
_START_S = 60.0


async def _drive(url: str, headers: dict[str, str], body_for: Callable[[int], dict[str, Any]]) -> float:
    """Send REQUESTS requests, IN_FLIGHT at a time; return images per second."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(REQUESTS):
        queue.put_nowait(index)
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                response = await client.post(url, json=body_for(index), headers=headers)
                if response.status_code != 200 or not response.json()["data"][0].get("b64_json"):
                    raise BenchError(f"{url} answered {response.status_code}: {response.text[:300]}")

        await client.post(url, json=body_for(-1), headers=headers)  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        return REQUESTS / (time.perf_counter() - started)


def _server_command() -> list[str]:
    """``pixbot``, or ``$PIXBOT_BENCH_SERVE`` (e.g. ``python -m cProfile -o serve.prof -m bots``) to profile it."""
    override = os.environ.get("PIXBOT_BENCH_SERVE")
    return override.split() if override else pixbot_cli()


async def _serve(config_path: Path) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        *_server_command(), "serve", "--config", str(config_path), cwd=config_path.parent,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert process.stderr is not None
    deadline = time.monotonic() + _START_S
    while time.monotonic() < deadline:
        line = (await asyncio.wait_for(process.stderr.readline(), _START_S)).decode()
        if "listening on" in line:
            asyncio.get_running_loop().create_task(_drain(process.stderr))
            return process, line.rsplit("listening on ", 1)[1].split()[0].removesuffix("/v1")
        if not line:
            break
    process.kill()
    raise BenchError("pixbot serve did not start")


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def _measure(latency_ms: int, root: Path) -> tuple[float, float]:
    with FakeServer(latency_ms=latency_ms) as fake:
        config = pixbot_config(fake.api_base(), root / "data")
        config["bots"] = {"api": {"enabled": True, "host": "127.0.0.1", "port": 0}}
        config["limits"]["concurrency"] = 64
        config_path = root / "config.json"
        config_path.write_text(json.dumps(config))
        direct = await _drive(f"{fake.api_base()}/images/generations", {"Authorization": "Bearer x"},
                              lambda i: {"model": MODEL, "prompt": PROMPT, "n": 1,
                                         "response_format": "b64_json", "size": "1024x1024"})
        process, base = await _serve(config_path)
        try:
            through = await _drive(f"{base}/v1/images/generations", {},
                                   lambda i: {"model": MODEL, "prompt": PROMPT, "n": 1, "user": f"u{i}"})
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 15)
    return through, direct


def run() -> list[Row]:
    rows: list[Row] = []
    table = []
    for latency in LATENCIES_MS:
        progress(f"api: {REQUESTS} requests, {IN_FLIGHT} in flight, provider latency {latency} ms")
        with scratch_dir("api") as tmp:
            through, direct = asyncio.run(_measure(latency, Path(tmp)))
        ratio = through / direct
        table.append([f"{latency} ms", f"{through:.1f}", f"{direct:.1f}", f"{ratio:.2f}"])
        rows.append(Row("api", f"images/s, provider latency {latency} ms, {IN_FLIGHT} in flight", "images/s",
                        pixbot=through, nanobot=direct, goal=f"pixbot ≥ {GOAL_RATIO} × direct",
                        met=ratio >= GOAL_RATIO, note="'nanobot' column = straight to the fake provider"))
    print("\n### api — images/s through pixbot serve vs straight to the provider\n")
    print(markdown_table(["provider latency", "pixbot serve (img/s)", "direct (img/s)", "ratio"], table))
    return rows


BENCHMARK = Benchmark("api", "HTTP API throughput vs the provider alone", run)

if __name__ == "__main__":
    sys.exit(0 if all(row.met for row in run()) else 1)
