"""Benchmark ``count``: wall time for 1, 4 and 8 images per request with 500 ms provider latency.

pixbot requests a job's images concurrently, so 8 images should cost about one provider round trip;
nanobot's ``generate_image`` asks for them one after another (about N round trips). Measured three
ways against one fake: ``ImageService.submit`` in-process, the real ``pixbot generate -n N`` command
(a fresh process each time, start-up included), and nanobot's tool in-process. Goal:
pixbot wall(8) ≤ 1.3 × wall(1).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from bench.common import (
    PROMPT,
    BenchError,
    Benchmark,
    FakeServer,
    Row,
    markdown_table,
    median,
    nanobot_generate,
    nanobot_tool,
    pixbot_cli,
    pixbot_config,
    pixbot_generate,
    pixbot_service,
    progress,
    scratch_dir,
    timed,
)

__all__ = ["BENCHMARK", "run"]

LATENCY_MS = 500
COUNTS = (1, 4, 8)
CLI_COUNTS = (1, 4)
REPEATS = 3
GOAL_RATIO = 1.3
_CLI_TIMEOUT_S = 120


async def _cli_generate(config_path: Path, count: int) -> float:
    """One ``pixbot generate -n N --json`` process, from spawn to exit; checks it stored N images."""
    argv = [*pixbot_cli(), "generate", "--config", str(config_path), "-n", str(count), "--json", PROMPT]
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=config_path.parent, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), _CLI_TIMEOUT_S)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise BenchError(f"pixbot generate exited {process.returncode}: {err.decode()[-500:]}")
    stored = len(json.loads(out)["artifacts"])
    if stored != count:
        raise BenchError(f"pixbot generate stored {stored}/{count} images")
    return wall


async def _measure(fake: FakeServer, root: Path) -> dict[str, dict[int, list[float]]]:
    api_base = fake.api_base()
    config_path = root / "cli" / "config.json"
    config_path.parent.mkdir(parents=True)
    config_path.write_text(json.dumps(pixbot_config(api_base, config_path.parent / "data")))
    walls: dict[str, dict[int, list[float]]] = {"pixbot": {}, "cli": {}, "nanobot": {}}
    async with pixbot_service(api_base, root / "pixbot") as service:
        tool = nanobot_tool(api_base, root / "nanobot")
        # Warm-up: connections, lazy imports, the SQLite file, the CLI's first byte-compilation.
        await pixbot_generate(service, 1)
        await nanobot_generate(tool, 1)
        await _cli_generate(config_path, 1)
        for repeat in range(REPEATS):
            progress(f"count: round {repeat + 1}/{REPEATS}")
            for count in COUNTS:  # interleaved, so drift on the machine hits every column alike
                walls["pixbot"].setdefault(count, []).append(await timed(pixbot_generate(service, count)))
                walls["nanobot"].setdefault(count, []).append(await timed(nanobot_generate(tool, count)))
                if count in CLI_COUNTS:
                    walls["cli"].setdefault(count, []).append(await _cli_generate(config_path, count))
    return walls


def run() -> list[Row]:
    with scratch_dir("count") as tmp, FakeServer(latency_ms=LATENCY_MS) as fake:
        walls = asyncio.run(_measure(fake, Path(tmp)))
    wall = {system: {n: median(samples) for n, samples in by_count.items()} for system, by_count in walls.items()}

    def ratio(system: str, count: int) -> float:
        return wall[system][count] / wall[system][1]

    print(f"\n### count — wall time per request, provider latency {LATENCY_MS} ms (median of {REPEATS})\n")
    print(markdown_table(
        ["count", "pixbot submit (s)", "÷ wall(1)", "pixbot CLI (s)", "÷ wall(1)", "nanobot (s)", "÷ wall(1)",
         "nanobot ÷ pixbot"],
        [[n, wall["pixbot"][n], ratio("pixbot", n),
          wall["cli"].get(n), ratio("cli", n) if n in wall["cli"] else None,
          wall["nanobot"][n], ratio("nanobot", n), wall["nanobot"][n] / wall["pixbot"][n]] for n in COUNTS]))

    rows = [
        Row("count", f"wall, count={n}", "s", wall["pixbot"][n], wall["nanobot"][n],
            extra={"pixbot_samples": walls["pixbot"][n], "nanobot_samples": walls["nanobot"][n]})
        for n in COUNTS
    ]
    top = COUNTS[-1]
    rows.append(Row("count", f"wall({top}) ÷ wall(1)", "×", ratio("pixbot", top), ratio("nanobot", top),
                    goal=f"pixbot ≤ {GOAL_RATIO}", met=ratio("pixbot", top) <= GOAL_RATIO))
    rows += [
        Row("count", f"CLI `pixbot generate -n {n}` wall", "s", wall["cli"][n], None,
            note="fresh process: start-up included", extra={"samples": walls["cli"][n]})
        for n in CLI_COUNTS
    ]
    last = CLI_COUNTS[-1]
    rows.append(Row("count", f"CLI wall({last}) ÷ wall(1)", "×", ratio("cli", last), None))
    return rows


BENCHMARK = Benchmark("count", f"count 1/4/8 at {LATENCY_MS} ms latency", run)
