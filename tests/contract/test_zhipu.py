"""Contract: providers/zhipu.py against BigModel's /images/generations (docs/providers.md, "zhipu")."""

from __future__ import annotations

import httpx
import pytest

from core.errors import (
    AuthFailed,
    BadImage,
    ConfigError,
    ContentPolicy,
    InvalidRequest,
    ProviderUnavailable,
    QuotaExceeded,
    RateLimited,
    Unsupported,
)
from providers.zhipu import ZHIPU_SIZES, ZhipuProvider
from tests.contract.shared import SECRET, ProviderSpec, b64, header_order, json_body
from tests.images import jpeg_bytes, png_bytes

BASE = "https://open.bigmodel.cn/api/paas/v4"
GENERATIONS = f"{BASE}/images/generations"
MODEL = "glm-image"
CDN = "https://aigc-files.bigmodel.cn/api/cogview/out.png"

#: Zhipu answers with URLs; ``b64_json`` is read too, so the generic base64 cases use it.
SPEC = ProviderSpec(ZhipuProvider, MODEL, GENERATIONS, lambda payload: {"data": [{"b64_json": payload}]},
                    "Zhipu API key is not configured. Set providers.zhipu.apiKey.")


@pytest.fixture
def zhipu(make_provider):
    return make_provider(ZhipuProvider, api_key=SECRET)


def ok(*urls: str) -> httpx.Response:
    return httpx.Response(200, json={"created": 1, "data": [{"url": u} for u in urls]})


async def test_request_shape_and_url_download(zhipu, provider_request, respx_mock):
    route = respx_mock.post(GENERATIONS).mock(return_value=ok(CDN))
    respx_mock.get(CDN).respond(200, content=png_bytes())
    result = await zhipu.generate(provider_request("a fox", MODEL, aspect_ratio="16:9", size="1K"))
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert header_order(request, "authorization", "content-type") == ["authorization", "content-type"]
    assert request.headers["Content-Type"] == "application/json"
    assert json_body(request) == {"model": MODEL, "prompt": "a fox", "size": "1728x960"}
    assert result.images == [png_bytes()]


@pytest.mark.parametrize(("ratio", "size", "expected"), [
    ("1:1", None, "1280x1280"),
    ("16:9", None, "1728x960"),
    ("9:16", "2K", "960x1728"),
    ("3:4", None, "1088x1472"),
    ("4:3", None, "1472x1088"),
    ("3:2", None, "1280x1280"),
    (None, None, "1280x1280"),
    ("16:9", "1024x1024", "1024x1024"),
])
async def test_size_table(zhipu, provider_request, respx_mock, ratio, size, expected):
    route = respx_mock.post(GENERATIONS).mock(return_value=ok(CDN))
    respx_mock.get(CDN).respond(200, content=png_bytes())
    await zhipu.generate(provider_request("a fox", MODEL, aspect_ratio=ratio, size=size))
    assert json_body(route.calls.last.request)["size"] == expected


async def test_extra_body_and_headers(make_provider, provider_request, respx_mock):
    provider = make_provider(ZhipuProvider, api_key=SECRET, api_base="https://api.z.ai/api/paas/v4/",
                             extra_body={"watermark_enabled": False, "quality": "hd"},
                             extra_headers={"Accept-Language": "en-US,en"})
    route = respx_mock.post("https://api.z.ai/api/paas/v4/images/generations").mock(return_value=ok(CDN))
    respx_mock.get(CDN).respond(200, content=png_bytes())
    await provider.generate(provider_request("a fox", "cogview-4", aspect_ratio="1:1"))
    request = route.calls.last.request
    assert json_body(request) == {"model": "cogview-4", "prompt": "a fox", "size": "1280x1280",
                                  "watermark_enabled": False, "quality": "hd"}
    assert request.headers["Accept-Language"] == "en-US,en"


async def test_key_is_checked_before_references(make_provider, provider_request, png_ref, respx_mock):
    provider = make_provider(ZhipuProvider)
    message = r"Zhipu API key is not configured\. Set providers\.zhipu\.apiKey\."
    with pytest.raises(ConfigError, match=message):
        await provider.generate(provider_request("a fox", MODEL, references=[png_ref]))
    assert not respx_mock.calls


async def test_references_are_refused(zhipu, provider_request, png_ref, respx_mock):
    with pytest.raises(Unsupported):
        await zhipu.generate(provider_request("a fox", MODEL, references=[png_ref]))
    assert not respx_mock.calls


async def test_b64_json_answers_are_accepted_too(zhipu, provider_request, respx_mock):
    respx_mock.post(GENERATIONS).respond(200, json={"data": [{"b64_json": b64(jpeg_bytes())}, {"url": CDN}]})
    respx_mock.get(CDN).respond(200, content=png_bytes())
    result = await zhipu.generate(provider_request("a fox", MODEL))
    assert result.images == [jpeg_bytes(), png_bytes()]


