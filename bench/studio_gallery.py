"""The ``studio`` benchmark's gallery at 10,000 images (see ``bench/bench_studio.py``).

Rows are written straight through the state store (the files need not exist, so only the HTML page is
timed); ``GET /gallery`` and two searches are then timed over loopback with a signed-in httpx client.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.common import MODEL, BenchError
from bench.web_common import WORDS, serve, signed_in

__all__ = ["GALLERY_ROWS", "GALLERY_SAMPLES", "gallery"]

GALLERY_ROWS = 10_000
GALLERY_BATCH = 1_000
GALLERY_SAMPLES = 20
#: A word in about one prompt of 20 (a full first page from the newest rows), and one in a single old row
#: (the search has to look at every row).
COMMON_WORD, RARE_WORD = "lighthouse", "zeppelin"


async def _fill(service: Any) -> float:
    """GALLERY_ROWS image rows over four front-ends, oldest first; returns the seconds it took."""
    from core.models import Artifact

    started = time.perf_counter()
    first = datetime.now(UTC) - timedelta(days=120)
    platforms = ("telegram", "discord", "web", "api")
    for batch_start in range(0, GALLERY_ROWS, GALLERY_BATCH):
        by_chat: dict[str, list[Artifact]] = {}
        for n in range(batch_start, min(batch_start + GALLERY_BATCH, GALLERY_ROWS)):
            words = WORDS[n % len(WORDS)]
            if n % 20 == 7:
                words += f" by a {COMMON_WORD}"
            if n == 17:
                words += f" and a {RARE_WORD}"
            chat = f"{platforms[n % 4]}:{n % 40}"
            day = first + timedelta(minutes=17 * n)
            artifact_id = f"img_{n:012x}"
            by_chat.setdefault(chat, []).append(Artifact(
                id=artifact_id, path=f"{day:%Y-%m-%d}/{artifact_id}.png", mime="image/png",
                prompt=f"{words}, picture {n}", model=MODEL, provider=("custom", "openai", "gemini")[n % 3],
                source_images=(), created_at=day.isoformat(timespec="seconds"), width=1024, height=1024,
                bytes=1_500_000))
        for chat, artifacts in by_chat.items():
            await service.state.record_artifacts(chat, artifacts)
    return time.perf_counter() - started


async def _time_get(client: httpx.AsyncClient, path: str, expect: Callable[[str], bool]) -> list[float]:
    samples = []
    for index in range(GALLERY_SAMPLES + 1):
        started = time.perf_counter()
        response = await client.get(path)
        elapsed = time.perf_counter() - started
        if response.status_code != 200 or not expect(response.text):
            raise BenchError(f"GET {path} answered {response.status_code}: {response.text[:300]}")
        if index:  # the first is a warm-up
            samples.append(elapsed)
    return samples


async def gallery(root: Path, api_base: str) -> tuple[float, dict[str, list[float]]]:
    """Seconds the fill took, and seconds per GET by path (first page, a common word, a rare word)."""
    async with serve(root, api_base) as server:
        filled = await _fill(server.service)
        client, _ = await signed_in(server.base)
        cases = {
            "/gallery": lambda text: text.count("/thumb\"") == 48,
            f"/gallery?q={COMMON_WORD}": lambda text: text.count("/thumb\"") == 48,
            f"/gallery?q={RARE_WORD}": lambda text: text.count("/thumb\"") == 1,
        }
        try:
            return filled, {path: await _time_get(client, path, expect) for path, expect in cases.items()}
        finally:
            await client.aclose()
