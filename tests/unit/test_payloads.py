"""Big base64 images in provider JSON are decoded straight from the body, and every adapter copes."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bots.app import open_service
from core.config_file import load_config
from core.models import ChatRef, ImageRequest, Reference
from core.payloads import MIN_DECODED_CHARS, DecodedBase64, parse_json
from tests.fakes.fake_provider import PROVIDER_PREFIXES, FakeProvider
from tests.images import noise_png, png_bytes

BIG = noise_png(200, 200)  # ~120 KB: far above MIN_DECODED_CHARS once in base64


def test_long_strings_are_decoded_and_short_ones_stay() -> None:
    small = base64.b64encode(png_bytes()).decode()
    body = json.dumps({"data": [{"b64_json": base64.b64encode(BIG).decode()}, {"b64_json": small}],
                       "url": "data:image/png;base64," + base64.b64encode(BIG).decode(),
                       "list": [base64.b64encode(BIG).decode(), 1]}).encode()
    data = parse_json(bytearray(body))
    assert data["data"][0]["b64_json"] == DecodedBase64(BIG)
    assert data["data"][1]["b64_json"] == small
    assert data["url"] == DecodedBase64(BIG, "image/png")
    assert data["list"] == [DecodedBase64(BIG), 1]
    assert "bytes" not in repr(data["url"]) and len(repr(data)) < 500  # the image bytes stay out of logs


def test_unusual_strings_fall_back_to_plain_json() -> None:
    escaped = json.dumps({"b64_json": base64.encodebytes(BIG).decode()}).encode()  # has \n escapes
    assert base64.b64decode(parse_json(escaped)["b64_json"]) == BIG
    bad_padding = b'{"b64_json": "' + b"A" * (MIN_DECODED_CHARS + 1) + b'"}'
    assert len(parse_json(bad_padding)["b64_json"]) == MIN_DECODED_CHARS + 1
    as_key = json.dumps({base64.b64encode(BIG).decode(): 1}).encode()
    assert parse_json(as_key) == json.loads(as_key)


def test_an_object_like_the_placeholder_is_left_alone() -> None:
    body = json.dumps({"a": {"\x00decoded": 5}, "b": base64.b64encode(BIG).decode()}).encode()
    assert parse_json(body) == {"a": {"\x00decoded": 5}, "b": DecodedBase64(BIG)}


def test_invalid_json_still_raises_value_error() -> None:
    with pytest.raises(ValueError):
        parse_json(b'{"b64_json": "' + base64.b64encode(BIG) + b'", ')


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(image_bytes=400_000) as server:
        yield server


@pytest.mark.parametrize("provider", PROVIDER_PREFIXES)
async def test_every_adapter_stores_a_large_image_intact(provider: str, fake: FakeProvider, tmp_path: Path) -> None:
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps({
        "providers": {provider: {"apiKey": "k", "apiBase": fake.api_base(provider)}},
        "tools": {"imageGeneration": {"provider": provider, "model": _model(provider)},
                  "ssrfWhitelist": ["127.0.0.0/8"]},
    }))
    async with open_service(load_config(config_path, env_file=None)) as service:
        if provider == "modelscope":
            service.providers[provider].sleep = _no_sleep  # type: ignore[attr-defined]
        result = await service.submit(ImageRequest("a fox", ChatRef("cli", "t")), enforce_limits=False)
        assert result.ok, result.errors
        stored = Path(result.artifacts[0].path).read_bytes()
        assert abs(len(stored) - 400_000) < 8_000
        if service.providers[provider].capabilities(_model(provider)).edits:
            edit = await service.submit(ImageRequest("night", ChatRef("cli", "t"),
                                                     references=(Reference(data=stored),)), enforce_limits=False)
            assert edit.ok, edit.errors


async def _no_sleep(_: float) -> None:
    return None


def _model(provider: str) -> str:
    return {"gemini": "gemini-2.5-flash-image", "openai": "gpt-image-1", "stepfun": "step-1x-medium"}.get(
        provider, "test-model")