async def test_download_follows_redirect(zhipu, provider_request, respx_mock):
    respx_mock.post(GENERATIONS).mock(return_value=ok(CDN))
    respx_mock.get(CDN).respond(302, headers={"Location": "https://cdn2.bigmodel.cn/final.png"})
    respx_mock.get("https://cdn2.bigmodel.cn/final.png").respond(200, content=jpeg_bytes())
    result = await zhipu.generate(provider_request("a fox", MODEL))
    assert result.images == [jpeg_bytes()]


@pytest.mark.parametrize("url", ["http://127.0.0.1/x.png", "http://169.254.169.254/latest/meta-data",
                                 "http://[::1]/x.png", "http://10.0.0.5/x.png"])
async def test_private_image_urls_are_refused(zhipu, provider_request, respx_mock, url):
    respx_mock.post(GENERATIONS).mock(return_value=ok(url))
    with pytest.raises(BadImage):
        await zhipu.generate(provider_request("a fox", MODEL))
    assert len(respx_mock.calls) == 1  # the private address was never fetched


async def test_download_that_is_not_an_image_is_bad_image(zhipu, provider_request, respx_mock):
    respx_mock.post(GENERATIONS).mock(return_value=ok(CDN))
    respx_mock.get(CDN).respond(200, content=b"<html>expired</html>")
    with pytest.raises(BadImage):
        await zhipu.generate(provider_request("a fox", MODEL))


async def test_failed_download_is_unavailable(zhipu, provider_request, respx_mock):
    respx_mock.post(GENERATIONS).mock(return_value=ok(CDN))
    respx_mock.get(CDN).respond(404)
    with pytest.raises(ProviderUnavailable):
        await zhipu.generate(provider_request("a fox", MODEL))


@pytest.mark.parametrize("body", [{"data": []}, {"data": "x"}, {"data": [{"url": 5}, 3, {"url": ""}]},
                                  {"data": [{"url": "ftp://x/y.png"}]}])
async def test_no_image_or_wrong_shape_is_unavailable(zhipu, provider_request, respx_mock, body):
    respx_mock.post(GENERATIONS).respond(200, json=body)
    with pytest.raises(ProviderUnavailable):
        await zhipu.generate(provider_request("a fox", MODEL))


def bigmodel_error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


@pytest.mark.parametrize(("status", "code", "message", "expected"), [
    (400, "1301", "系统检测到输入或生成内容可能包含不安全或敏感内容。", ContentPolicy),
    (429, "1113", "您的账户已欠费，请充值后重试。", QuotaExceeded),
    (429, "1304", "该API的今日调用次数已达到上限。", QuotaExceeded),
    (429, "1302", "您当前使用该API的并发数过高，请降低并发。", RateLimited),
    (401, "1002", "Authorization Token非法，请确认Authorization Token正确传递。", AuthFailed),
    (400, "1002", "Authorization Token非法", AuthFailed),
    (400, "1214", "size参数非法", InvalidRequest),
    (500, "500", "Internal Error", ProviderUnavailable),
])
async def test_business_codes_refine_the_status(zhipu, provider_request, respx_mock, status, code, message,
                                                expected):
    respx_mock.post(GENERATIONS).respond(status, json=bigmodel_error(code, message))
    with pytest.raises(expected) as caught:
        await zhipu.generate(provider_request("a fox", MODEL))
    assert type(caught.value) is expected
    assert message not in str(caught.value)


async def test_policy_code_in_a_200_body_is_content_policy(zhipu, provider_request, respx_mock):
    respx_mock.post(GENERATIONS).respond(200, json=bigmodel_error("1301", "敏感内容"))
    with pytest.raises(ContentPolicy):
        await zhipu.generate(provider_request("a fox", MODEL))


async def test_capabilities_match_the_wire(zhipu, provider_request, png_ref, respx_mock):
    caps = zhipu.capabilities(MODEL)
    assert caps.ratios == set(ZHIPU_SIZES) and caps.sizes is None and caps.pixel_sizes_only
    assert (caps.max_references, caps.size_overrides_ratio) == (0, True)
    assert zhipu.timeout == 300
    route = respx_mock.post(GENERATIONS).mock(return_value=ok(CDN))
    respx_mock.get(CDN).respond(200, content=png_bytes())
    for ratio in caps.ratios:
        await zhipu.generate(provider_request("a fox", MODEL, aspect_ratio=ratio))
        assert json_body(route.calls.last.request)["size"] == ZHIPU_SIZES[ratio]
    for size in [*ZHIPU_SIZES.values(), "1000x2000"]:  # any WxH is sent verbatim
        await zhipu.generate(provider_request("a fox", MODEL, aspect_ratio="1:1", size=size))
        assert json_body(route.calls.last.request)["size"] == size
    await zhipu.generate(provider_request("a fox", MODEL))
    assert json_body(route.calls.last.request)["size"] == "1280x1280"
    with pytest.raises(Unsupported):
        await zhipu.generate(provider_request("a fox", MODEL, references=[png_ref]))
