"""Contract: providers/ollama.py against Ollama's native /api/generate (docs/providers.md, "ollama")."""

from __future__ import annotations

import httpx
import pytest

from core.errors import BadImage, InvalidRequest, ProviderUnavailable, Unsupported
from providers.ollama import OllamaProvider, ollama_dimensions
from tests.contract.shared import SECRET, ProviderSpec, b64, header_order, json_body
from tests.images import jpeg_bytes, png_bytes

GENERATE = "http://localhost:11434/api/generate"
MODEL = "x/z-image-turbo"

#: A key is optional; it is configured so the generic cases also check that it never leaks.
SPEC = ProviderSpec(OllamaProvider, MODEL, GENERATE, lambda payload: {"image": payload}, None,
                    detail_is_error_message=True)


@pytest.fixture
def ollama(make_provider):
    return make_provider(OllamaProvider)


def ok(**fields) -> httpx.Response:
    return httpx.Response(200, json={"model": MODEL, "done": True, **fields})


async def test_request_without_key_has_no_authorization(ollama, provider_request, respx_mock):
    route = respx_mock.post(GENERATE).mock(return_value=ok(image=b64(png_bytes())))
    result = await ollama.generate(provider_request("a fox", MODEL, aspect_ratio="16:9", size="1K"))
    request = route.calls.last.request
    assert "authorization" not in request.headers
    assert request.headers["Content-Type"] == "application/json"
    assert json_body(request) == {"model": MODEL, "prompt": "a fox", "width": 1024, "height": 576, "steps": 0,
                                  "stream": False}
    assert result.images == [png_bytes()]


async def test_no_ratio_and_no_size_is_a_1024_square(ollama, provider_request, respx_mock):
    route = respx_mock.post(GENERATE).mock(return_value=ok(image=b64(png_bytes())))
    await ollama.generate(provider_request("a fox", MODEL))
    body = json_body(route.calls.last.request)
    assert (body["width"], body["height"]) == (1024, 1024)


async def test_extra_body_merges_then_stream_false_is_forced(make_provider, provider_request, respx_mock):
    provider = make_provider(OllamaProvider,
                             extra_body={"seed": 42, "stream": True, "steps": 8, "width": 640})
    route = respx_mock.post(GENERATE).mock(return_value=ok(image=b64(png_bytes())))
    await provider.generate(provider_request("a fox", MODEL, aspect_ratio="1:1"))
    assert json_body(route.calls.last.request) == {"model": MODEL, "prompt": "a fox", "width": 640,
                                                   "height": 1024, "steps": 8, "seed": 42, "stream": False}


async def test_key_goes_after_extra_headers_and_wins(make_provider, provider_request, respx_mock):
    provider = make_provider(OllamaProvider, api_key=SECRET,
                             extra_headers={"authorization": "Bearer other", "X-Proxy": "p"})
    route = respx_mock.post(GENERATE).mock(return_value=ok(image=b64(png_bytes())))
    await provider.generate(provider_request("a fox", MODEL))
    request = route.calls.last.request
    assert request.headers.get_list("Authorization") == [f"Bearer {SECRET}"]
    assert header_order(request, "content-type", "x-proxy", "authorization") == [
        "content-type", "x-proxy", "authorization"]


async def test_extra_headers_apply_without_a_key(make_provider, provider_request, respx_mock):
    provider = make_provider(OllamaProvider, extra_headers={"Authorization": "Basic abc"})
    route = respx_mock.post(GENERATE).mock(return_value=ok(image=b64(png_bytes())))
    await provider.generate(provider_request("a fox", MODEL))
    assert route.calls.last.request.headers["Authorization"] == "Basic abc"


@pytest.mark.parametrize(("api_base", "url"), [
    ("http://localhost:11434/v1/", "http://localhost:11434/api/generate"),
    ("http://gpu.example.com:11434/v1", "http://gpu.example.com:11434/api/generate"),
    ("http://gpu.example.com/ollama/api/", "http://gpu.example.com/ollama/api/generate"),
    ("http://gpu.example.com/custom", "http://gpu.example.com/custom/generate"),
    (None, "http://localhost:11434/api/generate"),
])
async def test_api_base_v1_becomes_api(make_provider, provider_request, respx_mock, api_base, url):
    provider = make_provider(OllamaProvider, api_base=api_base)
    route = respx_mock.post(url).mock(return_value=ok(image=b64(png_bytes())))
    await provider.generate(provider_request("a fox", MODEL))
    assert route.called


