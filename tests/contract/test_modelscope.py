"""Contract: providers/modelscope.py against ModelScope API-Inference's async image tasks
(docs/providers.md, "modelscope"), polled on a fake clock."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from core.errors import AuthFailed, ContentPolicy, ProviderTimeout, ProviderUnavailable, Unsupported
from core.provider import ReferenceImage
from providers.modelscope import MODELSCOPE_SIZES, ModelScopeProvider
from tests.contract.shared import SECRET, ProviderSpec, b64, header_order, json_body
from tests.images import jpeg_bytes, png_bytes

BASE = "https://api-inference.modelscope.cn/v1"
SUBMIT = f"{BASE}/images/generations"
TASK = f"{BASE}/tasks/t-1"
MODEL = "Qwen/Qwen-Image-2512"
EDIT_MODEL = "Qwen/Qwen-Image-Edit-2509"
OUT = "https://muse-ai.oss-cn-hangzhou.aliyuncs.com/img/out.png"


class FakeClock:
    """Time moves only when the provider sleeps, so polling runs instantly and exactly."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def build(make_provider, clock):
    def build(**config) -> ModelScopeProvider:
        provider = make_provider(ModelScopeProvider, **({"api_key": SECRET} | config))
        provider.sleep = clock.sleep
        provider.clock = clock.time
        return provider

    return build


@pytest.fixture
def modelscope(build):
    return build()


def submitted(task_id: str = "t-1") -> httpx.Response:
    return httpx.Response(200, json={"task_id": task_id, "request_id": "r-1"})


def status(value: str, **fields) -> httpx.Response:
    return httpx.Response(200, json={"task_status": value, "request_id": "r-2", **fields})


def succeed(*outputs: str) -> httpx.Response:
    return status("SUCCEED", output_images=list(outputs))


def _answer_by_polling(router: respx.MockRouter, spec: ProviderSpec, body: Any) -> None:
    """The task is accepted, and the first poll finds it done with ``body``."""
    router.post(SUBMIT).mock(return_value=submitted())
    router.get(TASK).mock(return_value=status("SUCCEED", **body))


def _on_a_fake_clock(provider: ModelScopeProvider) -> None:
    clock = FakeClock()
    provider.sleep = clock.sleep
    provider.clock = clock.time


SPEC = ProviderSpec(ModelScopeProvider, MODEL, SUBMIT,
                    lambda payload: {"output_images": [f"data:image/png;base64,{payload}"]},
                    "ModelScope API key is not configured. Set providers.modelscope.apiKey.",
                    detail_is_error_message=True, answer=_answer_by_polling, prepare=_on_a_fake_clock)


async def test_submit_then_poll_wire_format(build, provider_request, respx_mock):
    provider = build(extra_headers={"X-Trace": "t"})
    submit = respx_mock.post(SUBMIT).mock(return_value=submitted())
    poll = respx_mock.get(TASK).mock(return_value=succeed(OUT))
    respx_mock.get(OUT).respond(200, content=png_bytes())
    result = await provider.generate(provider_request("a fox", MODEL, aspect_ratio="16:9", size="1K"))

    request = submit.calls.last.request
    assert header_order(request, "authorization", "content-type", "x-modelscope-async-mode", "x-trace") == [
        "authorization", "content-type", "x-modelscope-async-mode", "x-trace"]
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert request.headers["X-ModelScope-Async-Mode"] == "true"
    assert json_body(request) == {"model": MODEL, "prompt": "a fox", "size": "1664x928"}

    request = poll.calls.last.request
    assert request.method == "GET"
    assert header_order(request, "authorization", "x-modelscope-task-type", "x-trace") == [
        "authorization", "x-modelscope-task-type", "x-trace"]
    assert request.headers["X-ModelScope-Task-Type"] == "image_generation"
    assert "x-modelscope-async-mode" not in request.headers
    assert result.images == [png_bytes()]


