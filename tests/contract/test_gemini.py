"""Contract: providers/gemini.py against the Generative Language API (docs/providers.md, "gemini")."""

from __future__ import annotations

import httpx
import pytest

from core.errors import AuthFailed, ContentPolicy, ProviderUnavailable, QuotaExceeded, RateLimited, Unsupported
from core.provider import ReferenceImage
from providers.gemini import IMAGEN_RATIOS, GeminiProvider, flash_max_references, flash_ratios, flash_sizes
from tests.contract.shared import SECRET, ProviderSpec, assert_no_secret, b64, header_order, json_body
from tests.images import jpeg_bytes, png_bytes

BASE = "https://generativelanguage.googleapis.com/v1beta"
FLASH = "gemini-2.5-flash-image"
PRO = "gemini-3-pro-image-preview"
IMAGEN = "imagen-4.0-generate-001"
FLASH_URL = f"{BASE}/models/{FLASH}:generateContent"
IMAGEN_URL = f"{BASE}/models/{IMAGEN}:predict"

SPEC = ProviderSpec(
    GeminiProvider, FLASH, FLASH_URL,
    lambda payload: {"candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png",
                                                                          "data": payload}}]}}]},
    "Gemini API key is not configured. Set providers.gemini.apiKey.", detail_is_error_message=True)


@pytest.fixture
def gemini(make_provider):
    return make_provider(GeminiProvider, api_key=SECRET)


def flash_ok(*images: bytes, text: str | None = None) -> httpx.Response:
    parts: list[dict] = [{"text": text}] if text is not None else []
    parts += [{"inlineData": {"mimeType": "image/png", "data": b64(i)}} for i in images]
    return httpx.Response(200, json={"candidates": [{"content": {"role": "model", "parts": parts},
                                                     "finishReason": "STOP"}]})


def imagen_ok(*images: bytes) -> httpx.Response:
    return httpx.Response(200, json={"predictions": [{"bytesBase64Encoded": b64(i), "mimeType": "image/png"}
                                                     for i in images]})


def refs(n: int) -> tuple[ReferenceImage, ...]:
    return tuple(ReferenceImage(data=png_bytes(8 + i, 8), mime="image/png", name=f"r{i}.png")
                 for i in range(n))


async def test_imagen_request_uses_predict_with_key_header(gemini, provider_request, respx_mock):
    route = respx_mock.post(IMAGEN_URL).mock(return_value=imagen_ok(png_bytes()))
    result = await gemini.generate(provider_request("a fox", IMAGEN, aspect_ratio="16:9", size="2K"))
    request = route.calls.last.request
    assert request.url.query == b""
    assert request.headers["x-goog-api-key"] == SECRET
    assert "authorization" not in request.headers
    assert header_order(request, "x-goog-api-key", "content-type") == ["x-goog-api-key", "content-type"]
    assert request.headers["Content-Type"] == "application/json"
    assert json_body(request) == {"instances": [{"prompt": "a fox"}],
                                  "parameters": {"sampleCount": 1, "aspectRatio": "16:9"}}
    assert result.images == [png_bytes()]


async def test_imagen_omits_unsupported_ratio_and_ignores_size(gemini, provider_request, respx_mock):
    route = respx_mock.post(IMAGEN_URL).mock(return_value=imagen_ok(png_bytes()))
    await gemini.generate(provider_request("a fox", IMAGEN, aspect_ratio="3:2", size="1024x1024"))
    assert json_body(route.calls.last.request)["parameters"] == {"sampleCount": 1}


async def test_imagen_extra_body_replaces_parameters_wholesale(make_provider, provider_request, respx_mock):
    provider = make_provider(GeminiProvider, api_key=SECRET,
                             extra_body={"parameters": {"personGeneration": "x"}},
                             extra_headers={"X-Trace": "t1",
                                            "Content-Type": "application/json; charset=utf-8"})
    route = respx_mock.post(IMAGEN_URL).mock(return_value=imagen_ok(png_bytes()))
    await provider.generate(provider_request("a fox", IMAGEN, aspect_ratio="1:1"))
    request = route.calls.last.request
    assert json_body(request) == {"instances": [{"prompt": "a fox"}], "parameters": {"personGeneration": "x"}}
    assert request.headers["X-Trace"] == "t1"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"


async def test_imagen_refuses_references_without_a_request(gemini, provider_request, png_ref, respx_mock):
    with pytest.raises(Unsupported):
        await gemini.generate(provider_request("a fox", IMAGEN, references=[png_ref]))
    assert not respx_mock.calls


