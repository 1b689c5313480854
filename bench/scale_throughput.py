"""The ``scale`` benchmark's part 1 (see ``bench/bench_scale.py``): images/s across API replicas.

1, 2 and 4 ``pixbot serve`` replicas on one PostgreSQL database against the fake provider (its own process),
driven round-robin by one httpx client; with a per-process limit only, then with a shared global limit too.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import MODEL, PROMPT, BenchError, FakeServer, progress
from bench.scale_fleet import api_config, database, open_fleet

__all__ = ["GLOBAL", "IN_FLIGHT", "LATENCY_MS", "PER_PROCESS", "REPLICAS", "REQUESTS", "throughput"]

REPLICAS = (1, 2, 4)
LATENCY_MS = 500
IN_FLIGHT = 64
REQUESTS = 150
PER_PROCESS = 8
GLOBAL = 8


def _has_global_limit() -> bool:
    from core.config import LimitsConfig

    return "global_concurrency" in LimitsConfig.model_fields


async def _drive(urls: list[str]) -> float:
    """REQUESTS requests, IN_FLIGHT at a time, request i to replica i mod N; images per second."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(REQUESTS):
        queue.put_nowait(index)
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def one(url: str, index: int) -> None:
            response = await client.post(f"{url}/v1/images/generations",
                                         json={"model": MODEL, "prompt": PROMPT, "n": 1, "user": f"u{index}"})
            if response.status_code != 200 or not response.json()["data"][0].get("b64_json"):
                raise BenchError(f"{url} answered {response.status_code}: {response.text[:300]}")

        async def worker() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                await one(urls[index % len(urls)], index)

        await asyncio.gather(*(one(url, -1 - i) for i, url in enumerate(urls)))  # warm-up, one per replica
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        return REQUESTS / (time.perf_counter() - started)


async def _throughput_variant(pg: Any, api_base: str, root: Path, shared: bool) -> dict[int, float]:
    """One variant: the most replicas started once; 1, 2, then 4 of them driven (the rest stay idle)."""
    rates: dict[int, float] = {}
    async with database(pg) as url, open_fleet(root) as fleet:
        config = api_config(api_base, root / "data", url)
        config["limits"]["concurrency"] = PER_PROCESS
        if shared:
            config["limits"]["globalConcurrency"] = GLOBAL
        first = await fleet.start("r1", config, "serve", "--port", "0")
        urls = [await first.api_url()]  # the first migrates and records the data dir's identity alone
        others = [await fleet.start(f"r{i}", config, "serve", "--port", "0") for i in range(2, max(REPLICAS) + 1)]
        urls += await asyncio.gather(*(proc.api_url() for proc in others))
        for count in REPLICAS:
            rates[count] = await _drive(urls[:count])
            progress(f"scale: {count} replica(s), {'global limit' if shared else 'per-process limit'}: "
                     f"{rates[count]:.1f} images/s")
    return rates


async def throughput(pg: Any, root: Path) -> dict[str, dict[int, float]]:
    """Images/s by replica count, per variant ("per-process", and "global" where pixbot has the limit)."""
    variants = {"per-process": False}
    if _has_global_limit():
        variants["global"] = True
    results: dict[str, dict[int, float]] = {}
    with FakeServer(latency_ms=LATENCY_MS) as fake:
        for name, shared in variants.items():
            results[name] = await _throughput_variant(pg, fake.api_base(), root / name, shared)
    return results
