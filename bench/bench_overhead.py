"""Benchmark ``overhead``: client-side milliseconds per image when the provider answers at once.

With zero provider latency, what is left is each client's own work: HTTP and JSON, base64 decoding,
checking the image (pixbot decodes it fully with Pillow), writing it durably (pixbot fsyncs image,
sidecar and folder) and bookkeeping (pixbot's SQLite job ledger and chat state). Measured for
images requested one at a time and in count=8 jobs, with a small (1024² gradient, ~17 KB) and a
provider-sized (~2 MB) PNG. Goal: pixbot ≤ 0.5 × nanobot per image.

``python -m bench.bench_overhead --stages [--image-bytes N]`` prints where pixbot's time goes instead.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bench.common import (
    Benchmark,
    FakeServer,
    Row,
    markdown_table,
    median,
    nanobot_generate,
    nanobot_tool,
    pixbot_generate,
    pixbot_service,
    progress,
    scratch_dir,
    timed,
)
from bench.stages import TIME_STEPS, TimeProbe, instrument

__all__ = ["BENCHMARK", "run", "stages"]

#: (label, --image-bytes for the fake): None is the fake's default 1024×1024 gradient PNG.
PAYLOADS: tuple[tuple[str, int | None], ...] = (("17 KB PNG (1024² gradient)", None), ("2 MB PNG (noise)", 2_000_000))
ONE_AT_A_TIME = 20
BATCH_JOBS, BATCH_COUNT = 3, 8
ROUNDS = 5
WARM_UP = 2
GOAL_FACTOR = 0.5


async def _measure(fake: FakeServer, root: Path) -> dict[str, list[float]]:
    """ms per image, per (system, mode), one sample per round; rounds interleave the two systems."""
    api_base = fake.api_base()
    samples: dict[str, list[float]] = {}
    async with pixbot_service(api_base, root / "pixbot") as service:
        tool = nanobot_tool(api_base, root / "nanobot")
        runners = {
            "pixbot": lambda count: pixbot_generate(service, count),
            "nanobot": lambda count: nanobot_generate(tool, count),
        }
        for generate in runners.values():
            for _ in range(WARM_UP):
                await generate(1)
            await generate(BATCH_COUNT)
        for _ in range(ROUNDS):
            for system, generate in runners.items():
                wall = 0.0
                for _ in range(ONE_AT_A_TIME):
                    wall += await timed(generate(1))
                samples.setdefault(f"{system} one", []).append(wall / ONE_AT_A_TIME * 1000)
                wall = 0.0
                for _ in range(BATCH_JOBS):
                    wall += await timed(generate(BATCH_COUNT))
                samples.setdefault(f"{system} batch", []).append(wall / (BATCH_JOBS * BATCH_COUNT) * 1000)
    return samples


def run() -> list[Row]:
    rows: list[Row] = []
    table: list[list[object]] = []
    for label, image_bytes in PAYLOADS:
        progress(f"overhead: {label}")
        with scratch_dir("overhead") as tmp, FakeServer(image_bytes=image_bytes) as fake:
            samples = asyncio.run(_measure(fake, Path(tmp)))
        for mode, case in (("one", f"{ONE_AT_A_TIME} images one at a time"),
                           ("batch", f"{BATCH_JOBS} jobs of count={BATCH_COUNT}")):
            pixbot, nanobot = median(samples[f"pixbot {mode}"]), median(samples[f"nanobot {mode}"])
            table.append([label, case, pixbot, nanobot, pixbot / nanobot])
            rows.append(Row("overhead", f"{case}, {label}", "ms/image", pixbot, nanobot,
                            goal=f"pixbot ≤ {GOAL_FACTOR} × nanobot", met=pixbot <= GOAL_FACTOR * nanobot,
                            extra={"pixbot_samples": samples[f"pixbot {mode}"],
                                   "nanobot_samples": samples[f"nanobot {mode}"]}))
    print(f"\n### overhead — ms per image, zero provider latency (median of {ROUNDS} rounds)\n")
    print(markdown_table(["payload", "mode", "pixbot (ms)", "nanobot (ms)", "pixbot ÷ nanobot"], table))
    return rows


async def _staged(fake: FakeServer, root: Path, images: int) -> tuple[TimeProbe, list[str], float]:
    probe = TimeProbe()
    async with pixbot_service(fake.api_base(), root) as service:
        for _ in range(WARM_UP):
            await pixbot_generate(service, 1)
        with instrument(TIME_STEPS, probe) as missing:
            wall = 0.0
            for _ in range(images):
                wall += await timed(pixbot_generate(service, 1))
    return probe, missing, wall


def stages(image_bytes: int | None = None, images: int = 40) -> None:
    """Print where pixbot's time goes, per pipeline step, for ``images`` images one at a time."""
    with scratch_dir("stages") as tmp, FakeServer(image_bytes=image_bytes) as fake:
        probe, missing, wall = asyncio.run(_staged(fake, Path(tmp), images))
    size = f"~{image_bytes / 1e6:g} MB" if image_bytes else "17 KB"
    print(f"\npixbot, {images} images one at a time, {size} PNG: {wall / images * 1000:.1f} ms/image "
          "(· marks a step inside the one above; one image at a time, so no steps overlap)\n")
    print(markdown_table(["step", "ms/image", "calls/image"],
                         [[label, probe.seconds[label] / images * 1000, probe.calls[label] / images]
                          for label, *_ in TIME_STEPS if label in probe.calls]))
    if missing:
        print(f"\nsteps not found (renamed?): {', '.join(missing)}")


def _main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_overhead")
    parser.add_argument("--stages", action="store_true", help="break pixbot's time down by pipeline step")
    parser.add_argument("--image-bytes", type=int, default=None, help="fake image size (default: 17 KB PNG)")
    parser.add_argument("--images", type=int, default=40)
    args = parser.parse_args()
    if args.stages:
        stages(args.image_bytes, args.images)
    else:
        run()


BENCHMARK = Benchmark("overhead", "client ms per image at zero provider latency", run)

if __name__ == "__main__":
    _main()
