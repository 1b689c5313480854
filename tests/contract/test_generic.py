"""Contract cases every adapter shares, run once per registered provider: HTTP error statuses and transport
failures mapped onto the error taxonomy, unreadable answers, an error inside a 200 body, no images, missing
configuration, error details, and base64 image payloads. Each provider's own file states its wire format
and its ``SPEC`` (tests/contract/shared.py's ProviderSpec), which is all these cases need."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from core.config import ProviderConfig
from core.errors import BadImage, ConfigError, ContentPolicy, InvalidRequest, ProviderUnavailable, QuotaExceeded
from core.payloads import MIN_DECODED_CHARS
from core.provider import ProviderRequest, ProviderResult
from providers.base import HttpProvider
from providers.registry import PROVIDERS
from tests.contract import (
    test_aihubmix,
    test_custom,
    test_gemini,
    test_minimax,
    test_modelscope,
    test_ollama,
    test_openai,
    test_openrouter,
    test_stepfun,
    test_zhipu,
)
from tests.contract.shared import (
    HTTP_ERRORS,
    SECRET,
    TRANSPORT_ERRORS,
    ProviderSpec,
    assert_no_secret,
    b64,
)
from tests.images import jpeg_bytes, noise_png, png_bytes

SPECS: dict[str, ProviderSpec] = {
    module.SPEC.cls.name: module.SPEC
    for module in (test_aihubmix, test_custom, test_gemini, test_minimax, test_modelscope, test_ollama,
                   test_openai, test_openrouter, test_stepfun, test_zhipu)
}

#: Incompressible, so its base64 is far longer than the runs core/payloads.py decodes while parsing.
LARGE = noise_png(64, 64)


def test_every_registered_provider_has_a_spec() -> None:
    assert {name: spec.cls for name, spec in SPECS.items()} == PROVIDERS


@pytest.fixture(params=list(PROVIDERS))
def spec(request: pytest.FixtureRequest) -> ProviderSpec:
    return SPECS[request.param]


@pytest.fixture
def provider(spec: ProviderSpec, http_client: httpx.AsyncClient) -> HttpProvider:
    """Without a downloader: no generic case downloads (an image URL would fail with ProviderUnavailable)."""
    adapter = spec.cls(ProviderConfig(**spec.config), http_client)
    if spec.prepare is not None:
        spec.prepare(adapter)
    return adapter


@pytest.fixture
def generate(spec: ProviderSpec, provider: HttpProvider,
             provider_request: Callable[..., ProviderRequest]) -> Callable[[], Any]:
    async def call() -> ProviderResult:
        return await provider.generate(provider_request("a fox", spec.model))

    return call


# --- errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "headers", "body", "expected", "retry_after"), HTTP_ERRORS)
async def test_http_errors_are_classified(spec: ProviderSpec, generate: Callable[[], Any],
                                          respx_mock: respx.MockRouter, status: int, headers: dict[str, str],
                                          body: Any, expected: type[Exception], retry_after: float | None) -> None:
    respx_mock.post(spec.url).respond(status, headers=headers, json=body)
    with pytest.raises(expected) as caught:
        await generate()
    assert caught.value.retry_after == retry_after
    assert caught.value.provider == spec.cls.name
    assert_no_secret(caught.value)


@pytest.mark.parametrize(("exc", "expected"), TRANSPORT_ERRORS)
async def test_transport_errors_are_classified(spec: ProviderSpec, generate: Callable[[], Any],
                                               respx_mock: respx.MockRouter, exc: Exception,
                                               expected: type[Exception]) -> None:
    respx_mock.post(spec.url).mock(side_effect=exc)
    with pytest.raises(expected) as caught:
        await generate()
    assert caught.value.provider == spec.cls.name
    assert_no_secret(caught.value)


@pytest.mark.parametrize("text", ["<html>gateway</html>", "not json", '{"image": "abc"', ""],
                         ids=["html", "text", "truncated", "empty"])
async def test_non_json_answers_are_provider_unavailable(spec: ProviderSpec, generate: Callable[[], Any],
                                                         respx_mock: respx.MockRouter, text: str) -> None:
    respx_mock.post(spec.url).respond(200, text=text)
    with pytest.raises(ProviderUnavailable) as caught:
        await generate()
    assert "non-JSON body" in (caught.value.detail or "")


@pytest.mark.parametrize("body", ["[]", '["x"]', '[{"b64_json": "x"}]', '"data"', "3", "null"],
                         ids=["empty-list", "list", "list-of-objects", "string", "number", "null"])
async def test_json_that_is_not_an_object_is_provider_unavailable(spec: ProviderSpec, generate: Callable[[], Any],
                                                                  respx_mock: respx.MockRouter, body: str) -> None:
    respx_mock.post(spec.url).respond(200, text=body, headers={"Content-Type": "application/json"})
    with pytest.raises(ProviderUnavailable) as caught:
        await generate()
    assert "expected a JSON object" in (caught.value.detail or "")


@pytest.mark.parametrize(("error", "expected"), [
    ({"message": "Insufficient credits", "code": 402}, QuotaExceeded),
    ({"message": "Your balance is insufficient"}, QuotaExceeded),
    ({"code": "moderation_blocked", "message": "blocked by moderation"}, ContentPolicy),
    ({"message": f"Incorrect API key provided: {SECRET}"}, ProviderUnavailable),
    ("model requires more system memory", ProviderUnavailable),
], ids=["credits", "balance", "moderation", "unclassified", "string"])
async def test_an_error_in_a_200_body_is_classified(spec: ProviderSpec, generate: Callable[[], Any],
                                                    respx_mock: respx.MockRouter, error: Any,
                                                    expected: type[Exception]) -> None:
    spec.answer(respx_mock, spec, {"error": error})
    with pytest.raises(expected) as caught:
        await generate()
    assert type(caught.value) is expected
    assert f"{spec.cls.name} returned no images: " in (caught.value.detail or "")
    assert_no_secret(caught.value)


async def test_an_empty_answer_is_no_images(spec: ProviderSpec, generate: Callable[[], Any],
                                            respx_mock: respx.MockRouter) -> None:
    spec.answer(respx_mock, spec, {})
    with pytest.raises(ProviderUnavailable) as caught:
        await generate()
    assert caught.value.detail == f"{spec.cls.name} returned no images"


async def test_unconfigured_is_a_config_error_before_any_request(
        spec: ProviderSpec, make_provider: Callable[..., HttpProvider],
        provider_request: Callable[..., ProviderRequest], respx_mock: respx.MockRouter) -> None:
    provider = make_provider(spec.cls)
    if spec.config_error is None:
        assert provider.missing() == []
        return
    with pytest.raises(ConfigError) as caught:
        await provider.generate(provider_request("a fox", spec.model))
    assert str(caught.value) == spec.config_error
    assert not respx_mock.calls
    assert provider.missing() == [spec.config_error.removesuffix(".").rsplit(" ", 1)[-1]]  # the key it names


@pytest.mark.parametrize(("body", "said"), [
    ({"error": {"message": "bad width"}}, "bad width"),
    ({"error": "plain string"}, None),
], ids=["error-object", "error-string"])
async def test_error_detail_names_the_provider_and_status(spec: ProviderSpec, generate: Callable[[], Any],
                                                          respx_mock: respx.MockRouter, body: Any,
                                                          said: str | None) -> None:
    """The detail carries ``error.message`` for the adapters that read it, else the body as sent."""
    route = respx_mock.post(spec.url).respond(400, json=body)
    with pytest.raises(InvalidRequest) as caught:
        await generate()
    raw = route.calls.last.response.text
    assert caught.value.detail == f"{spec.cls.name} HTTP 400: {said if spec.detail_is_error_message and said else raw}"


# --- base64 payloads -------------------------------------------------------------------------------------


def _wrapped(data: bytes) -> str:
    """Base64 in 76-character lines, as MIME encoders write it."""
    return base64.encodebytes(data).decode("ascii")


@pytest.mark.parametrize(("payload", "image"), [
    (b64(png_bytes()), png_bytes()),
    (b64(jpeg_bytes()), jpeg_bytes()),
    (b64(LARGE), LARGE),
    (_wrapped(LARGE), LARGE),
], ids=["png", "jpeg", "large", "line-wrapped"])
async def test_base64_images_are_decoded(spec: ProviderSpec, generate: Callable[[], Any],
                                         respx_mock: respx.MockRouter, payload: str, image: bytes) -> None:
    spec.answer(respx_mock, spec, spec.image_answer(payload))
    assert (await generate()).images == [image]


@pytest.mark.parametrize("payload", [
    "%%%not-base64%%%",
    b64(b"plain text, not an image"),
    b64(b"%PDF-1.4 " * 1000),
    "A" * 5001,
], ids=["not-base64", "not-an-image", "large-not-an-image", "large-bad-padding"])
async def test_broken_base64_is_bad_image(spec: ProviderSpec, generate: Callable[[], Any],
                                          respx_mock: respx.MockRouter, payload: str) -> None:
    spec.answer(respx_mock, spec, spec.image_answer(payload))
    with pytest.raises(BadImage) as caught:
        await generate()
    assert caught.value.provider == spec.cls.name


def test_the_large_payloads_are_long_enough_to_be_decoded_while_parsing() -> None:
    assert len(b64(LARGE)) > 2 * MIN_DECODED_CHARS and len(b64(b"%PDF-1.4 " * 1000)) > MIN_DECODED_CHARS

