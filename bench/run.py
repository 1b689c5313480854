"""Run pixbot's benchmarks: ``python bench/run.py [name ...]``; prints tables, writes bench/results/latest.json.

To add a benchmark: write ``bench/bench_<name>.py`` with ``run() -> list[Row]`` (print a detailed table,
return comparison rows) and ``BENCHMARK = Benchmark(name, title, run)``, then add it to ``_MODULES``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/run.py` puts bench/, not the repository, on sys.path
    sys.path.insert(0, str(REPO))

from bench.common import Benchmark, Row, fmt, machine, markdown_table, progress  # noqa: E402

__all__ = ["BENCHMARKS", "main", "summary_table"]

#: The registry, in run order: one module per benchmark, each exposing ``BENCHMARK``.
_MODULES = ("bench.bench_count", "bench.bench_overhead", "bench.bench_rss", "bench.bench_api",
            "bench.bench_telegram", "bench.bench_studio", "bench.bench_scale")
BENCHMARKS: dict[str, Benchmark] = {
    bench.name: bench for bench in (importlib.import_module(m).BENCHMARK for m in _MODULES)
}
RESULTS = REPO / "bench" / "results" / "latest.json"


def summary_table(rows: list[Row]) -> str:
    """One markdown table of every benchmark's comparison rows."""
    return markdown_table(
        ["benchmark", "case", "unit", "pixbot", "nanobot", "pixbot ÷ nanobot", "goal", "met", "note"],
        [[r.benchmark, r.case, r.unit, r.pixbot, r.nanobot, r.ratio, r.goal or None,
          r.met if r.goal else None, r.note or None] for r in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default all: "
                                                                  f"{', '.join(BENCHMARKS)})")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    args = parser.parse_args(argv)
    if args.list:
        for bench in BENCHMARKS.values():
            print(f"{bench.name:12} {bench.title}")
        return 0
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")

    selected = [BENCHMARKS[name] for name in (args.names or BENCHMARKS)]
    info = machine()
    rows: list[Row] = []
    durations: dict[str, float] = {}
    load: dict[str, list[float]] = {}
    for bench in selected:
        load_before = os.getloadavg()[0]
        if load_before > info["nproc"] / 2:
            progress(f"warning: load average {load_before:.1f} on {info['nproc']} CPUs; expect noisy numbers")
        progress(f"{bench.name}: {bench.title}")
        started = time.perf_counter()
        rows += bench.run()
        durations[bench.name] = round(time.perf_counter() - started, 1)
        load[bench.name] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        progress(f"{bench.name}: done in {durations[bench.name]} s")

    print("\n## Summary\n")
    print(summary_table(rows))
    print(f"\nmachine: {info['nproc']} CPUs ({info['cpu_model']}), Python {info['python']}, {info['os']}; "
          f"benchmark time: {fmt(sum(durations.values()))} s; 1-min load average before/after each: "
          + ", ".join(f"{name} {before:g}/{after:g}" for name, (before, after) in load.items()))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info,
        "durations_s": durations,
        "load_average_1min": load,
        "rows": [row.to_dict() for row in rows],
    }, indent=2, ensure_ascii=False) + "\n")
    progress(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