@pytest.mark.parametrize(("ratio", "size", "expected"), [
    ("1:1", None, "1328x1328"),
    ("16:9", None, "1664x928"),
    ("9:16", "2K", "928x1664"),
    ("3:4", None, "1140x1472"),
    ("4:3", None, "1472x1140"),
    ("21:9", None, "1024x1024"),
    (None, None, "1024x1024"),
    ("16:9", "1024x1024", "1024x1024"),
])
async def test_size_table(modelscope, provider_request, respx_mock, ratio, size, expected):
    route = respx_mock.post(SUBMIT).mock(return_value=submitted())
    respx_mock.get(TASK).mock(return_value=succeed(f"data:image/png;base64,{b64(png_bytes())}"))
    await modelscope.generate(provider_request("a fox", MODEL, aspect_ratio=ratio, size=size))
    assert json_body(route.calls.last.request)["size"] == expected


async def test_extra_body_is_merged_last(build, provider_request, respx_mock):
    provider = build(extra_body={"size": "512x512", "steps": 30, "model": "MusePublic/489_ckpt_FLUX_1"})
    route = respx_mock.post(SUBMIT).mock(return_value=submitted())
    respx_mock.get(TASK).mock(return_value=succeed(f"data:image/png;base64,{b64(png_bytes())}"))
    await provider.generate(provider_request("a fox", MODEL, aspect_ratio="1:1"))
    assert json_body(route.calls.last.request) == {"model": "MusePublic/489_ckpt_FLUX_1", "prompt": "a fox",
                                                   "size": "512x512", "steps": 30}


async def test_one_reference_is_a_data_url_string(modelscope, provider_request, png_ref, respx_mock):
    route = respx_mock.post(SUBMIT).mock(return_value=submitted())
    respx_mock.get(TASK).mock(return_value=succeed(f"data:image/png;base64,{b64(png_bytes())}"))
    await modelscope.generate(provider_request("edit", "Qwen/Qwen-Image-Edit-2509", references=[png_ref]))
    assert json_body(route.calls.last.request)["image_url"] == f"data:image/png;base64,{b64(png_ref.data)}"


async def test_several_references_are_a_list(modelscope, provider_request, png_ref, jpeg_ref, respx_mock):
    route = respx_mock.post(SUBMIT).mock(return_value=submitted())
    respx_mock.get(TASK).mock(return_value=succeed(f"data:image/png;base64,{b64(png_bytes())}"))
    await modelscope.generate(provider_request("edit", MODEL, references=[png_ref, jpeg_ref, png_ref]))
    assert json_body(route.calls.last.request)["image_url"] == [png_ref.data_url(), jpeg_ref.data_url(),
                                                                png_ref.data_url()]


async def test_more_than_three_references_are_refused(modelscope, provider_request, png_ref, respx_mock):
    with pytest.raises(Unsupported):
        await modelscope.generate(provider_request("edit", MODEL, references=[png_ref] * 4))
    assert not respx_mock.calls


async def test_polls_with_backoff_until_succeed(modelscope, provider_request, clock, respx_mock):
    respx_mock.post(SUBMIT).mock(return_value=submitted())
    poll = respx_mock.get(TASK).mock(side_effect=[status("PENDING"), status("RUNNING"), status("PROCESSING"),
                                                  succeed(f"data:image/jpeg;base64,{b64(jpeg_bytes())}")])
    result = await modelscope.generate(provider_request("a fox", MODEL))
    assert result.images == [jpeg_bytes()]
    assert poll.call_count == 4
    assert clock.sleeps == [1.0, 1.5, 2.25, 3.375]


async def test_backoff_is_capped(modelscope, provider_request, clock, respx_mock):
    respx_mock.post(SUBMIT).mock(return_value=submitted())
    respx_mock.get(TASK).mock(side_effect=[status("RUNNING")] * 9 + [succeed(OUT)])
    respx_mock.get(OUT).respond(200, content=png_bytes())
    await modelscope.generate(provider_request("a fox", MODEL))
    assert max(clock.sleeps) == 10.0
    assert clock.sleeps[-3:] == [10.0, 10.0, 10.0]


