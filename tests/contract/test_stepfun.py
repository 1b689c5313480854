"""Contract: providers/stepfun.py against StepFun's /images/generations (docs/providers.md, "stepfun")."""

from __future__ import annotations

import httpx
import pytest

from core.errors import ProviderUnavailable, Unsupported
from providers.stepfun import STEPFUN_SIZES, StepFunProvider
from tests.contract.shared import SECRET, ProviderSpec, b64, header_order, json_body
from tests.images import jpeg_bytes, png_bytes

BASE = "https://api.stepfun.com/v1"
GENERATIONS = f"{BASE}/images/generations"
EDIT2 = "step-image-edit-2"
ONE_X = "step-1x-medium"

SPEC = ProviderSpec(StepFunProvider, EDIT2, GENERATIONS, lambda payload: {"data": [{"b64_json": payload}]},
                    "StepFun API key is not configured. Set providers.stepfun.apiKey.")


@pytest.fixture
def stepfun(make_provider):
    return make_provider(StepFunProvider, api_key=SECRET)


def ok(*images: bytes) -> httpx.Response:
    return httpx.Response(200, json={"created": 1, "data": [{"b64_json": b64(i), "finish_reason": "success"}
                                                            for i in images]})


async def test_request_shape(stepfun, provider_request, respx_mock):
    route = respx_mock.post(GENERATIONS).mock(return_value=ok(png_bytes()))
    result = await stepfun.generate(provider_request("a fox", EDIT2, aspect_ratio="16:9", size="1K"))
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert request.headers["Content-Type"] == "application/json"
    assert header_order(request, "authorization", "content-type") == ["authorization", "content-type"]
    assert json_body(request) == {"model": EDIT2, "prompt": "a fox", "response_format": "b64_json", "n": 1,
                                  "size": "1280x800"}
    assert result.images == [png_bytes()]


@pytest.mark.parametrize(("ratio", "size", "expected"), [
    ("1:1", None, "1024x1024"),
    ("16:9", None, "1280x800"),
    ("9:16", "2K", "800x1280"),
    ("3:4", None, "768x1360"),
    ("4:3", "1K", "1360x768"),
    ("21:9", None, "1024x1024"),
    (None, None, "1024x1024"),
    ("16:9", "512x512", "512x512"),
    ("1:1", "1280X800", "1280X800"),
])
async def test_size_table(stepfun, provider_request, respx_mock, ratio, size, expected):
    route = respx_mock.post(GENERATIONS).mock(return_value=ok(png_bytes()))
    await stepfun.generate(provider_request("a fox", EDIT2, aspect_ratio=ratio, size=size))
    assert json_body(route.calls.last.request)["size"] == expected


async def test_extra_body_and_headers_win(make_provider, provider_request, respx_mock):
    provider = make_provider(StepFunProvider, api_key=SECRET, api_base="https://api.stepfun.ai/step_plan/v1/",
                             extra_body={"size": "768x768", "seed": 7, "steps": 30},
                             extra_headers={"X-Trace": "t"})
    route = respx_mock.post("https://api.stepfun.ai/step_plan/v1/images/generations").mock(
        return_value=ok(png_bytes()))
    await provider.generate(provider_request("a fox", EDIT2, aspect_ratio="16:9"))
    request = route.calls.last.request
    assert json_body(request) == {"model": EDIT2, "prompt": "a fox", "response_format": "b64_json", "n": 1,
                                  "size": "768x768", "seed": 7, "steps": 30}
    assert request.headers["X-Trace"] == "t"


async def test_1x_model_sends_first_reference_as_style_reference(stepfun, provider_request, jpeg_ref,
                                                                 respx_mock):
    route = respx_mock.post(GENERATIONS).mock(return_value=ok(png_bytes()))
    await stepfun.generate(provider_request("in this style", ONE_X, aspect_ratio="1:1",
                                            references=[jpeg_ref]))
    body = json_body(route.calls.last.request)
    assert body["style_reference"] == {"source_url": f"data:image/jpeg;base64,{b64(jpeg_ref.data)}"}
    assert list(body) == ["model", "prompt", "response_format", "n", "size", "style_reference"]


