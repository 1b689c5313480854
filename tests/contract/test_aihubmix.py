"""Contract: providers/aihubmix.py, AIHubMix's unified predictions API (docs/providers.md, "aihubmix")."""

from __future__ import annotations

import httpx
import pytest

from core.errors import ProviderUnavailable
from providers.aihubmix import AIHubMixProvider, find_images, model_path
from providers.base import GPT_IMAGE_SIZES
from tests.contract.shared import SECRET, ProviderSpec, b64, json_body
from tests.images import jpeg_bytes, png_bytes

BASE = "https://aihubmix.com/v1"
PREDICTIONS = f"{BASE}/models/openai/gpt-image-2-free/predictions"
B64 = b64(png_bytes())
PNG_URL = f"data:image/png;base64,{B64}"

SPEC = ProviderSpec(AIHubMixProvider, "gpt-image-2-free", PREDICTIONS,
                    lambda payload: {"output": [{"b64_json": payload}]},
                    "AIHubMix API key is not configured. Set providers.aihubmix.apiKey.")


@pytest.fixture
def aihubmix(make_provider):
    return make_provider(AIHubMixProvider, api_key=SECRET)


def ok(data: bytes = b"") -> httpx.Response:
    return httpx.Response(200, json={"output": [{"b64_json": b64(data or png_bytes())}]})


async def test_request_path_headers_and_body(make_provider, provider_request, respx_mock):
    provider = make_provider(
        AIHubMixProvider,
        api_key=SECRET,
        extra_body={"quality": "low"},
        extra_headers={"content-type": "text/plain", "X-Team": "art"},
    )
    route = respx_mock.post(PREDICTIONS).mock(return_value=ok())
    result = await provider.generate(
        provider_request("a fox", "gpt-image-2-free", aspect_ratio="16:9", size="1K")
    )
    request = route.calls.last.request
    assert request.headers.get_list("content-type") == ["application/json"]
    assert list(provider.headers()) == ["Authorization", "X-Team", "Content-Type"]  # forced last
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert request.headers["X-Team"] == "art"
    assert json_body(request) == {"input": {"prompt": "a fox", "n": 1, "size": "1536x1024", "quality": "low"}}
    assert result.images == [png_bytes()]


@pytest.mark.parametrize(
    ("model", "path"),
    [
        ("gpt-image-2-free", "openai/gpt-image-2-free"),
        ("gpt-image-1", "openai/gpt-image-1"),
        ("dall-e-3", "openai/dall-e-3"),
        ("openai/gpt-image-1", "openai/gpt-image-1"),
        ("google/imagen-4.0", "google/imagen-4.0"),
        ("flux-kontext-pro", "flux-kontext-pro"),
    ],
)
def test_model_path(model, path):
    assert model_path(model) == path


@pytest.mark.parametrize(
    ("size", "ratio", "expected"),
    [
        ("1024x1536", "16:9", "1024x1536"),
        ("2048X1152", None, "2048X1152"),
        ("2K", "9:16", "1024x1536"),
        (None, "4:3", "1536x1024"),
        (None, "21:9", "auto"),
        (None, None, "auto"),
    ],
)
async def test_size_rule(aihubmix, provider_request, respx_mock, size, ratio, expected):
    route = respx_mock.post(PREDICTIONS).mock(return_value=ok())
    await aihubmix.generate(provider_request(model="gpt-image-2-free", size=size, aspect_ratio=ratio))
    assert json_body(route.calls.last.request)["input"]["size"] == expected


async def test_one_reference_is_a_string_several_a_list(
    aihubmix, provider_request, respx_mock, png_ref, jpeg_ref
):
    route = respx_mock.post(PREDICTIONS).mock(return_value=ok())
    await aihubmix.generate(provider_request(model="gpt-image-2-free", references=[png_ref]))
    assert json_body(route.calls.last.request)["input"]["image"] == png_ref.data_url()
    await aihubmix.generate(provider_request(model="gpt-image-2-free", references=[png_ref, jpeg_ref]))
    assert json_body(route.calls.last.request)["input"]["image"] == [png_ref.data_url(), jpeg_ref.data_url()]


