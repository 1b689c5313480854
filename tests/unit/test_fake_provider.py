"""Tests of the loopback provider fake itself: every wire format, url mode, controls, standalone mode."""

from __future__ import annotations

import asyncio
import base64
import io
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.fakes.fake_provider import Answer, FakeProvider
from tests.images import png_bytes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


def _decode(b64: str) -> Image.Image:
    data = base64.b64decode(b64, validate=True)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _data_url(url: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return _decode(url.removeprefix(prefix))


# (path under apiBase, JSON body, how to find the images in the answer)
WIRE_FORMATS: list[tuple[str, str, dict[str, Any], Callable[[Any], list[Image.Image]]]] = [
    ("custom", "images/generations", {"model": "m", "prompt": "fox", "n": 2, "size": "96x48"},
     lambda r: [_decode(d["b64_json"]) for d in r["data"]]),
    ("stepfun", "images/generations", {"model": "step-1x-medium", "prompt": "fox", "size": "1024x1024"},
     lambda r: [_decode(d["b64_json"]) for d in r["data"]]),
    ("openrouter", "chat/completions", {"model": "x", "messages": [{"role": "user", "content": "fox"}]},
     lambda r: [_data_url(i["image_url"]["url"]) for i in r["choices"][0]["message"]["images"]]),
    ("gemini", "models/gemini-2.5-flash-image:generateContent", {"contents": []},
     lambda r: [_decode(p["inlineData"]["data"]) for p in r["candidates"][0]["content"]["parts"]
                if "inlineData" in p]),
    ("gemini", "models/imagen-4.0-generate-001:predict", {"instances": [], "parameters": {"sampleCount": 3}},
     lambda r: [_decode(p["bytesBase64Encoded"]) for p in r["predictions"]]),
    ("ollama", "generate", {"model": "x/z-image-turbo", "prompt": "fox", "width": 40, "height": 24},
     lambda r: [_decode(r["image"])]),
    ("minimax", "image_generation", {"model": "image-01", "prompt": "fox", "response_format": "base64"},
     lambda r: [_decode(b) for b in r["data"]["image_base64"]]),
    ("aihubmix", "models/openai/gpt-image-2-free/predictions", {"input": {"prompt": "fox", "size": "32x16"}},
     lambda r: [_decode(o["b64_json"]) for o in r["output"]]),
]


@pytest.mark.parametrize(("provider", "path", "body", "extract"), WIRE_FORMATS,
                         ids=[f"{provider}-{path}" for provider, path, _, _ in WIRE_FORMATS])
async def test_each_wire_format_answers_decodable_images(
    fake: FakeProvider, client: httpx.AsyncClient, provider: str, path: str, body: dict[str, Any],
    extract: Callable[[Any], list[Image.Image]],
) -> None:
    response = await client.post(f"{fake.api_base(provider)}/{path}", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    images = extract(response.json())
    assert images
    (recorded,) = fake.requests_of(path)
    assert recorded.json == body
    assert recorded.path == f"/{provider}/{fake.api_base(provider).rsplit('/', 1)[1]}/{path}"


async def test_sizes_and_counts_are_honoured(fake: FakeProvider, client: httpx.AsyncClient) -> None:
    answer = (await client.post(f"{fake.base_url}/v1/images/generations",
                                json={"prompt": "p", "n": 2, "size": "96x48"})).json()
    assert [_decode(d["b64_json"]).size for d in answer["data"]] == [(96, 48), (96, 48)]
    capped = (await client.post(f"{fake.base_url}/v1/images/generations",
                                json={"prompt": "p", "size": "5000x8"})).json()
    assert _decode(capped["data"][0]["b64_json"]).size == (4096, 8)
    ollama_url = f"{fake.api_base('ollama')}/generate"
    ollama = (await client.post(ollama_url, json={"width": 40, "height": 24})).json()
    assert _decode(ollama["image"]).size == (40, 24)
    default = (await client.post(f"{fake.base_url}/v1/images/generations", json={"size": "1K"})).json()
    assert _decode(default["data"][0]["b64_json"]).size == (64, 64)


async def test_url_mode_serves_the_file(fake: FakeProvider, client: httpx.AsyncClient) -> None:
    answer = (await client.post(f"{fake.api_base('custom')}/images/generations",
                                json={"prompt": "p", "response_format": "url", "size": "20x10"})).json()
    (item,) = answer["data"]
    assert item["url"].startswith(f"{fake.base_url}/files/") and "b64_json" not in item
    download = await client.get(item["url"])
    assert download.status_code == 200 and download.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(download.content)).size == (20, 10)
    assert (await client.get(f"{fake.base_url}/files/missing.png")).status_code == 404


async def test_zhipu_prefix_answers_urls_only(fake: FakeProvider, client: httpx.AsyncClient) -> None:
    answer = (await client.post(f"{fake.api_base('zhipu')}/images/generations",
                                json={"model": "cogview-4", "prompt": "p", "size": "1280x1280"})).json()
    (item,) = answer["data"]
    assert set(item) == {"url"}
    assert Image.open(io.BytesIO((await client.get(item["url"])).content)).size == (1280, 1280)


async def test_edits_record_reference_parts(
    fake: FakeProvider, client: httpx.AsyncClient, png: bytes
) -> None:
    second = png_bytes(8, 8)
    response = await client.post(
        f"{fake.api_base('openai')}/images/edits",
        data={"model": "gpt-image-1", "prompt": "grey", "size": "16x16"},
        files=[("image[]", ("a.png", png, "image/png")), ("image[]", ("b.png", second, "image/png"))],
    )
    assert _decode(response.json()["data"][0]["b64_json"]).size == (16, 16)
    (recorded,) = fake.requests_of("/images/edits")
    assert recorded.form_fields == {"model": "gpt-image-1", "prompt": "grey", "size": "16x16"}
    assert [(u.field, u.filename, u.data) for u in recorded.files] == [
        ("image[]", "a.png", png), ("image[]", "b.png", second),
    ]
    edits = f"{fake.base_url}/v1/images/edits"
    missing = await client.post(edits, data={"prompt": "grey"}, files={"x": b"1"})
    assert missing.status_code == 400 and "image" in missing.json()["error"]["message"]


async def test_modelscope_task_is_pending_once_then_succeeds(
    fake: FakeProvider, client: httpx.AsyncClient
) -> None:
    base = fake.api_base("modelscope")
    submit = await client.post(f"{base}/images/generations", json={"model": "Qwen/Qwen-Image", "prompt": "p"},
                               headers={"X-ModelScope-Async-Mode": "true"})
    task_id = submit.json()["task_id"]
    first = (await client.get(f"{base}/tasks/{task_id}")).json()
    second = (await client.get(f"{base}/tasks/{task_id}")).json()
    assert first["task_status"] == "PENDING"
    assert second["task_status"] == "SUCCEED"
    (url,) = second["output_images"]
    assert (await client.get(url)).content.startswith(b"\x89PNG")
    assert (await client.get(f"{base}/tasks/nope")).status_code == 404


async def test_minimax_url_mode(fake: FakeProvider, client: httpx.AsyncClient) -> None:
    answer = (await client.post(f"{fake.api_base('minimax')}/image_generation",
                                json={"prompt": "p", "response_format": "url", "n": 2})).json()
    assert answer["base_resp"]["status_code"] == 0
    assert len(answer["data"]["image_urls"]) == 2


async def test_max_in_flight_counts_concurrent_requests(
    fake: FakeProvider, client: httpx.AsyncClient
) -> None:
    fake.hold()
    url = f"{fake.base_url}/v1/images/generations"
    calls = [asyncio.create_task(client.post(url, json={"prompt": str(i)})) for i in range(4)]
    await fake.wait_for_requests(4)
    assert fake.in_flight == 4 and not any(c.done() for c in calls)
    fake.release()
    responses = await asyncio.gather(*calls)
    assert [r.status_code for r in responses] == [200] * 4
    assert fake.max_in_flight == 4 and fake.in_flight == 0
    await client.get(f"{fake.base_url}/files/none.png")
    assert fake.max_in_flight == 4, "file downloads are not API requests"


async def test_fail_next_then_recover(fake: FakeProvider, client: httpx.AsyncClient) -> None:
    fake.fail_next(429, headers={"Retry-After": "7"}, times=2)
    url = f"{fake.base_url}/v1/images/generations"
    first, second, third = [await client.post(url, json={"prompt": "p"}) for _ in range(3)]
    assert first.status_code == second.status_code == 429
    assert first.headers["Retry-After"] == "7"
    assert "message" in first.json()["error"]
    assert third.status_code == 200
    assert len(fake.requests) == 3


async def test_fail_next_with_path_suffix_and_raw_answers(
    fake: FakeProvider, client: httpx.AsyncClient
) -> None:
    fake.fail_next(503, body="upstream down", path_suffix="/generate")
    fake.answers.append(Answer(200, b"not json", content_type="application/json"))
    raw = await client.post(f"{fake.base_url}/v1/images/generations", json={"prompt": "p"})
    assert raw.status_code == 200 and raw.content == b"not json"
    failed = await client.post(f"{fake.api_base('ollama')}/generate", json={})
    assert failed.status_code == 503 and failed.text == "upstream down"
    fake.answers.append(Answer(500, {"detail": "x"}, headers={"Content-Type": "application/problem+json"}))
    problem = await client.post(f"{fake.api_base('gemini')}/models/m:predict", json={})
    assert problem.headers["content-type"] == "application/problem+json" and problem.json() == {"detail": "x"}
    assert not fake.answers


async def test_latency_delays_each_request(client: httpx.AsyncClient) -> None:
    async with FakeProvider(latency=0.2) as fake:
        loop = asyncio.get_running_loop()
        started = loop.time()
        call = asyncio.create_task(client.post(f"{fake.base_url}/v1/images/generations", json={}))
        await fake.wait_for_requests(1)
        assert fake.in_flight == 1
        assert (await call).status_code == 200
        assert loop.time() - started >= 0.19  # a lower bound only: the injected delay happened


async def test_require_key(client: httpx.AsyncClient) -> None:
    async with FakeProvider(require_key="sk-test") as fake:
        url = f"{fake.base_url}/v1/images/generations"
        denied = await client.post(url, json={}, headers={"Authorization": "Bearer wrong"})
        assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_api_key"
        allowed = await client.post(url, json={}, headers={"Authorization": "Bearer sk-test"})
        assert allowed.status_code == 200
        gemini = f"{fake.api_base('gemini')}/models/gemini-2.5-flash-image:generateContent"
        assert (await client.post(gemini, json={}, headers={"x-goog-api-key": "sk-test"})).status_code == 200
        assert fake.requests[0].headers["authorization"] == "Bearer wrong"


async def test_image_bytes_gives_noise_png_of_about_that_size(client: httpx.AsyncClient) -> None:
    async with FakeProvider(image_bytes=200_000) as fake:
        answer = (await client.post(f"{fake.base_url}/v1/images/generations", json={"size": "8x8"})).json()
        data = base64.b64decode(answer["data"][0]["b64_json"])
        assert 190_000 <= len(data) <= 210_000
        assert Image.open(io.BytesIO(data)).format == "PNG"


async def test_wait_for_requests_times_out_with_what_it_saw(
    fake: FakeProvider, client: httpx.AsyncClient
) -> None:
    await client.post(f"{fake.base_url}/nowhere", json={})
    with pytest.raises(TimeoutError, match="/nowhere"):
        await fake.wait_for_requests(1, timeout=0.05, path_suffix="/generate")
    assert fake.max_in_flight == 0, "unknown paths are recorded but not served"


async def test_standalone_main_prints_its_url(client: httpx.AsyncClient) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.fake_provider", "--port", "0", "--latency-ms", "1",
        "--image-bytes", "5000", cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        base = (await asyncio.wait_for(process.stdout.readline(), 30)).decode().strip()
        assert base.startswith("http://127.0.0.1:")
        answer = await client.post(f"{base}/openai/v1/images/generations", json={"prompt": "p"})
        data = base64.b64decode(answer.json()["data"][0]["b64_json"])
        assert 4000 <= len(data) <= 6000
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 10) == 0