async def test_1x_model_without_references_sends_no_style_reference(stepfun, provider_request, respx_mock):
    route = respx_mock.post(GENERATIONS).mock(return_value=ok(png_bytes()))
    await stepfun.generate(provider_request("a fox", "Step-1X-Medium"))
    assert "style_reference" not in json_body(route.calls.last.request)


async def test_1x_model_refuses_a_second_reference(stepfun, provider_request, png_ref, jpeg_ref, respx_mock):
    with pytest.raises(Unsupported):
        await stepfun.generate(provider_request("a fox", ONE_X, references=[png_ref, jpeg_ref]))
    assert not respx_mock.calls


async def test_other_models_refuse_references_instead_of_dropping_them(stepfun, provider_request, png_ref,
                                                                       respx_mock):
    with pytest.raises(Unsupported):
        await stepfun.generate(provider_request("a fox", EDIT2, references=[png_ref]))
    assert not respx_mock.calls


async def test_several_b64_images_are_decoded(stepfun, provider_request, respx_mock):
    respx_mock.post(GENERATIONS).mock(return_value=ok(png_bytes(), jpeg_bytes()))
    result = await stepfun.generate(provider_request("a fox", EDIT2))
    assert result.images == [png_bytes(), jpeg_bytes()]


async def test_url_answer_from_extra_body_response_format_is_downloaded(make_provider, provider_request,
                                                                        respx_mock):
    provider = make_provider(StepFunProvider, api_key=SECRET, extra_body={"response_format": "url"})
    respx_mock.post(GENERATIONS).respond(200, json={"data": [{"url": "https://res.stepfun.com/i/a.png"}]})
    respx_mock.get("https://res.stepfun.com/i/a.png").respond(200, content=jpeg_bytes())
    result = await provider.generate(provider_request("a fox", EDIT2))
    assert result.images == [jpeg_bytes()]


@pytest.mark.parametrize("body", [{"data": []}, {"data": None}, {"data": "x"}, {"data": [7, {"b64_json": 3}]}])
async def test_no_image_or_wrong_shape_is_unavailable(stepfun, provider_request, respx_mock, body):
    respx_mock.post(GENERATIONS).respond(200, json=body)
    with pytest.raises(ProviderUnavailable):
        await stepfun.generate(provider_request("a fox", EDIT2))


@pytest.mark.parametrize("model", [EDIT2, ONE_X])
async def test_capabilities_match_the_wire(stepfun, provider_request, png_ref, respx_mock, model):
    caps = stepfun.capabilities(model)
    assert caps.ratios == set(STEPFUN_SIZES) and caps.sizes is None and caps.pixel_sizes_only
    assert caps.size_overrides_ratio
    route = respx_mock.post(GENERATIONS).mock(return_value=ok(png_bytes()))
    for ratio in caps.ratios:
        await stepfun.generate(provider_request("a fox", model, aspect_ratio=ratio))
        assert json_body(route.calls.last.request)["size"] == STEPFUN_SIZES[ratio]
    for size in [*STEPFUN_SIZES.values(), "1000x2000"]:  # any WxH is sent verbatim
        await stepfun.generate(provider_request("a fox", model, aspect_ratio="1:1", size=size))
        assert json_body(route.calls.last.request)["size"] == size
    await stepfun.generate(provider_request("a fox", model))
    assert json_body(route.calls.last.request)["size"] == "1024x1024"  # the ratio fallback
    if caps.max_references:
        assert caps.max_references == 1
        await stepfun.generate(provider_request("a fox", model, references=[png_ref]))
        assert "style_reference" in json_body(route.calls.last.request)
    else:
        with pytest.raises(Unsupported):
            await stepfun.generate(provider_request("a fox", model, references=[png_ref]))