async def test_transport_and_server_errors_while_polling_are_retried(modelscope, provider_request, clock,
                                                                     respx_mock):
    respx_mock.post(SUBMIT).mock(return_value=submitted())
    poll = respx_mock.get(TASK).mock(side_effect=[
        httpx.Response(429, headers={"Retry-After": "6"}), httpx.ConnectError("reset"),
        httpx.ReadTimeout("slow"), httpx.Response(503), httpx.Response(200, text="<html>"), succeed(OUT)])
    respx_mock.get(OUT).respond(200, content=png_bytes())
    result = await modelscope.generate(provider_request("a fox", MODEL))
    assert result.images == [png_bytes()]
    assert poll.call_count == 6
    assert clock.sleeps == [1.0, 6.0, 9.0, 10.0, 10.0, 10.0]  # Retry-After 6 raised the wait


async def test_auth_error_while_polling_is_not_retried(modelscope, provider_request, respx_mock):
    respx_mock.post(SUBMIT).mock(return_value=submitted())
    poll = respx_mock.get(TASK).mock(side_effect=[status("PENDING"),
                                                  httpx.Response(401, json={"error": "x"})])
    with pytest.raises(AuthFailed):
        await modelscope.generate(provider_request("a fox", MODEL))
    assert poll.call_count == 2


async def test_budget_exhausted_is_timeout(build, provider_request, clock, respx_mock):
    provider = build(timeout=30)
    respx_mock.post(SUBMIT).mock(return_value=submitted())
    poll = respx_mock.get(TASK).mock(return_value=status("RUNNING"))
    start = clock.now
    with pytest.raises(ProviderTimeout) as caught:
        await provider.generate(provider_request("a fox", MODEL))
    assert clock.now - start == pytest.approx(30)
    assert sum(clock.sleeps) == pytest.approx(30)
    assert poll.call_count == len(clock.sleeps) - 1  # the last sleep reaches the deadline; no poll after it
    assert "RUNNING" in (caught.value.detail or "")


async def test_default_budget_is_the_provider_timeout(modelscope, provider_request, clock, respx_mock):
    respx_mock.post(SUBMIT).mock(return_value=submitted())
    respx_mock.get(TASK).mock(side_effect=httpx.ConnectError("down"))
    with pytest.raises(ProviderTimeout) as caught:
        await modelscope.generate(provider_request("a fox", MODEL))
    assert sum(clock.sleeps) == pytest.approx(300)
    assert "ConnectError" in (caught.value.detail or "")


@pytest.mark.parametrize(("body", "expected"), [
    ({"errors": {"code": 422, "message": "Output data may contain inappropriate content."}}, ContentPolicy),
    ({"errors": {"message": "Input contains sensitive words"}}, ContentPolicy),
    ({"errors": {"message": "GPU worker crashed"}}, ProviderUnavailable),
    ({"error": "internal failure"}, ProviderUnavailable),
    ({}, ProviderUnavailable),
])
async def test_failed_task_is_classified(modelscope, provider_request, respx_mock, body, expected):
    respx_mock.post(SUBMIT).mock(return_value=submitted())
    respx_mock.get(TASK).mock(return_value=status("FAILED", **body))
    with pytest.raises(expected) as caught:
        await modelscope.generate(provider_request("a fox", MODEL))
    assert type(caught.value) is expected
    assert "t-1" in (caught.value.detail or "")


@pytest.mark.parametrize("body", [{"request_id": "r"}, {"task_id": ""}, {"task_id": None}, {"task_id": True},
                                  {"task_id": {"id": 1}}])
async def test_submit_without_task_id_is_unavailable(modelscope, provider_request, respx_mock, body):
    respx_mock.post(SUBMIT).respond(200, json=body)
    with pytest.raises(ProviderUnavailable) as caught:
        await modelscope.generate(provider_request("a fox", MODEL))
    assert "did not return a task_id" in (caught.value.detail or "")


