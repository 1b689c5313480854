"""Contract: providers/openrouter.py, image output through chat/completions (docs/providers.md, "openrouter")."""

from __future__ import annotations

import httpx
import pytest

from core.errors import ContentPolicy, ProviderUnavailable
from providers.openrouter import OpenRouterProvider
from tests.contract.shared import SECRET, ProviderSpec, b64, json_body
from tests.images import jpeg_bytes, png_bytes

BASE = "https://openrouter.ai/api/v1"
COMPLETIONS = f"{BASE}/chat/completions"
MODEL = "openai/gpt-5.4-image-2"

def data_url_of(payload: str) -> str:
    return f"data:image/png;base64,{payload}"


SPEC = ProviderSpec(
    OpenRouterProvider, MODEL, COMPLETIONS,
    lambda payload: {"choices": [{"message": {"images": [{"image_url": {"url": data_url_of(payload)}}]}}]},
    "OpenRouter API key is not configured. Set providers.openrouter.apiKey.")


@pytest.fixture
def openrouter(make_provider):
    return make_provider(OpenRouterProvider, api_key=SECRET)


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{b64(data)}"


def answer(*urls: str, content: object = "", key: str = "image_url") -> httpx.Response:
    message = {
        "role": "assistant",
        "content": content,
        "images": [{"type": "image_url", key: {"url": url}} for url in urls],
    }
    return httpx.Response(200, json={"choices": [{"message": message, "finish_reason": "stop"}]})


async def test_request_headers_and_body(openrouter, provider_request, respx_mock):
    route = respx_mock.post(COMPLETIONS).mock(
        return_value=answer(data_url(png_bytes()), content="Here you go.")
    )
    result = await openrouter.generate(provider_request("a fox", MODEL, aspect_ratio="16:9", size="2K"))
    request = route.calls.last.request
    assert [
        (k, v)
        for k, v in request.headers.items()
        if k
        in {"authorization", "content-type", "http-referer", "x-openrouter-title", "x-openrouter-categories"}
    ] == [
        ("authorization", f"Bearer {SECRET}"),
        ("content-type", "application/json"),
        ("http-referer", "https://github.com/HKUDS/nanobot"),
        ("x-openrouter-title", "nanobot"),
        ("x-openrouter-categories", "cli-agent,personal-agent"),
    ]
    assert json_body(request) == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "a fox"}],
        "modalities": ["image", "text"],
        "stream": False,
        "image_config": {"aspect_ratio": "16:9", "image_size": "2K"},
    }
    assert result.images == [png_bytes()]
    assert result.text == "Here you go."


@pytest.mark.parametrize(
    ("ratio", "size", "expected"),
    [
        (None, None, None),
        ("21:9", None, {"aspect_ratio": "21:9"}),
        (None, "4K", {"image_size": "4K"}),
        ("", "", None),
    ],
)
async def test_image_config_holds_only_given_keys(
    openrouter, provider_request, respx_mock, ratio, size, expected
):
    route = respx_mock.post(COMPLETIONS).mock(return_value=answer(data_url(png_bytes())))
    await openrouter.generate(provider_request(aspect_ratio=ratio, size=size))
    assert json_body(route.calls.last.request).get("image_config") == expected


async def test_references_become_image_url_parts(openrouter, provider_request, respx_mock, png_ref, jpeg_ref):
    route = respx_mock.post(COMPLETIONS).mock(return_value=answer(data_url(png_bytes())))
    await openrouter.generate(provider_request("swap them", references=[png_ref, jpeg_ref]))
    assert json_body(route.calls.last.request)["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "swap them"},
                {"type": "image_url", "image_url": {"url": png_ref.data_url()}},
                {"type": "image_url", "image_url": {"url": jpeg_ref.data_url()}},
            ],
        }
    ]


