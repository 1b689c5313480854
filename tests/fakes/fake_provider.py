"""Loopback fake of every image provider pixbot speaks to: wire formats, Pillow-made images, fault injection.

One aiohttp server on 127.0.0.1 answers each provider's request shape at the path its adapter uses
(the wire formats in docs/providers.md). Every route is mounted at the root *and* under ``/<provider>``
so that providers whose paths collide can share one fake; the prefix also selects provider-specific answers:

=============  ====================================  =======================================================
provider       apiBase to configure                  requests answered (relative to apiBase)
=============  ====================================  =======================================================
custom         ``{base}/custom/v1``                  POST images/generations (b64_json, or url), images/edits
openai         ``{base}/openai/v1``                  same as custom; images/edits is multipart
stepfun        ``{base}/stepfun/v1``                 same as custom
zhipu          ``{base}/zhipu/v1``                   POST images/generations → always ``data[].url``
modelscope     ``{base}/modelscope/v1``              POST images/generations with X-ModelScope-Async-Mode →
                                                     ``{"task_id"}``; GET tasks/<id> → PENDING, then SUCCEED
                                                     with ``output_images`` URLs
openrouter     ``{base}/openrouter/v1``              POST chat/completions → ``message.images[]`` data URL
gemini         ``{base}/gemini/v1beta``              POST models/<model>:generateContent and :predict
ollama         ``{base}/ollama/api``                 POST generate (width/height) → ``{"image": b64}``
minimax        ``{base}/minimax/v1``                 POST image_generation → ``data.image_base64``
aihubmix       ``{base}/aihubmix/v1``                POST models/<path>/predictions → ``output[].b64_json``
=============  ====================================  =======================================================

``FakeProvider.api_base(name)`` returns that string. ``url`` answers point at ``GET {base}/files/<id>.png``
(loopback: pixbot's SSRF guard downloads them only with ``tools.ssrfWhitelist: ["127.0.0.0/8"]``).
Sizes: OpenAI-style ``size``/AIHubMix ``input.size`` "WxH" and Ollama width/height set the image's
dimensions (each side capped at 4096); anything else gets a 64×64 image. ``n`` (OpenAI, AIHubMix,
MiniMax) and ``sampleCount`` (Imagen) give that many images (at most 10). When ``image_bytes`` is set,
every image is instead an incompressible noise PNG of about that many bytes. Images are cached per
size, so identical requests get identical bytes and generation cost does not distort benchmarks.

Controls: ``latency`` (seconds slept per API request), ``require_key`` (``Authorization: Bearer <key>``
or ``x-goog-api-key: <key>``, else an OpenAI-shaped 401), ``fail_next(...)`` and the ``answers`` queue
(scripted answers, taken first-in first-out; one without ``path_suffix`` applies to any API request,
never to ``/files`` downloads), ``hold()``/``release()`` (park API requests at a gate, so a test can
see them all in flight without timing), ``requests``/``requests_of()``/``wait_for_requests()``,
``in_flight``/``max_in_flight`` (API requests only).

Faults below HTTP, as scripted answers: ``Answer(stall=True)`` (or ``stall_next()``) parks that one
request until ``release_stalled()`` or ``stop()`` and then lets the normal handler answer it, so one
slot of a job can hang while the others complete; ``Answer(drip=s)`` sends the status and headers at
once, then the body ``drip_bytes`` at a time with ``s`` seconds between pieces (a slow-drip body that
never trips a per-read timeout); ``Answer(reset=True)`` closes the connection without any response.

Standalone: ``python -m tests.fakes.fake_provider --port N --latency-ms 500 --image-bytes 12000000``
prints its base URL on stdout once listening and serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import io
import json
import math
import random
import re
import signal
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict, CIMultiDictProxy
from PIL import Image

__all__ = ["PROVIDER_PREFIXES", "Answer", "FakeProvider", "Recorded", "Upload", "main"]

PROVIDER_PREFIXES: tuple[str, ...] = (
    "aihubmix", "custom", "gemini", "minimax", "modelscope",
    "ollama", "openai", "openrouter", "stepfun", "zhipu",
)
_API_BASES: dict[str, str] = {"gemini": "v1beta", "ollama": "api"}
_DEFAULT_SIDE = 64
_MAX_SIDE = 4096
_MAX_N = 10
_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")
_FILES_PATH = re.compile(r"^(/[a-z_]+)?/files/")
_RAW_MARK = re.compile(rb'"\\u0000raw(\d+)\\u0000"')
_DATA_URL = b"data:image/png;base64,"


@dataclass(frozen=True)
class Upload:
    """One file part of a multipart request (e.g. an ``image[]`` reference for an edit)."""

    field: str
    filename: str | None
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it; ``json`` is None unless the body parsed as JSON."""

    method: str
    path: str
    headers: Mapping[str, str]
    json: Any = None
    form_fields: dict[str, str] = field(default_factory=dict)
    files: list[Upload] = field(default_factory=list)
    query: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """A scripted answer. ``body``: dict/list → JSON, str → text, bytes → raw, None → empty."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] | None = None
    path_suffix: str | None = None
    content_type: str | None = None
    #: Park the request until ``release_stalled()``/``stop()``, then answer it normally (not ``body``).
    stall: bool = False
    #: Seconds between body pieces of ``drip_bytes`` each (a slow-drip body); None sends it at once.
    drip: float | None = None
    drip_bytes: int = 16
    #: Close the connection without sending a response.
    reset: bool = False


@dataclass(frozen=True)
class _Image:
    png: bytes
    b64: bytes


class _Raw:
    """A JSON string spliced in as-is: base64 needs no escaping, and json.dumps of 16 MB costs ~35 ms."""

    def __init__(self, *parts: bytes) -> None:
        self.parts = parts


_RECORDED = web.RequestKey("recorded", Recorded)


@dataclass
class _Task:
    urls: list[str]
    polls: int = 0


@functools.lru_cache(maxsize=16)
def _make_image(width: int, height: int, noise_bytes: int | None) -> _Image:
    """A gradient PNG of the given size, or noise PNG of about ``noise_bytes``; runs in a thread."""
    if noise_bytes is not None:
        width = max(1, int(math.sqrt(noise_bytes / 3)))
        height = max(1, round(noise_bytes / (3 * width + 1)))
        pixels = random.Random(noise_bytes).randbytes(width * height * 3)
        image = Image.frombytes("RGB", (width, height), pixels)
    else:
        gradient = Image.linear_gradient("L")
        image = Image.merge(
            "RGB",
            (gradient.resize((width, height)), gradient.rotate(90).resize((width, height)),
             Image.new("L", (width, height), 160)),
        )
    buf = io.BytesIO()
    image.save(buf, "PNG", compress_level=0 if noise_bytes is not None else 1)
    png = buf.getvalue()
    return _Image(png, base64.b64encode(png))


def _dims(size: Any) -> tuple[int, int] | None:
    """"WxH" (or ints) → capped dimensions; None when unparseable ("1K", "auto", absent)."""
    if isinstance(size, str) and (m := _SIZE.match(size)):
        w, h = int(m[1]), int(m[2])
    elif isinstance(size, tuple) and all(isinstance(v, int) for v in size):
        w, h = size
    else:
        return None
    if w <= 0 or h <= 0:
        return None
    return min(w, _MAX_SIDE), min(h, _MAX_SIDE)


def _count(value: Any) -> int:
    try:
        return max(1, min(_MAX_N, int(value)))
    except (TypeError, ValueError):
        return 1


def _error(status: int, message: str, code: str | int | None = None) -> dict[str, Any]:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": code or status}
    return {"error": error}


class FakeProvider:
    """The fake server; use ``async with FakeProvider() as fake`` or ``start()``/``stop()``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        image_bytes: int | None = None,
        require_key: str | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.latency = latency
        self.image_bytes = image_bytes
        self.require_key = require_key
        self.pending_polls = 1
        self.answers: deque[Answer] = deque()
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.files: dict[str, bytes] = {}
        self._tasks: dict[str, _Task] = {}
        self._cond = asyncio.Condition()
        self._gate = asyncio.Event()
        self._gate.set()
        self._unstall = asyncio.Event()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def api_base(self, provider: str) -> str:
        """The apiBase a test configures for ``provider`` (see the module docstring's table)."""
        if provider not in PROVIDER_PREFIXES:
            raise ValueError(f"unknown provider prefix {provider!r}")
        return f"{self.base_url}/{provider}/{_API_BASES.get(provider, 'v1')}"

    async def start(self) -> FakeProvider:
        app = web.Application(middlewares=[self._middleware], client_max_size=256 * 1024 * 1024)
        routes: list[tuple[str, str, Handler]] = [
            ("POST", "/v1/images/generations", self._images_generations),
            ("POST", "/v1/images/edits", self._images_edits),
            ("POST", "/v1/chat/completions", self._chat_completions),
            ("POST", "/v1/image_generation", self._minimax),
            ("POST", "/v1/models/{model_path:.+}/predictions", self._aihubmix),
            ("GET", "/v1/tasks/{task_id}", self._modelscope_task),
            ("POST", "/v1beta/models/{target:.+}", self._gemini),
            ("POST", "/api/generate", self._ollama),
            ("GET", "/files/{name}", self._file),
        ]
        for prefix in ("", *(f"/{name}" for name in PROVIDER_PREFIXES)):
            for method, path, handler in routes:
                app.router.add_route(method, prefix + path, handler)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        await self.warm()
        return self

    async def stop(self) -> None:
        self._gate.set()
        self._unstall.set()
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeProvider:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def warm(self) -> None:
        """Build the current default image now, so the first request does not pay for it."""
        await self._image(None)

    def fail_next(
        self,
        status: int,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        times: int = 1,
        *,
        path_suffix: str | None = None,
    ) -> None:
        """Answer the next ``times`` API requests with ``status`` (default body: an OpenAI-shaped error)."""
        if body is None:
            body = _error(status, f"fake provider failure (HTTP {status})")
        for _ in range(times):
            self.answers.append(Answer(status, body, headers, path_suffix))

    def hold(self) -> None:
        """Park every API request (after it is recorded) until ``release()``."""
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def stall_next(self, times: int = 1, *, path_suffix: str | None = None) -> None:
        """Park the next ``times`` API requests (or those ending ``path_suffix``) until ``release_stalled()``."""
        self._unstall.clear()
        for _ in range(times):
            self.answers.append(Answer(stall=True, path_suffix=path_suffix))

    def release_stalled(self) -> None:
        """Let every stalled request through to its normal answer."""
        self._unstall.set()

    def requests_of(self, path_suffix: str, method: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(path_suffix) and method in (None, r.method)]

    async def wait_for_requests(
        self, n: int, timeout: float = 5.0, *, path_suffix: str = ""  # noqa: ASYNC109 - a bounded test wait
    ) -> list[Recorded]:
        """Wait until ``n`` requests (ending with ``path_suffix``) arrived; returns them all."""
        async with self._cond:
            try:
                await asyncio.wait_for(
                    self._cond.wait_for(lambda: len(self.requests_of(path_suffix)) >= n), timeout
                )
            except TimeoutError:
                seen = [f"{r.method} {r.path}" for r in self.requests]
                wanted = f"{n} requests ending {path_suffix!r} within {timeout}s"
                raise TimeoutError(f"expected {wanted}; got {seen}") from None
        return self.requests_of(path_suffix)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.http_exception is not None:  # unknown path or method: recorded, then 404/405
            await self._record(request)
            return await handler(request)
        is_api = _FILES_PATH.match(request.path) is None
        if is_api:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            recorded = await self._record(request)
            if is_api:
                await self._gate.wait()
                if self.latency > 0:
                    await asyncio.sleep(self.latency)
                if self.require_key is not None and not self._authorized(request):
                    return _json(_error(401, "Incorrect API key provided.", "invalid_api_key"), 401)
            scripted = self._take_answer(recorded.path, is_api)
            if scripted is None:
                return await handler(request)
            if scripted.stall:
                await self._unstall.wait()
                return await handler(request)
            if scripted.reset:
                if request.transport is not None:
                    request.transport.close()
                return web.Response(status=499)  # never reaches the client: the connection is gone
            if scripted.drip is not None:
                return await self._drip(request, scripted, scripted.drip)
            return _scripted(scripted)
        finally:
            if is_api:
                self.in_flight -= 1

    async def _record(self, request: web.Request) -> Recorded:
        body_json: Any = None
        fields: dict[str, str] = {}
        files: list[Upload] = []
        if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            for name, value in (await request.post()).items():
                if isinstance(value, web.FileField):
                    data = await asyncio.to_thread(value.file.read)
                    files.append(Upload(name, value.filename, value.content_type, data))
                else:
                    fields[name] = value if isinstance(value, str) else bytes(value).decode(errors="replace")
        elif request.can_read_body:
            with contextlib.suppress(ValueError):
                body_json = json.loads(await request.read())
        recorded = Recorded(
            request.method, request.path, CIMultiDictProxy(CIMultiDict(request.headers)),
            body_json, fields, files, dict(request.query),
        )
        request[_RECORDED] = recorded
        async with self._cond:
            self.requests.append(recorded)
            self._cond.notify_all()
        return recorded

    async def _drip(self, request: web.Request, answer: Answer, interval: float) -> web.StreamResponse:
        """Headers now, then the body a few bytes at a time until done, the client leaves, or ``stop()``."""
        scripted = _scripted(answer)
        body = scripted.body if isinstance(scripted.body, bytes) else b""
        response = web.StreamResponse(status=answer.status, headers=scripted.headers)
        response.content_length = len(body)
        try:
            await response.prepare(request)
            for start in range(0, len(body), max(1, answer.drip_bytes)):
                await response.write(body[start : start + max(1, answer.drip_bytes)])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), interval)
                if self._stopping.is_set():
                    break
            else:
                await response.write_eof()
        except ConnectionResetError:  # the client gave up (its deadline): nothing left to do
            pass
        return response

    def _authorized(self, request: web.Request) -> bool:
        return (
            request.headers.get("Authorization") == f"Bearer {self.require_key}"
            or request.headers.get("x-goog-api-key") == self.require_key
        )

    def _take_answer(self, path: str, is_api: bool) -> Answer | None:
        for answer in self.answers:
            matches = path.endswith(answer.path_suffix) if answer.path_suffix is not None else is_api
            if matches:
                self.answers.remove(answer)
                return answer
        return None

    async def _image(self, dims: tuple[int, int] | None) -> _Image:
        if self.image_bytes is not None:
            return await asyncio.to_thread(_make_image, 0, 0, max(64, self.image_bytes))
        w, h = dims or (_DEFAULT_SIDE, _DEFAULT_SIDE)
        return await asyncio.to_thread(_make_image, w, h, None)

    def _publish(self, image: _Image) -> str:
        name = f"{uuid.uuid4().hex}.png"
        self.files[name] = image.png
        return f"{self.base_url}/files/{name}"

    async def _images_generations(self, request: web.Request) -> web.StreamResponse:
        body = _json_object(request)
        if body is None:
            return _json(_error(400, "request body must be a JSON object"), 400)
        if request.headers.get("X-ModelScope-Async-Mode", "").lower() == "true":
            image = await self._image(_dims(body.get("size")))
            task_id = uuid.uuid4().hex
            self._tasks[task_id] = _Task([self._publish(image)])
            return _json({"task_id": task_id, "request_id": uuid.uuid4().hex})
        return await self._openai_answer(request, body)

    async def _images_edits(self, request: web.Request) -> web.StreamResponse:
        recorded = request[_RECORDED]
        if not any(u.field in ("image", "image[]") for u in recorded.files):
            return _json(_error(400, "an 'image' or 'image[]' file part is required"), 400)
        return await self._openai_answer(request, recorded.form_fields)

    async def _openai_answer(self, request: web.Request, params: Mapping[str, Any]) -> web.Response:
        """``data[]`` of ``n`` images: ``b64_json``, or ``url`` when asked for (always under /zhipu)."""
        image = await self._image(_dims(params.get("size")))
        as_url = params.get("response_format") == "url" or _prefix(request) == "zhipu"
        data = [
            {"url": self._publish(image)} if as_url else {"b64_json": _Raw(image.b64)}
            for _ in range(_count(params.get("n")))
        ]
        return _json({"created": int(time.time()), "data": data})

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        body = _json_object(request)
        if body is None:
            return _json(_error(400, "request body must be a JSON object"), 400)
        image = await self._image(None)
        message = {
            "role": "assistant",
            "content": "Here is your image.",
            "images": [{"type": "image_url", "image_url": {"url": _Raw(_DATA_URL, image.b64)}}],
        }
        return _json({
            "id": f"gen-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
        })

    async def _gemini(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].rpartition(":")
        body = _json_object(request)
        if body is None or not model or method not in ("generateContent", "predict"):
            error = {"code": 400, "message": "bad Gemini request", "status": "INVALID_ARGUMENT"}
            return _json({"error": error}, 400)
        image = await self._image(None)
        if method == "predict":
            params = body.get("parameters")
            n = _count(params.get("sampleCount") if isinstance(params, dict) else None)
            prediction = {"bytesBase64Encoded": _Raw(image.b64), "mimeType": "image/png"}
            return _json({"predictions": [prediction] * n})
        inline = {"inlineData": {"mimeType": "image/png", "data": _Raw(image.b64)}}
        parts = [{"text": "Here is your image."}, inline]
        candidate = {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
        return _json({"candidates": [candidate], "modelVersion": model})

    async def _ollama(self, request: web.Request) -> web.StreamResponse:
        body = _json_object(request)
        if body is None:
            return _json({"error": "request body must be a JSON object"}, 400)
        image = await self._image(_dims((body.get("width"), body.get("height"))))
        return _json({
            "model": body.get("model"), "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "response": "", "done": True, "image": _Raw(image.b64),
        })

    async def _minimax(self, request: web.Request) -> web.StreamResponse:
        body = _json_object(request)
        if body is None:
            return _json({"base_resp": {"status_code": 2013, "status_msg": "invalid params"}}, 400)
        image = await self._image(None)
        n = _count(body.get("n"))
        data: dict[str, Any] = (
            {"image_urls": [self._publish(image) for _ in range(n)]}
            if body.get("response_format") == "url"
            else {"image_base64": [_Raw(image.b64)] * n}
        )
        return _json({
            "id": uuid.uuid4().hex, "data": data,
            "metadata": {"success_count": str(n), "failed_count": "0"},
            "base_resp": {"status_code": 0, "status_msg": "success"},
        })

    async def _aihubmix(self, request: web.Request) -> web.StreamResponse:
        body = _json_object(request)
        inner = body.get("input") if body is not None else None
        if not isinstance(inner, dict):
            return _json(_error(400, "body must be {\"input\": {...}}"), 400)
        image = await self._image(_dims(inner.get("size")))
        return _json({"output": [{"b64_json": _Raw(image.b64)}] * _count(inner.get("n"))})

    async def _modelscope_task(self, request: web.Request) -> web.StreamResponse:
        task_id = request.match_info["task_id"]
        task = self._tasks.get(task_id)
        if task is None:
            return _json({"errors": {"message": f"task {task_id} not found"}}, 404)
        if task.polls < self.pending_polls:
            task.polls += 1
            return _json({"task_id": task_id, "task_status": "PENDING", "request_id": uuid.uuid4().hex})
        return _json({
            "task_id": task_id, "task_status": "SUCCEED", "output_images": task.urls,
            "request_id": uuid.uuid4().hex,
        })

    async def _file(self, request: web.Request) -> web.StreamResponse:
        data = self.files.get(request.match_info["name"])
        if data is None:
            return web.Response(status=404, text="not found")
        return web.Response(body=data, content_type="image/png")


def _prefix(request: web.Request) -> str | None:
    first = request.path.split("/", 2)[1]
    return first if first in PROVIDER_PREFIXES else None


def _json_object(request: web.Request) -> dict[str, Any] | None:
    body = request[_RECORDED].json
    return body if isinstance(body, dict) else None


def _dumps(obj: Any) -> bytes:
    raws: list[_Raw] = []

    def default(value: object) -> str:
        if not isinstance(value, _Raw):
            raise TypeError(f"not JSON serializable: {type(value).__name__}")
        raws.append(value)
        return f"\x00raw{len(raws) - 1}\x00"

    pieces = _RAW_MARK.split(json.dumps(obj, default=default).encode())
    out: list[bytes] = []
    for i, piece in enumerate(pieces):
        out.extend((b'"', *raws[int(piece)].parts, b'"') if i % 2 else (piece,))
    return b"".join(out)


def _json(obj: Any, status: int = 200) -> web.Response:
    # Exactly "application/json" (no charset): some clients compare the header literally.
    return web.Response(status=status, body=_dumps(obj), content_type="application/json")


def _scripted(answer: Answer) -> web.Response:
    body, kind = answer.body, "text/plain"
    if isinstance(body, dict | list):
        body, kind = json.dumps(body).encode(), "application/json"
    elif isinstance(body, str):
        body = body.encode()
    headers = CIMultiDict(answer.headers or {})
    headers.setdefault("Content-Type", answer.content_type or kind)
    return web.Response(status=answer.status, body=body or b"", headers=headers)


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeProvider(
        host=args.host, port=args.port, latency=args.latency_ms / 1000, image_bytes=args.image_bytes,
        require_key=args.require_key,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with fake:
        print(fake.base_url, flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """Run the fake standalone (benchmarks start it as a subprocess)."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.fake_provider", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--image-bytes", type=int, default=None)
    parser.add_argument("--require-key", default=None)
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
