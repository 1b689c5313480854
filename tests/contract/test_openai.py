"""Contract: providers/openai.py against OpenAI's Images API wire format (docs/providers.md, "openai")."""

from __future__ import annotations

import httpx
import pytest

from core.errors import ProviderUnavailable, Unsupported
from providers.openai import OpenAIProvider, form_fields, openai_size
from tests.contract.shared import SECRET, ProviderSpec, b64, json_body, multipart_parts
from tests.images import jpeg_bytes, png_bytes

BASE = "https://api.openai.com/v1"
GENERATIONS = f"{BASE}/images/generations"
EDITS = f"{BASE}/images/edits"

SPEC = ProviderSpec(OpenAIProvider, "gpt-image-1", GENERATIONS, lambda payload: {"data": [{"b64_json": payload}]},
                    "OpenAI API key is not configured. Set providers.openai.apiKey.")


@pytest.fixture
def openai(make_provider):
    return make_provider(OpenAIProvider, api_key=SECRET)


def ok(*images: bytes) -> httpx.Response:
    return httpx.Response(200, json={"created": 1, "data": [{"b64_json": b64(i)} for i in images]})


async def test_gpt_image_generation_sends_model_prompt_and_size_only(openai, provider_request, respx_mock):
    route = respx_mock.post(GENERATIONS).mock(return_value=ok(png_bytes()))
    result = await openai.generate(provider_request("a fox", "openai/gpt-image-1", aspect_ratio="16:9"))
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert request.headers["Content-Type"] == "application/json"
    assert json_body(request) == {"model": "gpt-image-1", "prompt": "a fox", "size": "1536x1024"}
    assert result.images == [png_bytes()]


async def test_dalle_adds_response_format_and_n(openai, provider_request, respx_mock):
    route = respx_mock.post(GENERATIONS).mock(return_value=ok(jpeg_bytes()))
    result = await openai.generate(provider_request("a fox", "dall-e-3", aspect_ratio="9:16", size="1K"))
    assert json_body(route.calls.last.request) == {
        "model": "dall-e-3",
        "prompt": "a fox",
        "response_format": "b64_json",
        "n": 1,
        "size": "1024x1792",
    }
    assert result.images == [jpeg_bytes()]


async def test_extra_body_is_merged_then_nulls_dropped(make_provider, provider_request, respx_mock):
    provider = make_provider(
        OpenAIProvider,
        api_key=SECRET,
        extra_headers={"OpenAI-Organization": "org-1"},
        extra_body={"response_format": None, "quality": "hd", "size": "1024x1024"},
    )
    route = respx_mock.post(GENERATIONS).mock(return_value=ok(png_bytes()))
    await provider.generate(provider_request("a fox", "dall-e-3", aspect_ratio="16:9"))
    request = route.calls.last.request
    assert json_body(request) == {
        "model": "dall-e-3",
        "prompt": "a fox",
        "n": 1,
        "size": "1024x1024",
        "quality": "hd",
    }
    assert request.headers["OpenAI-Organization"] == "org-1"


async def test_api_base_is_configurable(make_provider, provider_request, respx_mock):
    provider = make_provider(OpenAIProvider, api_key=SECRET, api_base="https://proxy.example.com/v1/")
    route = respx_mock.post("https://proxy.example.com/v1/images/generations").mock(
        return_value=ok(png_bytes())
    )
    await provider.generate(provider_request(model="gpt-image-1"))
    assert route.called


@pytest.mark.parametrize(
    ("model", "size", "ratio", "expected"),
    [
        ("dall-e-2", None, "16:9", "1024x1024"),
        ("dall-e-2", "512x512", "16:9", "512x512"),
        ("dall-e-2", "1K", "1:1", "1024x1024"),
        ("dall-e-3", None, "4:3", "1792x1024"),
        ("dall-e-3", " 1792X1024 ", "1:1", "1792x1024"),
        ("dall-e-3", "1536x1024", "3:4", "1024x1792"),
        ("gpt-image-2", "2048x1152", "1:1", "2048x1152"),
        ("gpt-image-2-mini", "2K", "9:16", "1024x1536"),
        ("gpt-image-1", "auto", "16:9", "auto"),
        ("gpt-image-1", "1792x1024", "4:3", "1536x1024"),
        ("gpt-image-1", None, "21:9", "1024x1024"),
        ("chatgpt-image-latest", None, "3:4", "1024x1536"),
        ("openai_codex/gpt-image-1", None, "9:16", "1024x1536"),
    ],
)
def test_size_table(model, size, ratio, expected):
    assert openai_size(model, size, ratio) == expected