async def test_numeric_task_id_is_accepted(modelscope, provider_request, respx_mock):
    respx_mock.post(SUBMIT).respond(200, json={"task_id": 77})
    respx_mock.get(f"{BASE}/tasks/77").mock(return_value=succeed(OUT))
    respx_mock.get(OUT).respond(200, content=png_bytes())
    assert (await modelscope.generate(provider_request("a fox", MODEL))).images == [png_bytes()]


async def test_output_images_mix_data_urls_and_downloads(modelscope, provider_request, respx_mock):
    respx_mock.post(SUBMIT).mock(return_value=submitted())
    respx_mock.get(TASK).mock(return_value=succeed(OUT, f"data:image/jpeg;base64,{b64(jpeg_bytes())}"))
    respx_mock.get(OUT).respond(200, content=png_bytes())
    result = await modelscope.generate(provider_request("a fox", MODEL))
    assert result.images == [png_bytes(), jpeg_bytes()]


@pytest.mark.parametrize("outputs", [[], None, "x", [3, None, "not-a-url"]])
async def test_succeed_without_images_is_unavailable(modelscope, provider_request, respx_mock, outputs):
    respx_mock.post(SUBMIT).mock(return_value=submitted())
    respx_mock.get(TASK).mock(return_value=status("SUCCEED", output_images=outputs))
    with pytest.raises(ProviderUnavailable):
        await modelscope.generate(provider_request("a fox", MODEL))


async def test_wrong_shape_poll_answer_fails_at_once(modelscope, provider_request, respx_mock):
    respx_mock.post(SUBMIT).mock(return_value=submitted())
    poll = respx_mock.get(TASK).respond(200, json=["RUNNING"])
    with pytest.raises(ProviderUnavailable):
        await modelscope.generate(provider_request("a fox", MODEL))
    assert poll.call_count == 1


async def test_capabilities_match_the_wire(modelscope, provider_request, respx_mock):
    caps = modelscope.capabilities(MODEL)
    assert caps.ratios == set(MODELSCOPE_SIZES) and caps.sizes is None and caps.pixel_sizes_only
    assert (caps.max_references, caps.size_overrides_ratio) == (0, True)
    route = respx_mock.post(SUBMIT).mock(return_value=submitted())
    respx_mock.get(TASK).mock(return_value=succeed(f"data:image/png;base64,{b64(png_bytes())}"))
    for ratio in caps.ratios:
        await modelscope.generate(provider_request("a fox", MODEL, aspect_ratio=ratio))
        assert json_body(route.calls.last.request)["size"] == MODELSCOPE_SIZES[ratio]
    for size in [*MODELSCOPE_SIZES.values(), "1000x2000"]:  # any WxH is sent verbatim
        await modelscope.generate(provider_request("a fox", MODEL, aspect_ratio="1:1", size=size))
        assert json_body(route.calls.last.request)["size"] == size
    edit = modelscope.capabilities(EDIT_MODEL)
    references = [ReferenceImage(data=png_bytes(), mime="image/png")] * edit.max_references
    await modelscope.generate(provider_request("a fox", EDIT_MODEL, references=references))
    assert len(json_body(route.calls.last.request)["image_url"]) == edit.max_references


@pytest.mark.parametrize(("model", "references"), [
    ("Qwen/Qwen-Image-2512", 0), ("Qwen/Qwen-Image", 0), ("qwen/qwen-image-2512", 0),
    ("Qwen/Qwen-Image-Edit", 3), ("Qwen/Qwen-Image-Edit-2509", 3), ("black-forest-labs/FLUX.1-Kontext-dev", 3),
])
def test_text_only_qwen_image_models_take_no_references(modelscope, model, references):
    """The default model draws from text only, so an edit goes to a fallback or is refused, never
    sent to a model that would ignore the image; other models keep nanobot's behaviour (sent)."""
    assert modelscope.capabilities(model).max_references == references