async def test_imagen_rai_filtered_prediction_is_content_policy(gemini, provider_request, respx_mock):
    respx_mock.post(IMAGEN_URL).respond(200, json={"predictions": [{"raiFilteredReason": "violates policy"}]})
    with pytest.raises(ContentPolicy):
        await gemini.generate(provider_request("a fox", IMAGEN))


async def test_imagen_empty_answer_is_unavailable(gemini, provider_request, respx_mock):
    respx_mock.post(IMAGEN_URL).respond(200, json={})
    with pytest.raises(ProviderUnavailable):
        await gemini.generate(provider_request("a fox", IMAGEN))


async def test_flash_sends_references_first_then_text(gemini, provider_request, png_ref, jpeg_ref,
                                                      respx_mock):
    route = respx_mock.post(FLASH_URL).mock(return_value=flash_ok(png_bytes()))
    await gemini.generate(provider_request("make it blue", FLASH, aspect_ratio="16:9", size="2K",
                                           references=[png_ref, jpeg_ref]))
    request = route.calls.last.request
    assert request.headers["x-goog-api-key"] == SECRET
    assert json_body(request) == {
        "contents": [{"role": "user", "parts": [
            {"inlineData": {"mimeType": "image/png", "data": b64(png_ref.data)}},
            {"inlineData": {"mimeType": "image/jpeg", "data": b64(jpeg_ref.data)}},
            {"text": "make it blue"},
        ]}],
        # gemini-2.5-flash-image takes no imageSize: "2K" is dropped.
        "generationConfig": {"responseModalities": ["TEXT", "IMAGE"], "imageConfig": {"aspectRatio": "16:9"}},
    }


@pytest.mark.parametrize(("model", "ratio", "size", "image_config"), [
    (FLASH, None, None, None),
    (FLASH, "7:3", "1K", None),
    (PRO, "21:9", " 2k ", {"aspectRatio": "21:9", "imageSize": "2K"}),
    (PRO, "4:1", "512", None),
    ("gemini-3.1-flash-image-preview", "4:1", "512", {"aspectRatio": "4:1", "imageSize": "512"}),
    ("gemini-3.1-flash-lite-image", "1:8", "2K", {"aspectRatio": "1:8"}),
    ("gemini-3.1-flash-lite-image", None, "1k", {"imageSize": "1K"}),
    ("learnlm-2.0-flash", "1:1", "1K", None),
])
async def test_flash_image_config_only_carries_supported_values(gemini, provider_request, respx_mock,
                                                                model, ratio, size, image_config):
    route = respx_mock.post(f"{BASE}/models/{model}:generateContent").mock(return_value=flash_ok(png_bytes()))
    await gemini.generate(provider_request("a fox", model, aspect_ratio=ratio, size=size))
    generation = json_body(route.calls.last.request)["generationConfig"]
    assert generation["responseModalities"] == ["TEXT", "IMAGE"]
    assert generation.get("imageConfig") == image_config


async def test_flash_extra_body_overrides_top_level(make_provider, provider_request, respx_mock):
    provider = make_provider(GeminiProvider, api_key=SECRET,
                             extra_body={"generationConfig": {"responseModalities": ["IMAGE"]},
                                         "safetySettings": []})
    route = respx_mock.post(FLASH_URL).mock(return_value=flash_ok(png_bytes()))
    await provider.generate(provider_request("a fox", FLASH, aspect_ratio="1:1"))
    body = json_body(route.calls.last.request)
    assert body["generationConfig"] == {"responseModalities": ["IMAGE"]}
    assert body["safetySettings"] == []


async def test_api_base_from_config_replaces_the_default(make_provider, provider_request, respx_mock):
    provider = make_provider(GeminiProvider, api_key=SECRET, api_base="https://proxy.example.com/gemini/")
    route = respx_mock.post(f"https://proxy.example.com/gemini/models/{FLASH}:generateContent").mock(
        return_value=flash_ok(png_bytes()))
    await provider.generate(provider_request("a fox", FLASH))
    assert route.called


def test_default_base_is_native_api_not_openai_compat(gemini):
    assert gemini.base_url == BASE