@pytest.mark.parametrize(
    "model",
    ["dall-e-2", "dall-e-3", "gpt-image-1", "gpt-image-2", "chatgpt-image-latest", "some-future-model"],
)
async def test_capabilities_match_what_generate_sends(model, openai, provider_request, respx_mock, png_ref):
    caps = openai.capabilities(model)
    route = respx_mock.post(GENERATIONS).mock(return_value=ok(png_bytes()))

    async def sent_size(size=None, ratio=None):
        await openai.generate(provider_request(model=model, size=size, aspect_ratio=ratio))
        return json_body(route.calls.last.request)["size"]

    if caps.ratios:
        for ratio in caps.ratios:  # each listed ratio is honoured in the orientation it names
            width, height = map(int, (await sent_size(ratio=ratio)).split("x"))
            w, h = map(int, ratio.split(":"))
            assert (width > height) == (w > h) and (width < height) == (w < h)
    assert await sent_size(ratio="21:9") == "1024x1024"  # unlisted ratio: the stated fallback
    assert "1024x1024" in caps.ratio_fallback
    if caps.sizes is None:
        assert await sent_size(size="1280x720", ratio="1:1") == "1280x720"
    else:
        for size in caps.sizes:  # an accepted size overrides the ratio
            assert await sent_size(size=size, ratio="9:16") == size
            assert caps.size_overrides_ratio or caps.ratios == frozenset()
    assert await sent_size(size="1K", ratio="1:1") == "1024x1024"  # unsupported hint: ratio decides
    if caps.max_references == 0:
        with pytest.raises(Unsupported):
            await openai.generate(provider_request(model=model, references=[png_ref]))
    else:
        assert caps.max_references == 16
        edits = respx_mock.post(EDITS).mock(return_value=ok(png_bytes()))
        await openai.generate(provider_request(model=model, references=[png_ref] * caps.max_references))
        parts = multipart_parts(edits.calls.last.request)
        assert sum(part.name == "image[]" for part in parts) == caps.max_references


async def test_references_go_to_edits_as_multipart(
    make_provider, provider_request, respx_mock, png_ref, jpeg_ref
):
    provider = make_provider(
        OpenAIProvider,
        api_key=SECRET,
        extra_headers={"X-Trace": "t1"},
        extra_body={
            "quality": "low",
            "background": None,
            "stream": False,
            "n": 2,
            "moderation": {"level": "low"},
        },
    )
    route = respx_mock.post(EDITS).mock(return_value=ok(png_bytes()))
    result = await provider.generate(
        provider_request("make it blue", "gpt-image-1", aspect_ratio="1:1", references=[png_ref, jpeg_ref])
    )
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert request.headers["X-Trace"] == "t1"
    fields = {p.name: p.data.decode() for p in multipart_parts(request) if p.filename is None}
    assert fields == {
        "model": "gpt-image-1",
        "prompt": "make it blue",
        "size": "1024x1024",
        "quality": "low",
        "stream": "false",
        "n": "2",
    }
    files = [(p.name, p.filename, p.content_type, p.data) for p in multipart_parts(request) if p.filename]
    assert files == [
        ("image[]", "cat.png", "image/png", png_ref.data),
        ("image[]", "dog.jpg", "image/jpeg", jpeg_ref.data),
    ]
    assert result.images == [png_bytes()]


def test_form_fields_stringify_scalars_and_drop_the_rest():
    assert form_fields(
        {"a": True, "b": False, "c": 3, "d": 0.5, "e": "x", "f": None, "g": [1], "h": {}}, "openai"
    ) == {"a": "true", "b": "false", "c": "3", "d": "0.5", "e": "x"}


async def test_dalle_with_references_is_unsupported_without_a_request(openai, provider_request, png_ref):
    with pytest.raises(Unsupported) as caught:
        await openai.generate(provider_request(model="openai/dall-e-3", references=[png_ref]))
    assert "dall-e-3" in str(caught.value) and "GPT Image" in str(caught.value)


async def test_url_answers_are_downloaded(openai, provider_request, respx_mock):
    respx_mock.post(GENERATIONS).respond(
        200,
        json={
            "data": [
                {"url": "https://cdn.example.com/a.png?sig=abc"},
                {"url": f"data:image/png;base64,{b64(jpeg_bytes())}"},
                {"b64_json": "\n".join([b64(png_bytes())[:20], b64(png_bytes())[20:]])},
                "not-an-object",
            ]
        },
    )
    cdn = respx_mock.get("https://cdn.example.com/a.png?sig=abc").respond(200, content=jpeg_bytes())
    result = await openai.generate(provider_request(model="gpt-image-1"))
    assert cdn.called
    assert result.images == [jpeg_bytes(), jpeg_bytes(), png_bytes()]


@pytest.mark.parametrize("body", [{"data": []}, {"data": None}, {"data": "x"}, {"data": [{"url": 7}]}])
async def test_no_images_is_provider_unavailable(openai, provider_request, respx_mock, body):
    respx_mock.post(GENERATIONS).respond(200, json=body)
    with pytest.raises(ProviderUnavailable):
        await openai.generate(provider_request(model="gpt-image-1"))
