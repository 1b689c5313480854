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
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import secrets
import shutil
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from aiohttp import web

from bench.common import (
    MODEL,
    PROMPT,
    BenchError,
    Benchmark,
    Row,
    fmt,
    markdown_table,
    pixbot_config,
    progress,
    scratch_dir,
)
from tests.fakes.fake_provider import FakeProvider

__all__ = ["BENCHMARK", "run"]

TOKEN = "bench-studio-" + secrets.token_hex(16)
VIEWPORT = {"width": 1280, "height": 900}
FIRST_LOAD_GOAL_KB = 300.0
#: Let late requests (lazy images, the event stream) start after ``load`` before counting.
SETTLE_S = 0.5
#: Then wait at most this long for every request but the event stream to finish.
FINISH_S = 15.0
GALLERY_ROWS = 10_000
GALLERY_BATCH = 1_000
GALLERY_SAMPLES = 20
GALLERY_GOAL_MS = 100.0
#: A word in about one prompt of 20 (a full first page from the newest rows), and one in a single old row
#: (the search has to look at every row).
COMMON_WORD, RARE_WORD = "lighthouse", "zeppelin"
SHOW_RUNS = 10
SHOW_GOAL_MS = 100.0
#: About what a 1024×1024 PNG from a real provider weighs (the fake's noise PNG: it does not compress).
IMAGE_BYTES = 1_000_000
_TIMEOUT_S = 30.0
_CSRF = re.compile(r'data-csrf="([0-9a-f]+)"')
_WORDS = ("a fox in snow", "a red bicycle", "a castle at night", "a bowl of ramen", "an old map",
          "a glass teapot", "a desert road", "a paper boat", "a city in rain", "a cat asleep",
          "a mountain lake", "a neon sign", "a winter forest", "a sailing ship", "a clockwork bird",
          "a koi pond", "a jazz club", "a robot gardener", "a tea house")
_RESOURCES_JS = """() => performance.getEntriesByType("resource").map((e) => (
  {name: e.name, start: performance.timeOrigin + e.startTime, end: performance.timeOrigin + e.responseEnd}))"""
_SHOWN_JS = """(alt) => {
  for (const img of document.querySelectorAll("img"))
    if (img.alt === alt && img.complete && img.naturalWidth > 0) return Date.now();
  return 0;
}"""


