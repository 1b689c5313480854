"""Benchmark ``rss``: peak resident memory while receiving one large PNG, pixbot versus nanobot.

Each measurement is a fresh worker process (``python -m bench.bench_rss --worker ...``). The worker
imports everything and generates one tiny image from a second fake (warm-up: connections, lazy
imports, Pillow plugins, SQLite, the thread pool), resets the kernel's peak-RSS mark
(``/proc/self/clear_refs`` ← 5), takes its RSS as the baseline, generates one large image, and
reports the peak (``VmHWM``) minus the baseline. The fakes run as separate processes, so their
memory never counts. Goal: pixbot's peak over baseline ≤ 3 × the image's bytes (the issue measured
nanobot at 8.6× for 12 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    BenchError,
    Benchmark,
    FakeServer,
    Row,
    markdown_table,
    nanobot_generate,
    nanobot_tool,
    pixbot_generate,
    pixbot_service,
    progress,
    scratch_dir,
)
from bench.stages import MEMORY_STEPS, MemoryProbe, instrument, reset_peak, status_kb

__all__ = ["BENCHMARK", "measure_once", "run", "stages"]

SIZES = (4_000_000, 12_000_000, 30_000_000)
SYSTEMS = ("pixbot", "nanobot")
GOAL_FACTOR = 3.0
WARM_SIZE = "64x64"
_WORKER_TIMEOUT_S = 180
_MB = 1_000_000


def _mark_baseline() -> tuple[int, bool]:
    gc.collect()
    reset = reset_peak()
    # Without a reset the peak so far (warm-up included) is the only honest baseline.
    return (status_kb("VmRSS") if reset else status_kb("VmHWM")) * 1024, reset


async def measure_once(system: str, warm_base: str, api_base: str, data_dir: Path) -> dict[str, Any]:
    """In this process: warm up on ``warm_base``, then one image from ``api_base``; bytes and RSS."""
    if system == "pixbot":
        async with pixbot_service(warm_base, data_dir) as service:
            await pixbot_generate(service, 1, size=WARM_SIZE)
            await pixbot_generate(service, 1, size=WARM_SIZE)
        async with pixbot_service(api_base, data_dir) as service:
            baseline, reset = _mark_baseline()
            image_bytes = (await pixbot_generate(service, 1))[0]
            peak = status_kb("VmHWM") * 1024
    elif system == "nanobot":
        warm = nanobot_tool(warm_base, data_dir)
        await nanobot_generate(warm, 1, size=WARM_SIZE)
        await nanobot_generate(warm, 1, size=WARM_SIZE)
        tool = nanobot_tool(api_base, data_dir)
        baseline, reset = _mark_baseline()
        path = (await nanobot_generate(tool, 1))[0]
        peak = status_kb("VmHWM") * 1024
        image_bytes = await asyncio.to_thread(os.path.getsize, path)
    else:
        raise BenchError(f"unknown system {system!r}")
    return {"system": system, "image_bytes": image_bytes, "baseline_bytes": baseline, "peak_bytes": peak,
            "over_baseline_bytes": peak - baseline, "peak_reset": reset,
            "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def _spawn_worker(system: str, warm_base: str, api_base: str, data_dir: Path) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.bench_rss", "--worker", system, warm_base, api_base, str(data_dir)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=_WORKER_TIMEOUT_S, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise BenchError(f"rss worker {system} exited {done.returncode}: {done.stderr[-1500:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run() -> list[Row]:
    results: dict[tuple[int, str], dict[str, Any]] = {}
    with scratch_dir("rss") as tmp, FakeServer() as warm:
        for size in SIZES:
            with FakeServer(image_bytes=size) as fake:
                for system in SYSTEMS:
                    progress(f"rss: {size / _MB:g} MB, {system} (fresh process)")
                    data_dir = Path(tmp) / f"{system}-{size}"
                    results[size, system] = _spawn_worker(system, warm.api_base(), fake.api_base(), data_dir)

    def multiple(size: int, system: str) -> float:
        r = results[size, system]
        return float(r["over_baseline_bytes"] / r["image_bytes"])

    table: list[list[object]] = []
    rows: list[Row] = []
    for size in SIZES:
        for system in SYSTEMS:
            r = results[size, system]
            table.append([f"{size / _MB:g} MB", system, r["image_bytes"] / _MB, r["baseline_bytes"] / _MB,
                          r["peak_bytes"] / _MB, r["over_baseline_bytes"] / _MB, multiple(size, system)])
        pixbot, nanobot = results[size, "pixbot"], results[size, "nanobot"]
        rows.append(Row(
            "rss", f"peak RSS over baseline ÷ image bytes, {size / _MB:g} MB PNG", "×",
            multiple(size, "pixbot"), multiple(size, "nanobot"), goal=f"pixbot ≤ {GOAL_FACTOR:g}",
            met=multiple(size, "pixbot") <= GOAL_FACTOR,
            note=f"+{pixbot['over_baseline_bytes'] / _MB:.0f} MB vs +{nanobot['over_baseline_bytes'] / _MB:.0f} MB",
            extra={"pixbot": pixbot, "nanobot": nanobot}))
    exact = all(r["peak_reset"] for r in results.values())
    print("\n### rss — peak RSS for one image, each in a fresh process (MB = 10⁶ bytes)\n")
    print(markdown_table(["answer", "system", "image (MB)", "baseline (MB)", "peak (MB)", "peak − baseline (MB)",
                          "÷ image bytes"], table))
    if not exact:
        print("\n(the kernel refused to reset VmHWM: baselines are the warm-up peaks, so deltas are low)")
    return rows


async def _staged(warm_base: str, api_base: str, data_dir: Path) -> tuple[MemoryProbe, list[str], int]:
    probe = MemoryProbe()
    async with pixbot_service(warm_base, data_dir) as service:
        await pixbot_generate(service, 1, size=WARM_SIZE)
        await pixbot_generate(service, 1, size=WARM_SIZE)
    async with pixbot_service(api_base, data_dir) as service:
        probe.baseline, _ = _mark_baseline()
        with instrument(MEMORY_STEPS, probe) as missing:
            image_bytes = (await pixbot_generate(service, 1))[0]
    return probe, missing, image_bytes


def stages(size: int) -> None:
    """Print, per pipeline step of one pixbot generation, RSS over the baseline (this process)."""
    with scratch_dir("rss-stages") as tmp, FakeServer() as warm, FakeServer(image_bytes=size) as fake:
        probe, missing, image_bytes = asyncio.run(_staged(warm.api_base(), fake.api_base(), Path(tmp)))
    print(f"\npixbot, one {image_bytes / _MB:.1f} MB PNG: MB over the warmed-up baseline "
          f"(÷ image bytes in brackets)\n")
    print(markdown_table(
        ["step", "RSS on entry", "peak inside", "RSS on exit"],
        [[label, *(f"{v / _MB:.1f} ({v / image_bytes:.1f}×)" for v in values)]
         for label, values in probe.rows.items()]))
    if missing:
        print(f"\nsteps not found (renamed?): {', '.join(missing)}")


def _main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_rss")
    parser.add_argument("--worker", nargs=4, metavar=("SYSTEM", "WARM_BASE", "API_BASE", "DATA_DIR"),
                        help="internal: measure one generation in this process and print JSON")
    parser.add_argument("--stages", type=int, metavar="IMAGE_BYTES",
                        help="break pixbot's peak down by pipeline step for one image of about this size")
    args = parser.parse_args()
    if args.stages:
        stages(args.stages)
    elif args.worker:
        system, warm_base, api_base, data_dir = args.worker
        print(json.dumps(asyncio.run(measure_once(system, warm_base, api_base, Path(data_dir)))))
    else:
        run()


BENCHMARK = Benchmark("rss", "peak RSS for 4/12/30 MB PNG answers", run)

if __name__ == "__main__":
    _main()
