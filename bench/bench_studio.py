"""Benchmark ``studio``: the web studio's page weight, its gallery at 10,000 images, and how soon an image shows.

Everything runs in this process on 127.0.0.1: pixbot's real service and ``bots.web.server.make_server``
(studio pages and the ``/v1`` API in one aiohttp app) over the loopback fake provider
(``tests/fakes/fake_provider.py``), driven by httpx and by Debian's Chromium through Playwright.

1. First load: a signed-in studio thread page (four images) and the gallery, each in a fresh browser
   context (cold cache; the session cookie is set beforehand with ``?token=``), every request and its
   transferred body bytes recorded. Goal: under 300 KB, and no request to any host but the studio's origin.
   The images on those pages are the fake's 1024×1024 gradient PNGs (16 KB each; a thread shows originals,
   the gallery thumbnails); the table splits the app's own files from the images.
2. The gallery over 10,000 stored images (rows written straight through the state store; the files need not
   exist, so only the HTML page is timed): ``GET /gallery`` and ``GET /gallery?q=<word>`` over loopback,
   median and p95 of 20 after a warm-up. Goal: under 100 ms.
3. From the provider's answer to the image showing in the page: a prompt typed into a fresh thread page and
   Generate pressed, against the fake answering with a ~1 MB PNG. The clock starts when the fake has handed
   its answer's last byte to the socket (a wrapper around its response's ``write_eof``, in this process) and
   stops when ``page.wait_for_function`` sees the ``img`` with the prompt as alt ``complete`` with a
   ``naturalWidth`` (polled every animation frame, so at the frame that paints it; the time includes
   Playwright's report back to Python, a few ms); the page's Resource Timing splits it into stages. The
   baseline, run alternately in the same server: the same job through ``POST /v1/images/generations``
   (``b64_json``), from the fake's answer to the client holding the decoded bytes. Goal (ours): under
   100 ms, the limit for feeling instant; the ratio studio ÷ API is reported.
   In the summary the "nanobot" column is that API baseline.

Without Chromium (or Playwright) measurements 1 and 3 give a row with a note and 2 still runs.

This module runs the parts and builds the rows; the measurements live in ``bench/studio_browser.py``
(1 and 3, in Chromium) and ``bench/studio_gallery.py`` (2), the server, sign-in and Chromium lookup in
``bench/web_common.py``.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from bench.common import Benchmark, Row, fmt, markdown_table, progress, scratch_dir
from bench.studio_browser import SHOW_RUNS, STAGES, TimedFake, first_load, seed, show
from bench.studio_gallery import GALLERY_ROWS, GALLERY_SAMPLES, gallery
from bench.web_common import browser, chromium, serve

__all__ = ["BENCHMARK", "run"]

FIRST_LOAD_GOAL_KB = 300.0
GALLERY_GOAL_MS = 100.0
SHOW_GOAL_MS = 100.0


# --- 1. first load: rows ---------------------------------------------------------------------------


def _load_rows(loads: list[dict[str, Any]]) -> tuple[list[Row], list[list[object]]]:
    rows: list[Row] = []
    table: list[list[object]] = []
    for load in loads:
        requests = load["requests"]
        total_kb = sum(r["bytes"] for r in requests) / 1024
        others = [r["url"] for r in requests if r["other_host"]]
        by_kind: dict[str, list[int]] = {}
        for r in requests:
            by_kind.setdefault(r["kind"], []).append(r["bytes"])
        for kind, sizes in sorted(by_kind.items()):
            table.append([load["label"], kind, len(sizes), sum(sizes) / 1024])
        table.append([load["label"], "**total**", len(requests), total_kb])
        streams = sum(r["kind"] == "event stream" for r in requests)
        unfinished = sum(not r["finished"] and r["kind"] != "event stream" for r in requests)
        note = (f"{len(requests)} requests, {len(others)} to other hosts"
                + (f", {streams} event stream (open, ~0 bytes)" if streams else "")
                + (f"; {unfinished} never finished (not counted)" if unfinished else ""))
        rows.append(Row("studio", f"first load, {load['label']}: transferred", "KB", pixbot=total_kb,
                        goal=f"< {FIRST_LOAD_GOAL_KB:.0f} KB", met=total_kb < FIRST_LOAD_GOAL_KB, note=note,
                        extra={"requests": requests}))
        rows.append(Row("studio", f"first load, {load['label']}: requests", "requests", pixbot=float(len(requests)),
                        goal="0 to hosts other than the studio's", met=not others,
                        note=f"other hosts: {', '.join(others)}" if others else "all to the studio's 127.0.0.1 origin"))
    return rows, table


# --- the run ---------------------------------------------------------------------------------------


def _p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20, method="inclusive")[-1]


async def _timed_step(name: str, step: Awaitable[Any]) -> Any:
    started = time.perf_counter()
    result = await step
    progress(f"studio: {name} in {time.perf_counter() - started:.1f} s")
    return result


async def _measure(root: Path, executable: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with TimedFake() as fake:
        if executable is not None:
            async with serve(root / "studio", fake.api_base("custom")) as server, browser(executable) as chrome:
                thread = secrets.token_hex(6)
                await _timed_step("seeded 12 images", seed(server, thread))
                loads = []
                for label, path in (("thread page (4 images)", f"/t/{thread}"), ("gallery (12 images)", "/gallery")):
                    load = await _timed_step(f"first load of {path}", first_load(chrome, server.base, path))
                    loads.append({**load, "label": label})
                results["loads"] = loads
                results["show"] = await _timed_step(f"{SHOW_RUNS} + 1 prompts each way", show(chrome, server, fake))
        results["gallery"] = await _timed_step(f"gallery at {GALLERY_ROWS} images",
                                               gallery(root / "gallery", fake.api_base("custom")))
    return results


def run() -> list[Row]:
    executable = chromium()
    if executable is None:
        progress("studio: no chromium (or no playwright): first load and image-shown measurements skipped")
    with scratch_dir("studio") as tmp:
        results = asyncio.run(_measure(Path(tmp), executable))
    rows: list[Row] = []

    if "loads" in results:
        load_rows, table = _load_rows(results["loads"])
        rows += load_rows
        print("\n### studio — first load, cold cache, signed in (Chromium; images: the fake's 16 KB PNGs)\n")
        print(markdown_table(["page", "what", "requests", "KB"], table))
    else:
        rows.append(Row("studio", "first load (thread page, gallery)", "KB", goal=f"< {FIRST_LOAD_GOAL_KB:.0f} KB",
                        note="skipped: no chromium (apt-get install chromium) or no playwright"))

    filled, gets = results["gallery"]
    table = []
    for path, samples in gets.items():
        ms = [s * 1000 for s in samples]
        median_ms, p95_ms = statistics.median(ms), _p95(ms)
        table.append([path, median_ms, p95_ms, min(ms), max(ms)])
        case = "gallery first page" if path == "/gallery" else f"gallery search {path.partition('=')[2]!r}"
        for stat, value in (("median", median_ms), ("p95", p95_ms)):
            rows.append(Row("studio", f"{case}, {GALLERY_ROWS:,} images: {stat}", "ms", pixbot=value,
                            goal=f"< {GALLERY_GOAL_MS:.0f} ms", met=value < GALLERY_GOAL_MS,
                            note=f"GET over loopback, {GALLERY_SAMPLES} after a warm-up; HTML only",
                            extra={"samples_ms": ms}))
    print(f"\n### studio — gallery over {GALLERY_ROWS:,} stored images (filled in {filled:.1f} s), "
          f"{GALLERY_SAMPLES} requests each\n")
    print(markdown_table(["GET", "median ms", "p95 ms", "min ms", "max ms"], table))

    if "show" in results:
        shown = results["show"]
        studio, api = (statistics.median(shown[k]) * 1000 for k in ("studio", "api"))
        print(f"\n### studio — provider's answer → image usable, median of {SHOW_RUNS} (~1 MB PNG)\n")
        lines = [("studio: image shown (seen from Python)", "studio"),
                 ("studio: image shown (page clock)", "studio_in_page"),
                 *((f"  of which: {stage}", stage) for stage in STAGES if stage in shown),
                 ("API: b64_json bytes decoded in the client", "api")]
        print(markdown_table(["path", "median ms", "min ms", "max ms"], [
            [label, *(f(shown[key]) * 1000 for f in (statistics.median, min, max))] for label, key in lines]))
        print(f"\nstudio ÷ API: {fmt(studio / api)}")
        rows.append(Row("studio", "provider's answer → image shown: studio page vs API client", "ms",
                        pixbot=studio, nanobot=api, goal=f"studio < {SHOW_GOAL_MS:.0f} ms", met=studio < SHOW_GOAL_MS,
                        note="'nanobot' column = the same job through /v1 (b64_json); ratio = studio ÷ API",
                        extra={k: [s * 1000 for s in v] for k, v in shown.items()}))
    else:
        rows.append(Row("studio", "provider's answer → image shown: studio page vs API client", "ms",
                        goal=f"studio < {SHOW_GOAL_MS:.0f} ms",
                        note="skipped: no chromium (apt-get install chromium) or no playwright"))
    return rows


BENCHMARK = Benchmark("studio", "Web studio: page weight, 10,000-image gallery, answer → image shown", run)

if __name__ == "__main__":
    sys.exit(0 if all(row.met for row in run() if row.goal and row.met is not None) else 1)
