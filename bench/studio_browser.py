"""The ``studio`` benchmark's Chromium measurements (see ``bench/bench_studio.py``): first load, image shown.

``seed`` fills a thread and the gallery for the first-load pages; ``first_load`` opens one page in a fresh
browser context and records every request; ``show`` times the provider's answer → the image shown in the
page, alternately with the same job through the ``/v1`` API, against ``TimedFake``.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from aiohttp import web

from bench.common import MODEL, PROMPT, BenchError, progress
from bench.web_common import TIMEOUT_S, TOKEN, WORDS, Server, signed_in
from tests.fakes.fake_provider import FakeProvider

__all__ = ["IMAGE_BYTES", "SHOW_RUNS", "STAGES", "TimedFake", "first_load", "seed", "show"]

VIEWPORT = {"width": 1280, "height": 900}
#: Let late requests (lazy images, the event stream) start after ``load`` before counting.
SETTLE_S = 0.5
#: Then wait at most this long for every request but the event stream to finish.
FINISH_S = 15.0
SHOW_RUNS = 10
#: About what a 1024×1024 PNG from a real provider weighs (the fake's noise PNG: it does not compress).
IMAGE_BYTES = 1_000_000
_RESOURCES_JS = """() => performance.getEntriesByType("resource").map((e) => (
  {name: e.name, start: performance.timeOrigin + e.startTime, end: performance.timeOrigin + e.responseEnd}))"""
_SHOWN_JS = """(alt) => {
  for (const img of document.querySelectorAll("img"))
    if (img.alt === alt && img.complete && img.naturalWidth > 0) return Date.now();
  return 0;
}"""


class TimedFake(FakeProvider):
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
        for _ in range(int(TIMEOUT_S * 1000)):
            if len(self.answered) > count:
                if len(self.answered) != count + 1:
                    raise BenchError(f"expected one provider answer, got {len(self.answered) - count}")
                return self.answered[count]
            await asyncio.sleep(0.001)
        raise BenchError("the fake provider never answered")


async def _wait_job(service: Any, job_id: str) -> Any:
    for _ in range(int(TIMEOUT_S * 100)):
        record = await service.job(job_id)
        if record is not None and record.status in ("delivered", "failed"):
            if record.status != "delivered":
                raise BenchError(f"studio job {job_id} failed: {record.error}")
            return record
        await asyncio.sleep(0.01)
    raise BenchError(f"studio job {job_id} did not finish")


async def seed(server: Server, thread: str) -> None:
    """Four images on a studio thread and eight through the API: what the first-load pages show."""
    client, csrf = await signed_in(server.base)
    try:
        asked = await client.post(f"/t/{thread}/ask", data={"prompt": PROMPT, "aspect_ratio": "auto", "count": "4",
                                                             "request_id": secrets.token_hex(8)},
                                  headers={"X-CSRF-Token": csrf, "Accept": "application/json"})
        if asked.status_code != 202:
            raise BenchError(f"the studio refused the seed prompt: {asked.status_code} {asked.text[:300]}")
        await _wait_job(server.service, asked.json()["job"])
        for index in range(2):
            made = await client.post("/v1/images/generations", json={
                "model": MODEL, "prompt": f"{WORDS[index]}, through the API", "n": 4,
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


async def first_load(browser: Any, base: str, path: str) -> dict[str, Any]:
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


# --- 3. provider answer → image shown --------------------------------------------------------------


#: Where the studio's time goes, from the page's Resource Timing (page clock, against the fake's wall clock).
STAGES = ("answer → event at the page (job fragment fetch starts)", "job fragment fetch",
          "fragment in → image request starts", f"image fetch (~{IMAGE_BYTES / 1e6:g} MB)",
          "image fetched → seen complete (decode, frame)")


async def _studio_once(page: Any, base: str, fake: TimedFake, prompt: str) -> dict[str, float]:
    """One prompt on a fresh thread page: seconds from the provider's answer to the image shown, seen from
    Python (``studio``) and by the page's clock (``studio_in_page``), and the stages between."""
    thread = secrets.token_hex(6)
    async with page.expect_response(lambda r: r.url.endswith(f"/t/{thread}/events")):  # the stream is open
        await page.goto(f"{base}/t/{thread}")
    await page.get_by_label("Prompt").fill(prompt)
    before = len(fake.answered)
    shown = asyncio.ensure_future(page.wait_for_function(_SHOWN_JS, arg=prompt, timeout=TIMEOUT_S * 1000))
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


async def _api_once(client: httpx.AsyncClient, fake: TimedFake, prompt: str) -> float:
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


async def show(browser: Any, server: Server, fake: TimedFake) -> dict[str, list[float]]:
    """SHOW_RUNS prompts each way after a warm-up, alternately: seconds per sample, by path and stage."""
    fake.image_bytes = IMAGE_BYTES
    await fake.warm()  # builds the noise image now, not during a timed run
    context = await browser.new_context(viewport=VIEWPORT)
    client = httpx.AsyncClient(base_url=server.base, timeout=TIMEOUT_S)
    samples: dict[str, list[float]] = {"studio": [], "studio_in_page": [], "api": []}
    try:
        await context.request.get(f"{server.base}/gallery?token={TOKEN}", max_redirects=0)
        page = await context.new_page()
        for index in range(SHOW_RUNS + 1):  # the first of each is a warm-up
            prompt = f"{WORDS[index % len(WORDS)]}, run {index}"
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