async def test_extras_are_merged_last(make_provider, provider_request, respx_mock):
    provider = make_provider(
        OpenRouterProvider,
        api_key=SECRET,
        extra_headers={"X-OpenRouter-Title": "pixbot"},
        extra_body={"image_config": {"image_size": "4K"}, "provider": {"sort": "price"}},
    )
    route = respx_mock.post(COMPLETIONS).mock(return_value=answer(data_url(png_bytes())))
    await provider.generate(provider_request(aspect_ratio="16:9", size="1K"))
    request = route.calls.last.request
    body = json_body(request)
    assert body["image_config"] == {"image_size": "4K"} and body["provider"] == {"sort": "price"}
    assert request.headers["X-OpenRouter-Title"] == "pixbot"


async def test_capabilities_match_what_generate_sends(openrouter, provider_request, respx_mock, png_ref):
    caps = openrouter.capabilities(MODEL)
    assert caps.ratios is None and caps.sizes is None
    route = respx_mock.post(COMPLETIONS).mock(return_value=answer(data_url(png_bytes())))
    for ratio, size in (("7:3", "3K"), ("1:1", "1024x1024"), ("9:21", "512")):  # anything is passed through
        await openrouter.generate(provider_request(aspect_ratio=ratio, size=size))
        assert json_body(route.calls.last.request)["image_config"] == {
            "aspect_ratio": ratio,
            "image_size": size,
        }
    await openrouter.generate(provider_request(references=[png_ref] * caps.max_references))
    content = json_body(route.calls.last.request)["messages"][0]["content"]
    assert sum(part["type"] == "image_url" for part in content) == caps.max_references == 16


async def test_answer_variants(openrouter, provider_request, respx_mock):
    respx_mock.post(COMPLETIONS).respond(
        200,
        json={
            "choices": [
                {
                    "message": {
                        "content": [{"type": "text", "text": "first"}, {"type": "image", "x": 1}],
                        "images": [
                            {"imageUrl": {"url": data_url(jpeg_bytes(), "image/jpeg")}},
                            {"image_url": {"url": "https://cdn.openrouter.example/out.png"}},
                            {"image_url": "not-an-object"},
                            "junk",
                        ],
                    }
                },
                {
                    "message": {
                        "content": "second ",
                        "images": [{"image_url": {"url": data_url(png_bytes())}}],
                    }
                },
                {"message": None},
                "junk",
            ]
        },
    )
    cdn = respx_mock.get("https://cdn.openrouter.example/out.png").respond(200, content=png_bytes())
    result = await openrouter.generate(provider_request())
    assert cdn.called  # pixbot downloads http(s) image URLs that nanobot ignored
    assert result.images == [jpeg_bytes(), png_bytes(), png_bytes()]
    assert result.text == "first\nsecond"


async def test_camel_case_image_url(openrouter, provider_request, respx_mock):
    respx_mock.post(COMPLETIONS).mock(return_value=answer(data_url(png_bytes()), key="imageUrl"))
    assert (await openrouter.generate(provider_request())).images == [png_bytes()]


async def test_text_only_answer_is_no_images(openrouter, provider_request, respx_mock):
    respx_mock.post(COMPLETIONS).mock(
        return_value=answer("data:text/plain;base64,aGk=", content="I can only describe it.")
    )
    with pytest.raises(ProviderUnavailable) as caught:
        await openrouter.generate(provider_request())
    assert caught.value.detail == "openrouter returned no images"


async def test_content_filter_finish_is_content_policy(openrouter, provider_request, respx_mock):
    respx_mock.post(COMPLETIONS).respond(
        200, json={"choices": [{"message": {"content": None}, "finish_reason": "content_filter"}]}
    )
    with pytest.raises(ContentPolicy):
        await openrouter.generate(provider_request())


@pytest.mark.parametrize("body", [{"choices": "none"}, {"choices": [{"message": {"images": {"a": 1}}}]}])
async def test_wrong_shape_choices_are_provider_unavailable(openrouter, provider_request, respx_mock, body):
    respx_mock.post(COMPLETIONS).respond(200, json=body)
    with pytest.raises(ProviderUnavailable):
        await openrouter.generate(provider_request())