class _TimedFake(FakeProvider):
    """The loopback fake, noting when each image answer's last byte went to the socket."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: (time.perf_counter(), time.time()) per answered ``images/generations`` request.
        self.answered: list[tuple[float, float]] = []

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response = await super()._middleware(request, handler)
        if request.path.endswith("/images/generations") and isinstance(response, web.Response) \
                and response.status == 200:
            send = response.write_eof

            async def write_eof(data: bytes = b"") -> None:
                await send(data)
                self.answered.append((time.perf_counter(), time.time()))

            response.write_eof = write_eof  # type: ignore[method-assign]
        return response

    async def answer_after(self, count: int) -> tuple[float, float]:
        """The one answer given after the first ``count`` (waits for its write to finish)."""
        for _ in range(int(_TIMEOUT_S * 1000)):
            if len(self.answered) > count:
                if len(self.answered) != count + 1:
                    raise BenchError(f"expected one provider answer, got {len(self.answered) - count}")
                return self.answered[count]
            await asyncio.sleep(0.001)
        raise BenchError("the fake provider never answered")


# --- the server ------------------------------------------------------------------------------------


@dataclass
class _Server:
    base: str
    service: Any


@asynccontextmanager
async def _serve(root: Path, api_base: str) -> AsyncIterator[_Server]:
    """pixbot's service and ``make_server`` (studio and API) on a free loopback port."""
    from bots.app import open_service
    from bots.web.server import make_server
    from core.config import AppConfig

    raw = pixbot_config(api_base, root / "data")
    raw["bots"] = {"api": {"enabled": True, "host": "127.0.0.1", "port": 0}, "web": {"token": TOKEN}}
    config = AppConfig(**raw)
    async with open_service(config) as service:
        runner = web.AppRunner(make_server(config, service, token=TOKEN), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            yield _Server(f"http://127.0.0.1:{runner.addresses[0][1]}", service)
        finally:
            await runner.cleanup()


async def _signed_in(base: str) -> tuple[httpx.AsyncClient, str]:
    """An httpx client holding the session cookie, and the pages' CSRF token."""
    client = httpx.AsyncClient(base_url=base, timeout=_TIMEOUT_S)
    signed = await client.get(f"/gallery?token={TOKEN}")
    page = await client.get("/gallery")
    match = _CSRF.search(page.text)
    if signed.status_code != 302 or page.status_code != 200 or not match:
        await client.aclose()
        raise BenchError(f"could not sign in to the studio: {signed.status_code} {page.status_code}")
    return client, match[1]


async def _wait_job(service: Any, job_id: str) -> Any:
    for _ in range(int(_TIMEOUT_S * 100)):
        record = await service.job(job_id)
        if record is not None and record.status in ("delivered", "failed"):
            if record.status != "delivered":
                raise BenchError(f"studio job {job_id} failed: {record.error}")
            return record
        await asyncio.sleep(0.01)
    raise BenchError(f"studio job {job_id} did not finish")


async def _seed(server: _Server, thread: str) -> None:
    """Four images on a studio thread and eight through the API: what the first-load pages show."""
    client, csrf = await _signed_in(server.base)
    try:
        asked = await client.post(f"/t/{thread}/ask", data={"prompt": PROMPT, "aspect_ratio": "auto", "count": "4",
                                                             "request_id": secrets.token_hex(8)},
                                  headers={"X-CSRF-Token": csrf, "Accept": "application/json"})
        if asked.status_code != 202:
            raise BenchError(f"the studio refused the seed prompt: {asked.status_code} {asked.text[:300]}")
        await _wait_job(server.service, asked.json()["job"])
        for index in range(2):
            made = await client.post("/v1/images/generations", json={
                "model": MODEL, "prompt": f"{_WORDS[index]}, through the API", "n": 4,
                "response_format": "b64_json", "user": "bench"})
            if made.status_code != 200:
                raise BenchError(f"the API refused the seed prompt: {made.status_code} {made.text[:300]}")
    finally:
        await client.aclose()


# --- 1. first load ---------------------------------------------------------------------------------


def _kind(url: str, resource_type: str) -> str:
    path = urlsplit(url).path
    if resource_type == "image" and path.startswith("/images/"):
        return "images (content)"
    if path.startswith("/static/") or resource_type in ("stylesheet", "script"):
        return "static (CSS, JS, icon)"
    if resource_type == "eventsource" or path.endswith("/events"):
        return "event stream"
    return resource_type if resource_type != "document" else "HTML"


async def _first_load(browser: Any, base: str, path: str) -> dict[str, Any]:
    """Every request of one page opened in a fresh context (signed in, empty cache), with its body bytes."""
    context = await browser.new_context(viewport=VIEWPORT)
    try:
        signed = await context.request.get(f"{base}/gallery?token={TOKEN}", max_redirects=0)
        if signed.status != 302:
            raise BenchError(f"could not sign in the browser: {signed.status}")
        page = await context.new_page()
        requests: list[Any] = []
        finished: set[int] = set()
        failed: set[int] = set()
        statuses: dict[str, int] = {}
        page.on("request", lambda request: requests.append(request))
        page.on("requestfinished", lambda request: finished.add(id(request)))
        page.on("requestfailed", lambda request: failed.add(id(request)))
        page.on("response", lambda response: statuses.__setitem__(response.url, response.status))
        answer = await page.goto(base + path, wait_until="load")
        if answer is None or answer.status != 200:
            raise BenchError(f"{path} answered {answer.status if answer else 'nothing'}")
        await page.wait_for_timeout(SETTLE_S * 1000)
        for _ in range(int(FINISH_S / 0.05)):
            if all(id(r) in finished | failed or r.resource_type == "eventsource" for r in requests):
                break
            await asyncio.sleep(0.05)
        origin = urlsplit(base)
        rows: list[dict[str, Any]] = []
        for request in requests:
            url = urlsplit(request.url)
            body = 0
            done = id(request) in finished
            if done:
                sizes = await request.sizes()
                body = max(0, sizes["responseBodySize"])
            rows.append({"url": request.url, "kind": _kind(request.url, request.resource_type), "bytes": body,
                         "status": statuses.get(request.url), "finished": done, "failed": id(request) in failed,
                         "other_host": (url.scheme, url.netloc) != (origin.scheme, origin.netloc)})
        return {"path": path, "requests": rows}
    finally:
        await context.close()


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


# --- 3. provider answer → image shown --------------------------------------------------------------


#: Where the studio's time goes, from the page's Resource Timing (page clock, against the fake's wall clock).
STAGES = ("answer → event at the page (job fragment fetch starts)", "job fragment fetch",
          "fragment in → image request starts", f"image fetch (~{IMAGE_BYTES / 1e6:g} MB)",
          "image fetched → seen complete (decode, frame)")


async def _studio_once(page: Any, base: str, fake: _TimedFake, prompt: str) -> dict[str, float]:
    """One prompt on a fresh thread page: seconds from the provider's answer to the image shown, seen from
    Python (``studio``) and by the page's clock (``studio_in_page``), and the stages between."""
    thread = secrets.token_hex(6)
    async with page.expect_response(lambda r: r.url.endswith(f"/t/{thread}/events")):  # the stream is open
        await page.goto(f"{base}/t/{thread}")
    await page.get_by_label("Prompt").fill(prompt)
    before = len(fake.answered)
    shown = asyncio.ensure_future(page.wait_for_function(_SHOWN_JS, arg=prompt, timeout=_TIMEOUT_S * 1000))
    await page.get_by_role("button", name="Generate").click()
    handle = await shown
    seen = time.perf_counter()
    shown_at = float(await handle.json_value()) / 1000
    answered, answered_wall = await fake.answer_after(before)
    result = {"studio": seen - answered, "studio_in_page": shown_at - answered_wall}
    entries = await page.evaluate(_RESOURCES_JS)
    image = next((e for e in entries if urlsplit(e["name"]).path.endswith("/file")), None)
    fragments = [e for e in entries if "/jobs/" in e["name"] and image and e["end"] <= image["start"]]
    if image and fragments:
        fragment = fragments[-1]
        marks = [answered_wall * 1000, fragment["start"], fragment["end"], image["start"], image["end"],
                 shown_at * 1000]
        result |= {stage: (marks[i + 1] - marks[i]) / 1000 for i, stage in enumerate(STAGES)}
    return result


async def _api_once(client: httpx.AsyncClient, fake: _TimedFake, prompt: str) -> float:
    """One ``b64_json`` request; seconds from the provider's answer to the client holding the image bytes."""
    before = len(fake.answered)
    response = await client.post("/v1/images/generations", json={
        "model": MODEL, "prompt": prompt, "n": 1, "response_format": "b64_json", "user": "bench-show"})
    if response.status_code != 200:
        raise BenchError(f"the API answered {response.status_code}: {response.text[:300]}")
    data = base64.b64decode(response.json()["data"][0]["b64_json"])
    got = time.perf_counter()
    if len(data) < IMAGE_BYTES // 2:
        raise BenchError(f"the API gave {len(data)} bytes, not the fake's image")
    answered, _ = await fake.answer_after(before)
    return got - answered


async def _show(browser: Any, server: _Server, fake: _TimedFake) -> dict[str, list[float]]:
    fake.image_bytes = IMAGE_BYTES
    await fake.warm()  # builds the noise image now, not during a timed run
    context = await browser.new_context(viewport=VIEWPORT)
    client = httpx.AsyncClient(base_url=server.base, timeout=_TIMEOUT_S)
    samples: dict[str, list[float]] = {"studio": [], "studio_in_page": [], "api": []}
    try:
        await context.request.get(f"{server.base}/gallery?token={TOKEN}", max_redirects=0)
        page = await context.new_page()
        for index in range(SHOW_RUNS + 1):  # the first of each is a warm-up
            prompt = f"{_WORDS[index % len(_WORDS)]}, run {index}"
            studio = await _studio_once(page, server.base, fake, prompt)
            api = await _api_once(client, fake, prompt)
            if index:
                for key, value in (*studio.items(), ("api", api)):
                    samples.setdefault(key, []).append(value)
        sizes = {str(r.json.get("size")) for r in fake.requests_of("/images/generations") if r.json}
        if len(sizes) > 1:
            progress(f"studio: note: the provider saw different sizes {sorted(sizes)}")
    finally:
        await client.aclose()
        await context.close()
        fake.image_bytes = None
    return samples


# --- 2. the gallery at 10,000 images ---------------------------------------------------------------


async def _fill(service: Any) -> float:
    """GALLERY_ROWS image rows over four front-ends, oldest first; returns the seconds it took."""
    from core.models import Artifact

    started = time.perf_counter()
    first = datetime.now(UTC) - timedelta(days=120)
    platforms = ("telegram", "discord", "web", "api")
    for batch_start in range(0, GALLERY_ROWS, GALLERY_BATCH):
        by_chat: dict[str, list[Artifact]] = {}
        for n in range(batch_start, min(batch_start + GALLERY_BATCH, GALLERY_ROWS)):
            words = _WORDS[n % len(_WORDS)]
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


async def _gallery(root: Path, api_base: str) -> tuple[float, dict[str, list[float]]]:
    async with _serve(root, api_base) as server:
        filled = await _fill(server.service)
        client, _ = await _signed_in(server.base)
        cases = {
            "/gallery": lambda text: text.count("/thumb\"") == 48,
            f"/gallery?q={COMMON_WORD}": lambda text: text.count("/thumb\"") == 48,
            f"/gallery?q={RARE_WORD}": lambda text: text.count("/thumb\"") == 1,
        }
        try:
            return filled, {path: await _time_get(client, path, expect) for path, expect in cases.items()}
        finally:
            await client.aclose()


# --- the run ---------------------------------------------------------------------------------------


def _chromium() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return None
    return os.environ.get("PIXBOT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20, method="inclusive")[-1]


@asynccontextmanager
async def _browser(executable: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable,
                                                   args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            await browser.close()


async def _timed_step(name: str, step: Awaitable[Any]) -> Any:
    started = time.perf_counter()
    result = await step
    progress(f"studio: {name} in {time.perf_counter() - started:.1f} s")
    return result


async def _measure(root: Path, chromium: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with _TimedFake() as fake:
        if chromium is not None:
            async with _serve(root / "studio", fake.api_base("custom")) as server, _browser(chromium) as browser:
                thread = secrets.token_hex(6)
                await _timed_step("seeded 12 images", _seed(server, thread))
                loads = []
                for label, path in (("thread page (4 images)", f"/t/{thread}"), ("gallery (12 images)", "/gallery")):
                    load = await _timed_step(f"first load of {path}", _first_load(browser, server.base, path))
                    loads.append({**load, "label": label})
                results["loads"] = loads
                results["show"] = await _timed_step(f"{SHOW_RUNS} + 1 prompts each way", _show(browser, server, fake))
        results["gallery"] = await _timed_step(f"gallery at {GALLERY_ROWS} images",
                                               _gallery(root / "gallery", fake.api_base("custom")))
    return results


def run() -> list[Row]:
    chromium = _chromium()
    if chromium is None:
        progress("studio: no chromium (or no playwright): first load and image-shown measurements skipped")
    with scratch_dir("studio") as tmp:
        results = asyncio.run(_measure(Path(tmp), chromium))
    rows: list[Row] = []

    if "loads" in results:
        load_rows, table = _load_rows(results["loads"])
        rows += load_rows
        print("\n### studio — first load, cold cache, signed in (Chromium; images: the fake's 16 KB PNGs)\n")
        print(markdown_table(["page", "what", "requests", "KB"], table))
    else:
        rows.append(Row("studio", "first load (thread page, gallery)", "KB", goal=f"< {FIRST_LOAD_GOAL_KB:.0f} KB",
                        note="skipped: no chromium (apt-get install chromium) or no playwright"))

    filled, gallery = results["gallery"]
    table = []
    for path, samples in gallery.items():
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
        show = results["show"]
        studio, api = (statistics.median(show[k]) * 1000 for k in ("studio", "api"))
        print(f"\n### studio — provider's answer → image usable, median of {SHOW_RUNS} (~1 MB PNG)\n")
        lines = [("studio: image shown (seen from Python)", "studio"),
                 ("studio: image shown (page clock)", "studio_in_page"),
                 *((f"  of which: {stage}", stage) for stage in STAGES if stage in show),
                 ("API: b64_json bytes decoded in the client", "api")]
        print(markdown_table(["path", "median ms", "min ms", "max ms"], [
            [label, *(f(show[key]) * 1000 for f in (statistics.median, min, max))] for label, key in lines]))
        print(f"\nstudio ÷ API: {fmt(studio / api)}")
        rows.append(Row("studio", "provider's answer → image shown: studio page vs API client", "ms",
                        pixbot=studio, nanobot=api, goal=f"studio < {SHOW_GOAL_MS:.0f} ms", met=studio < SHOW_GOAL_MS,
                        note="'nanobot' column = the same job through /v1 (b64_json); ratio = studio ÷ API",
                        extra={k: [s * 1000 for s in v] for k, v in show.items()}))
    else:
        rows.append(Row("studio", "provider's answer → image shown: studio page vs API client", "ms",
                        goal=f"studio < {SHOW_GOAL_MS:.0f} ms",
                        note="skipped: no chromium (apt-get install chromium) or no playwright"))
    return rows


BENCHMARK = Benchmark("studio", "Web studio: page weight, 10,000-image gallery, answer → image shown", run)

if __name__ == "__main__":
    sys.exit(0 if all(row.met for row in run() if row.goal and row.met is not None) else 1)