@pytest.mark.parametrize(("size", "ratio", "expected"), [
    ("1K", "16:9", (1024, 576)),
    ("1K", "9:16", (576, 1024)),
    ("1K", "4:3", (1024, 768)),
    ("1K", "3:2", (1024, 680)),
    ("1K", "21:9", (1024, 440)),
    ("1K", "4:5", (816, 1024)),
    ("2K", "16:9", (2048, 1152)),
    ("4K", "16:9", (4096, 2304)),
    ("2k", "1:1", (2048, 2048)),
    (None, "16:9", (1024, 576)),
    ("8K", "16:9", (1024, 576)),
    ("512", None, (1024, 1024)),
    ("1K", "0:1", (1024, 1024)),
    ("1K", "wide", (1024, 1024)),
    ("1K", " 16 : 9 ", (1024, 576)),
    ("1K", "100:1", (1024, 8)),
    (" 1536 X 640 ", "9:16", (1536, 640)),
    ("1000x1001", None, (1000, 1001)),
])
def test_dimensions(size, ratio, expected):
    assert ollama_dimensions(size, ratio) == expected


async def test_references_are_refused_before_any_request(ollama, provider_request, png_ref, respx_mock):
    with pytest.raises(Unsupported):
        await ollama.generate(provider_request("edit", MODEL, references=[png_ref]))
    assert not respx_mock.calls


async def test_answer_shapes_are_all_decoded(ollama, provider_request, respx_mock):
    respx_mock.post(GENERATE).respond(200, json={
        "image": b64(png_bytes()),
        "images": [f"data:image/png;base64,{b64(jpeg_bytes())}",
                   [b64(png_bytes(8, 8)), [b64(jpeg_bytes(4, 4))]], 7, None, ""],
        "response": "  done  ",
    })
    result = await ollama.generate(provider_request("a fox", MODEL))
    assert result.images == [png_bytes(), jpeg_bytes(), png_bytes(8, 8), jpeg_bytes(4, 4)]
    assert result.text == "done"


@pytest.mark.parametrize("body", [{"done": True, "response": "no image"}, {"images": []}, {"image": None}])
async def test_answer_without_image_is_unavailable(ollama, provider_request, respx_mock, body):
    respx_mock.post(GENERATE).respond(200, json=body)
    with pytest.raises(ProviderUnavailable):
        await ollama.generate(provider_request("a fox", MODEL))


async def test_broken_data_url_is_bad_image(ollama, provider_request, respx_mock):
    respx_mock.post(GENERATE).respond(200, json={"images": ["data:image/png;base64,!!"]})
    with pytest.raises(BadImage):
        await ollama.generate(provider_request("a fox", MODEL))


async def test_unknown_model_404_detail_is_the_error_text(ollama, provider_request, respx_mock):
    respx_mock.post(GENERATE).respond(404, json={"error": "model 'x/z-image-turbo' not found"})
    with pytest.raises(InvalidRequest) as caught:
        await ollama.generate(provider_request("a fox", MODEL))
    assert "not found" in (caught.value.detail or "")


def test_default_timeout_is_five_minutes(ollama):
    assert ollama.timeout == 300


async def test_capabilities_match_the_wire(ollama, provider_request, respx_mock):
    """Any w:h ratio shapes the request; any size hint is read (WxH verbatim, 1K/2K/4K long side)."""
    caps = ollama.capabilities(MODEL)
    assert (caps.ratios, caps.sizes, caps.max_references) == (None, None, 0)
    assert caps.size_overrides_ratio is False
    route = respx_mock.post(GENERATE).mock(return_value=ok(image=b64(png_bytes())))
    for ratio, size, expected in [("7:3", "2K", (2048, 880)), ("2:5", None, (408, 1024)),
                                  ("16:9", "640x480", (640, 480))]:
        await ollama.generate(provider_request("a fox", MODEL, aspect_ratio=ratio, size=size))
        body = json_body(route.calls.last.request)
        assert (body["width"], body["height"]) == expected
