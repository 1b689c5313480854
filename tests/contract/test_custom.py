"""Contract: providers/custom.py, the generic OpenAI Images endpoint (docs/providers.md, "custom")."""

from __future__ import annotations

import httpx
import pytest

from core.errors import BadImage, InvalidRequest, ProviderUnavailable
from providers.base import GPT_IMAGE_SIZES
from providers.custom import CustomProvider, custom_size
from tests.contract.shared import SECRET, ProviderSpec, b64, json_body, multipart_parts
from tests.images import jpeg_bytes, png_bytes

BASE = "https://images.example.com/v1"
GENERATIONS = f"{BASE}/images/generations"
EDITS = f"{BASE}/images/edits"

SPEC = ProviderSpec(CustomProvider, "test-model", GENERATIONS, lambda payload: {"data": [{"b64_json": payload}]},
                    "Custom image generation API base is not configured. Set providers.custom.apiBase.",
                    config={"api_key": SECRET, "api_base": BASE})


@pytest.fixture
def custom(make_provider):
    return make_provider(CustomProvider, api_key=SECRET, api_base=BASE + "/")


def ok(*images: bytes) -> httpx.Response:
    return httpx.Response(200, json={"data": [{"b64_json": b64(i)} for i in images]})


async def test_request_without_key_has_no_authorization(make_provider, provider_request, respx_mock):
    provider = make_provider(CustomProvider, api_base=BASE)
    route = respx_mock.post(GENERATIONS).mock(return_value=ok(png_bytes()))
    result = await provider.generate(provider_request("a fox", "seedream-4", aspect_ratio="16:9", size="1K"))
    request = route.calls.last.request
    assert "Authorization" not in request.headers
    assert request.headers["Content-Type"] == "application/json"
    assert json_body(request) == {
        "model": "seedream-4",
        "prompt": "a fox",
        "response_format": "b64_json",
        "n": 1,
        "size": "1024x1024",
    }
    assert result.images == [png_bytes()]


async def test_request_with_key_sends_bearer(custom, provider_request, respx_mock):
    route = respx_mock.post(GENERATIONS).mock(return_value=ok(png_bytes()))
    await custom.generate(provider_request())
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize(
    ("size", "ratio", "expected"),
    [
        ("1K", "16:9", "1024x1024"),
        (" 1k ", None, "1024x1024"),
        ("2K", "16:9", "2K"),
        ("3K", None, "3K"),
        ("4K", "1:1", "4K"),
        ("1536x1024", "9:16", "1536x1024"),
        (None, "16:9", "1536x1024"),
        (None, "4:3", "1536x1024"),
        (None, "9:16", "1024x1536"),
        ("  ", "3:4", "1024x1536"),
        (None, "21:9", "1024x1024"),
        (None, None, "1024x1024"),
    ],
)
def test_size_rule(size, ratio, expected):
    assert custom_size(size, ratio) == expected


async def test_extra_body_overrides_response_format_and_size_and_url_is_downloaded(
    make_provider, provider_request, respx_mock
):
    """Agnes AI answers with URLs; Volcengine Ark wants 2K: both via extraBody, merged last."""
    provider = make_provider(
        CustomProvider, api_base=BASE, extra_body={"response_format": "url", "size": "2K"}
    )
    route = respx_mock.post(GENERATIONS).respond(
        200, json={"data": [{"url": "https://cdn.agnes.example/i.png"}]}
    )
    cdn = respx_mock.get("https://cdn.agnes.example/i.png").respond(200, content=png_bytes())
    result = await provider.generate(provider_request("a fox", "agnes-1", aspect_ratio="16:9", size="1K"))
    assert json_body(route.calls.last.request) == {
        "model": "agnes-1",
        "prompt": "a fox",
        "response_format": "url",
        "n": 1,
        "size": "2K",
    }
    assert cdn.called
    assert result.images == [png_bytes()]


@pytest.mark.parametrize("item_key", ["b64_json", "base64"])
async def test_together_base64_answers(make_provider, provider_request, respx_mock, item_key):
    provider = make_provider(CustomProvider, api_base=BASE, extra_body={"response_format": "base64"})
    route = respx_mock.post(GENERATIONS).respond(200, json={"data": [{item_key: b64(jpeg_bytes())}]})
    result = await provider.generate(provider_request())
    assert json_body(route.calls.last.request)["response_format"] == "base64"
    assert result.images == [jpeg_bytes()]


async def test_null_extras_are_sent_as_null(make_provider, provider_request, respx_mock):
    provider = make_provider(
        CustomProvider, api_base=BASE, extra_body={"seed": None, "response_format": None}
    )
    route = respx_mock.post(GENERATIONS).mock(return_value=ok(png_bytes()))
    await provider.generate(provider_request())
    body = json_body(route.calls.last.request)
    assert body["seed"] is None and body["response_format"] is None