async def test_flash_answer_collects_camel_and_snake_inline_data_and_text(gemini, provider_request,
                                                                          respx_mock):
    respx_mock.post(FLASH_URL).respond(200, json={"candidates": [
        {"content": {"parts": [
            {"text": "thinking…", "thought": True},
            {"inlineData": {"mimeType": "image/png", "data": b64(png_bytes(4, 4))}, "thought": True},
            {"text": "Here is your fox."},
            {"inlineData": {"mimeType": "image/png", "data": b64(jpeg_bytes())}},
        ]}},
        {"content": {"parts": [{"inline_data": {"mime_type": "image/png", "data": b64(png_bytes())}},
                               {"text": "And another."}]}},
    ]})
    result = await gemini.generate(provider_request("a fox", FLASH))
    assert result.images == [jpeg_bytes(), png_bytes()]
    assert result.text == "Here is your fox.\nAnd another."


async def test_prompt_block_reason_is_content_policy(gemini, provider_request, respx_mock):
    respx_mock.post(FLASH_URL).respond(200, json={"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}})
    with pytest.raises(ContentPolicy) as caught:
        await gemini.generate(provider_request("a fox", FLASH))
    assert "PROHIBITED_CONTENT" in (caught.value.detail or "")
    assert "PROHIBITED_CONTENT" not in str(caught.value)


@pytest.mark.parametrize("reason", ["SAFETY", "PROHIBITED_CONTENT", "IMAGE_SAFETY",
                                    "IMAGE_PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION"])
async def test_refusal_finish_reason_without_image_is_content_policy(gemini, provider_request, respx_mock,
                                                                     reason):
    respx_mock.post(FLASH_URL).respond(200, json={"candidates": [
        {"content": {"parts": [{"text": "I can't make that."}]}, "finishReason": reason}]})
    with pytest.raises(ContentPolicy):
        await gemini.generate(provider_request("a fox", FLASH))


async def test_refusal_finish_reason_with_an_image_still_returns_it(gemini, provider_request, respx_mock):
    respx_mock.post(FLASH_URL).respond(200, json={"candidates": [
        {"content": {"parts": [{"inlineData": {"data": b64(png_bytes())}}]}, "finishReason": "STOP"},
        {"content": {"parts": []}, "finishReason": "IMAGE_SAFETY"}]})
    result = await gemini.generate(provider_request("a fox", FLASH))
    assert result.images == [png_bytes()]


@pytest.mark.parametrize("body", [
    {"candidates": [{"content": {"parts": [{"text": "Sure! What style?"}]}, "finishReason": "STOP"}]},
    {"candidates": [{"content": {"parts": []}, "finishReason": "NO_IMAGE"}]},
    {"candidates": []},
])
async def test_answer_without_image_is_unavailable(gemini, provider_request, respx_mock, body):
    respx_mock.post(FLASH_URL).respond(200, json=body)
    with pytest.raises(ProviderUnavailable):
        await gemini.generate(provider_request("a fox", FLASH))


@pytest.mark.parametrize("body", [
    [], {"candidates": "x"}, {"candidates": [7, {"content": "x"}, {"content": {"parts": "x"}}]},
    {"candidates": [{"content": {"parts": [7, {"inlineData": "x"}, {"inlineData": {"data": 5}}]}}]},
    {"predictions": "x"},
])
async def test_wrong_shape_json_is_unavailable(gemini, provider_request, respx_mock, body):
    respx_mock.post(FLASH_URL).respond(200, json=body)
    respx_mock.post(IMAGEN_URL).respond(200, json=body)
    for model in (FLASH, IMAGEN):
        with pytest.raises(ProviderUnavailable):
            await gemini.generate(provider_request("a fox", model))


def google_error(code: int, status: str, message: str, *details: dict) -> dict:
    return {"error": {"code": code, "message": message, "status": status, "details": list(details)}}


async def test_invalid_key_400_is_auth_failed_and_redacted(gemini, provider_request, respx_mock):
    respx_mock.post(FLASH_URL).respond(400, json=google_error(
        400, "INVALID_ARGUMENT", f"API key not valid: {SECRET}. Please pass a valid API key.",
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}))
    with pytest.raises(AuthFailed) as caught:
        await gemini.generate(provider_request("a fox", FLASH))
    assert_no_secret(caught.value)


async def test_per_minute_429_with_retry_info_is_rate_limited(gemini, provider_request, respx_mock):
    respx_mock.post(FLASH_URL).respond(429, json=google_error(
        429, "RESOURCE_EXHAUSTED", "You exceeded your current quota. Please retry in 37.2s.",
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
         "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}))
    with pytest.raises(RateLimited) as caught:
        await gemini.generate(provider_request("a fox", FLASH))
    assert caught.value.retry_after == 37.0


@pytest.mark.parametrize(("message", "quota_id"), [
    ("You exceeded your current quota. Quota exceeded for metric: x, limit: 0, model: y",
     "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"),
    ("You exceeded your current quota.", "GenerateRequestsPerDayPerProjectPerModel-FreeTier"),
])
async def test_exhausted_or_absent_quota_429_is_quota_exceeded(gemini, provider_request, respx_mock,
                                                               message, quota_id):
    respx_mock.post(FLASH_URL).respond(429, json=google_error(
        429, "RESOURCE_EXHAUSTED", message,
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": quota_id}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}))
    with pytest.raises(QuotaExceeded):
        await gemini.generate(provider_request("a fox", FLASH))


async def test_rate_limit_429_without_retry_after_header_uses_retry_info(gemini, provider_request,
                                                                         respx_mock):
    respx_mock.post(FLASH_URL).respond(429, json=google_error(
        429, "RESOURCE_EXHAUSTED", "Too many requests",
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "5s"}))
    with pytest.raises(RateLimited) as caught:
        await gemini.generate(provider_request("a fox", FLASH))
    assert caught.value.retry_after == 5.0


@pytest.mark.parametrize(("model", "limit"), [(FLASH, 3), (PRO, 14), ("gemini-3.1-flash-image-preview", 14)])
async def test_reference_limits_are_enforced(gemini, provider_request, respx_mock, model, limit):
    route = respx_mock.post(f"{BASE}/models/{model}:generateContent").mock(return_value=flash_ok(png_bytes()))
    await gemini.generate(provider_request("edit", model, references=refs(limit)))
    parts = json_body(route.calls.last.request)["contents"][0]["parts"]
    assert len(parts) == limit + 1
    with pytest.raises(Unsupported):
        await gemini.generate(provider_request("edit", model, references=refs(limit + 1)))
    assert route.call_count == 1


@pytest.mark.parametrize("model", [FLASH, PRO, "gemini-3.1-flash-image-preview",
                                   "gemini-3.1-flash-lite-image", "gemini-2.0-flash-exp", IMAGEN,
                                   "imagen-3.0-generate-002"])
async def test_capabilities_match_the_wire(gemini, provider_request, respx_mock, model):
    """Every advertised ratio/size reaches the wire unchanged; anything else is left out."""
    caps = gemini.capabilities(model)
    imagen = "imagen" in model
    url = f"{BASE}/models/{model}:{'predict' if imagen else 'generateContent'}"
    answer = imagen_ok(png_bytes()) if imagen else flash_ok(png_bytes())
    route = respx_mock.post(url).mock(return_value=answer)

    async def sent(**fields) -> dict:
        await gemini.generate(provider_request("a fox", model, **fields))
        body = json_body(route.calls.last.request)
        if imagen:
            return {k: v for k, v in body["parameters"].items() if k != "sampleCount"}
        return body["generationConfig"].get("imageConfig", {})

    assert caps.ratios is not None and caps.sizes is not None
    for ratio in caps.ratios:
        assert await sent(aspect_ratio=ratio) == {"aspectRatio": ratio}
    for size in caps.sizes:
        assert await sent(size=size) == {"imageSize": size}
    for ratio in {"1:1", "16:9", "3:2", "4:1", "5:4"} - caps.ratios:
        assert await sent(aspect_ratio=ratio) == {}
    for size in {"512", "1K", "2K", "4K", "1024x1024"} - caps.sizes:
        assert await sent(size=size) == {}
    if caps.max_references:
        await gemini.generate(provider_request("a fox", model, references=refs(caps.max_references)))
    else:
        with pytest.raises(Unsupported):
            await gemini.generate(provider_request("a fox", model, references=refs(1)))


def test_capability_tables():
    assert IMAGEN_RATIOS == {"1:1", "9:16", "16:9", "3:4", "4:3"}
    common = {"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"}
    assert flash_ratios("gemini-2.5-flash-image") == common
    assert flash_ratios("Gemini-3.1-Flash-Image-Preview") == common | {"1:4", "4:1", "1:8", "8:1"}
    assert flash_ratios("gemini-3.1-flash-lite-image") == common | {"1:4", "4:1", "1:8", "8:1"}
    assert flash_ratios("my-image-model") == set()
    assert flash_sizes("gemini-2.5-flash-image") == set()
    assert flash_sizes("gemini-3-pro-image-preview") == {"1K", "2K", "4K"}
    assert flash_sizes("gemini-3.1-flash-image-preview") == {"512", "1K", "2K", "4K"}
    assert flash_sizes("gemini-3.1-flash-lite-image") == {"1K"}
    assert (flash_max_references(FLASH), flash_max_references(PRO)) == (3, 14)