async def test_capabilities_match_what_generate_sends(aihubmix, provider_request, respx_mock, png_ref):
    caps = aihubmix.capabilities("gpt-image-2-free")
    route = respx_mock.post(PREDICTIONS).mock(return_value=ok())

    async def sent(**fields):
        await aihubmix.generate(provider_request(model="gpt-image-2-free", **fields))
        return json_body(route.calls.last.request)["input"]

    assert caps.ratios == frozenset(GPT_IMAGE_SIZES)
    for ratio in caps.ratios:
        assert (await sent(aspect_ratio=ratio))["size"] == GPT_IMAGE_SIZES[ratio]
    assert (await sent(aspect_ratio="21:9"))["size"] == "auto" and "auto" in caps.ratio_fallback
    assert caps.sizes is None and caps.size_overrides_ratio
    assert (await sent(size="1280x720", aspect_ratio="9:16"))["size"] == "1280x720"
    assert (await sent())["n"] == 1
    assert len((await sent(references=[png_ref] * caps.max_references))["image"]) == caps.max_references == 16


@pytest.mark.parametrize(
    ("data", "hits"),
    [
        ({"output": [{"b64_json": B64}]}, [("b64", B64)]),
        (
            {"data": [{"b64_json": B64, "url": "https://cdn.example/a.png"}]},
            [("b64", B64), ("url", "https://cdn.example/a.png")],
        ),
        ({"output": {"images": [{"image_url": {"url": PNG_URL}}]}}, [("url", PNG_URL)]),
        ({"output": [{"imageUrl": "https://cdn.example/b.png"}]}, [("url", "https://cdn.example/b.png")]),
        ({"data": {"image": "http://cdn.example/c.png"}}, [("url", "http://cdn.example/c.png")]),
        (
            {"output": ["https://cdn.example/d.png", PNG_URL, "plain text", 7, None]},
            [("url", "https://cdn.example/d.png"), ("url", PNG_URL)],
        ),
        ({"data": [{"b64_json": {"base64": B64}}]}, [("b64", B64)]),
        ({"output": [{"bytesBase64": "", "bytes_base64": B64, "base64": "ignored"}]}, [("b64", B64)]),
        ({"output": {"output": {"output": [{"url": PNG_URL}]}}}, [("url", PNG_URL)]),
        ({"data": [B64]}, []),  # bare base64 strings are not images in this walk
        ({"images": [PNG_URL], "result": {"url": PNG_URL}}, []),  # only data and output are candidates
        (
            {"data": "https://cdn.example/e.png", "output": [{"url": PNG_URL}]},
            [("url", "https://cdn.example/e.png"), ("url", PNG_URL)],
        ),
    ],
)
def test_find_images_walks_nested_shapes(data, hits):
    assert find_images(data) == hits


def test_find_images_stops_at_pathological_depth():
    node: object = [{"url": PNG_URL}]
    for _ in range(500):
        node = [node]
    assert find_images({"output": node}) == []


async def test_every_hit_is_decoded_or_downloaded(aihubmix, provider_request, respx_mock):
    respx_mock.post(PREDICTIONS).respond(
        200,
        json={
            "data": [{"b64_json": b64(jpeg_bytes()), "url": "https://cdn.aihubmix.example/x.png"}],
            "output": [PNG_URL],
        },
    )
    cdn = respx_mock.get("https://cdn.aihubmix.example/x.png").respond(200, content=png_bytes())
    result = await aihubmix.generate(provider_request(model="gpt-image-2-free"))
    assert cdn.called
    assert result.images == [jpeg_bytes(), png_bytes(), png_bytes()]


@pytest.mark.parametrize("body", [{"output": []}, {"status": "failed"}, {"output": None, "data": {}}])
async def test_no_images_is_provider_unavailable(aihubmix, provider_request, respx_mock, body):
    respx_mock.post(PREDICTIONS).respond(200, json=body)
    with pytest.raises(ProviderUnavailable):
        await aihubmix.generate(provider_request(model="gpt-image-2-free"))