async def test_extra_headers_can_override_both_defaults(make_provider, provider_request, respx_mock):
    provider = make_provider(
        CustomProvider,
        api_key=SECRET,
        api_base=BASE,
        extra_headers={"Authorization": "Token other", "Content-Type": "application/json; charset=utf-8"},
    )
    route = respx_mock.post(GENERATIONS).mock(return_value=ok(png_bytes()))
    await provider.generate(provider_request())
    assert route.calls.last.request.headers["Authorization"] == "Token other"
    assert route.calls.last.request.headers.get_list("Content-Type") == ["application/json; charset=utf-8"]


async def test_references_post_multipart_edits(
    make_provider, provider_request, respx_mock, png_ref, jpeg_ref
):
    provider = make_provider(
        CustomProvider,
        api_base=BASE,
        extra_headers={"Content-Type": "application/json", "X-Trace": "t1"},  # JSON type must not leak
        extra_body={"size": "2K", "watermark": False, "guidance": 2.5, "seed": None, "tags": ["a"]},
    )
    route = respx_mock.post(EDITS).mock(return_value=ok(png_bytes()))
    result = await provider.generate(
        provider_request("add a hat", "flux-kontext", size="1K", references=[png_ref, jpeg_ref])
    )
    request = route.calls.last.request
    assert "Authorization" not in request.headers
    assert request.headers["X-Trace"] == "t1"
    parts = multipart_parts(request)
    fields = {p.name: p.data.decode() for p in parts if p.filename is None}
    assert fields == {
        "model": "flux-kontext",
        "prompt": "add a hat",
        "response_format": "b64_json",
        "n": "1",
        "size": "2K",
        "watermark": "false",
        "guidance": "2.5",
    }
    files = [(p.name, p.filename, p.content_type, p.data) for p in parts if p.filename]
    assert files == [
        ("image[]", "cat.png", "image/png", png_ref.data),
        ("image[]", "dog.jpg", "image/jpeg", jpeg_ref.data),
    ]
    assert result.images == [png_bytes()]


async def test_capabilities_match_what_generate_sends(custom, provider_request, respx_mock, png_ref):
    caps = custom.capabilities("any-model")
    assert caps == custom.capabilities("other-model")
    route = respx_mock.post(GENERATIONS).mock(return_value=ok(png_bytes()))

    async def sent_size(size=None, ratio=None):
        await custom.generate(provider_request(size=size, aspect_ratio=ratio))
        return json_body(route.calls.last.request)["size"]

    assert caps.ratios == frozenset(GPT_IMAGE_SIZES)
    for ratio in caps.ratios:  # used when no size is given
        assert await sent_size(ratio=ratio) == GPT_IMAGE_SIZES[ratio]
    assert await sent_size(ratio="21:9") == "1024x1024" and "1024x1024" in caps.ratio_fallback
    assert caps.sizes is None and caps.size_overrides_ratio
    for size in ("2K", "3K", "4K", "1536x1024", "768x768"):  # any hint is passed and beats the ratio
        assert await sent_size(size=size, ratio="9:16") == size
    assert json_body(route.calls.last.request)["n"] == 1
    edits = respx_mock.post(EDITS).mock(return_value=ok(png_bytes()))
    await custom.generate(provider_request(references=[png_ref] * caps.max_references))
    assert sum(p.name == "image[]" for p in multipart_parts(edits.calls.last.request)) == caps.max_references


async def test_unsafe_image_url_is_refused_without_fetching(custom, provider_request, respx_mock):
    respx_mock.post(GENERATIONS).respond(
        200, json={"data": [{"url": "http://169.254.169.254/latest/meta-data"}]}
    )
    with pytest.raises(BadImage):
        await custom.generate(provider_request())
    assert len(respx_mock.calls) == 1


async def test_failed_download_is_provider_unavailable(custom, provider_request, respx_mock):
    respx_mock.post(GENERATIONS).respond(200, json={"data": [{"url": "https://cdn.example.com/gone.png"}]})
    respx_mock.get("https://cdn.example.com/gone.png").respond(404)
    with pytest.raises(ProviderUnavailable):
        await custom.generate(provider_request())


@pytest.mark.parametrize(
    "body", [{"data": []}, {"data": [{"revised_prompt": "x"}]}, {"images": []}]
)
async def test_no_images_is_provider_unavailable(custom, provider_request, respx_mock, body):
    respx_mock.post(GENERATIONS).respond(200, json=body)
    with pytest.raises(ProviderUnavailable) as caught:
        await custom.generate(provider_request())
    assert "custom returned no images" in (caught.value.detail or "")


@pytest.mark.parametrize(("message", "option"), [
    ("Invalid value for size: 4K", "size"),
    ("invalid 'aspect_ratio': 5:1", "aspect ratio"),
    ("something about the prompt", None),
])
async def test_a_400_that_names_an_option_says_which(custom, provider_request, respx_mock, message, option):
    """It used to be "rejected the request. Try a different prompt or options." whatever the provider said."""
    respx_mock.post(GENERATIONS).respond(400, json={"error": {"message": message, "type": "invalid_request_error"}})
    with pytest.raises(InvalidRequest) as caught:
        await custom.generate(provider_request())
    if option is None:
        assert str(caught.value) == "The image service rejected the request. Try a different prompt or options."
    else:
        assert str(caught.value) == f"The image service rejected the {option}. Try another {option}, or leave it out."
