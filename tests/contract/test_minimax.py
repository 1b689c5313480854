"""Contract: providers/minimax.py, /image_generation and its base_resp codes (docs/providers.md, "minimax")."""

from __future__ import annotations

import httpx
import pytest

from core.errors import (
    AuthFailed,
    ContentPolicy,
    InvalidRequest,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExceeded,
    RateLimited,
)
from providers.minimax import ERROR_CODES, RATIOS, MiniMaxProvider
from tests.contract.shared import SECRET, ProviderSpec, assert_no_secret, b64, json_body
from tests.images import jpeg_bytes, png_bytes

URL = "https://api.minimax.io/v1/image_generation"
SUCCESS = {"status_code": 0, "status_msg": "success"}

SPEC = ProviderSpec(MiniMaxProvider, "image-01", URL,
                    lambda payload: {"data": {"image_base64": [payload]}, "base_resp": SUCCESS},
                    "MiniMax API key is not configured. Set providers.minimax.apiKey.")


@pytest.fixture
def minimax(make_provider):
    return make_provider(MiniMaxProvider, api_key=SECRET)


def ok(*images: bytes) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": "03ff3cd0",
            "data": {"image_urls": None, "image_base64": [b64(i) for i in images or [png_bytes()]]},
            "metadata": {"failed_count": "0", "success_count": str(len(images) or 1)},
            "base_resp": SUCCESS,
        },
    )


async def test_request_headers_and_body(minimax, provider_request, respx_mock):
    route = respx_mock.post(URL).mock(return_value=ok(png_bytes(), jpeg_bytes()))
    result = await minimax.generate(provider_request("a fox", "image-01", aspect_ratio="21:9", size="2K"))
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert request.headers["Content-Type"] == "application/json"
    assert json_body(request) == {
        "model": "image-01",
        "prompt": "a fox",
        "response_format": "base64",
        "aspect_ratio": "21:9",
    }
    assert result.images == [png_bytes(), jpeg_bytes()]


@pytest.mark.parametrize("ratio", ["5:4", "1:4", None, ""])
async def test_unsupported_ratio_falls_back_to_square(minimax, provider_request, respx_mock, ratio):
    route = respx_mock.post(URL).mock(return_value=ok())
    await minimax.generate(provider_request(model="image-01", aspect_ratio=ratio))
    assert json_body(route.calls.last.request)["aspect_ratio"] == "1:1"


async def test_references_become_subject_references(minimax, provider_request, respx_mock, png_ref, jpeg_ref):
    route = respx_mock.post(URL).mock(return_value=ok())
    await minimax.generate(provider_request(model="image-01", references=[png_ref, jpeg_ref]))
    assert json_body(route.calls.last.request)["subject_reference"] == [
        {"type": "character", "image_file": png_ref.data_url()},
        {"type": "character", "image_file": jpeg_ref.data_url()},
    ]


async def test_extras_are_merged_last(make_provider, provider_request, respx_mock):
    provider = make_provider(
        MiniMaxProvider,
        api_key=SECRET,
        api_base="https://api.minimaxi.com/v1",
        extra_body={"prompt_optimizer": True, "aspect_ratio": "3:2"},
    )
    route = respx_mock.post("https://api.minimaxi.com/v1/image_generation").mock(return_value=ok())
    await provider.generate(provider_request(model="image-01", aspect_ratio="16:9"))
    body = json_body(route.calls.last.request)
    assert body["prompt_optimizer"] is True and body["aspect_ratio"] == "3:2"


async def test_capabilities_match_what_generate_sends(minimax, provider_request, respx_mock, png_ref):
    caps = minimax.capabilities("image-01")
    route = respx_mock.post(URL).mock(return_value=ok())

    async def sent(**fields):
        await minimax.generate(provider_request(model="image-01", **fields))
        return json_body(route.calls.last.request)

    assert caps.ratios == RATIOS
    for ratio in caps.ratios:
        assert (await sent(aspect_ratio=ratio))["aspect_ratio"] == ratio
    assert (await sent(aspect_ratio="4:5"))["aspect_ratio"] == caps.ratio_fallback == "1:1"
    assert caps.sizes == frozenset()  # size is ignored: the body is the same with or without one
    assert await sent(size="2K", aspect_ratio="16:9") == await sent(aspect_ratio="16:9")
    assert caps.max_references == 1
    assert len((await sent(references=[png_ref]))["subject_reference"]) == 1


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (1002, "rate limit", RateLimited),
        (1039, "token limit", RateLimited),
        (1004, f"authorization failed for {SECRET}", AuthFailed),
        (2049, "invalid api key", AuthFailed),
        (1008, "insufficient balance", QuotaExceeded),
        (1026, "input new_sensitive", ContentPolicy),
        (1027, "output new_sensitive", ContentPolicy),
        (2013, "invalid params, aspect_ratio", InvalidRequest),
        (1000, "unknown error", ProviderUnavailable),
        (1001, "request timeout", ProviderTimeout),
        ("1004", "string code", AuthFailed),
        (4242, "something new", InvalidRequest),
        (4243, "account balance is not enough", QuotaExceeded),
    ],
)
async def test_base_resp_errors_are_classified(
    minimax, provider_request, respx_mock, code, message, expected
):
    respx_mock.post(URL).respond(
        200, json={"data": None, "base_resp": {"status_code": code, "status_msg": message}}
    )
    with pytest.raises(expected) as caught:
        await minimax.generate(provider_request(model="image-01"))
    assert type(caught.value) is expected
    assert caught.value.provider == "minimax"
    assert str(code) in (caught.value.detail or "")
    assert message not in str(caught.value)  # raw provider text stays in detail
    assert_no_secret(caught.value)


def test_error_table_covers_the_brief():
    assert {
        code: cls for code, cls in ERROR_CODES.items() if code in {1002, 1039, 1004, 2049, 1008, 1026, 1027}
    } == {
        1002: RateLimited,
        1039: RateLimited,
        1004: AuthFailed,
        2049: AuthFailed,
        1008: QuotaExceeded,
        1026: ContentPolicy,
        1027: ContentPolicy,
    }


async def test_base_resp_error_wins_over_images(minimax, provider_request, respx_mock):
    respx_mock.post(URL).respond(
        200,
        json={
            "data": {"image_base64": [b64(png_bytes())]},
            "base_resp": {"status_code": 1026, "status_msg": "sensitive"},
        },
    )
    with pytest.raises(ContentPolicy):
        await minimax.generate(provider_request(model="image-01"))


async def test_all_images_withheld_is_content_policy(minimax, provider_request, respx_mock):
    respx_mock.post(URL).respond(
        200,
        json={
            "data": {"image_base64": []},
            "base_resp": SUCCESS,
            "metadata": {"failed_count": "1", "success_count": "0"},
        },
    )
    with pytest.raises(ContentPolicy):
        await minimax.generate(provider_request(model="image-01"))


@pytest.mark.parametrize(
    "body",
    [
        {"data": {"image_base64": []}, "base_resp": SUCCESS},
        {"data": None, "base_resp": SUCCESS},
        {"data": {"image_base64": "abc"}},
        {"data": [b64(png_bytes())], "base_resp": "ok"},
        {"data": {"image_base64": [None, 3]}, "metadata": {"failed_count": "n/a"}},
    ],
)
async def test_no_images_is_provider_unavailable(minimax, provider_request, respx_mock, body):
    respx_mock.post(URL).respond(200, json=body)
    with pytest.raises(ProviderUnavailable):
        await minimax.generate(provider_request(model="image-01"))
