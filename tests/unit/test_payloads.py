"""Big base64 images in provider JSON are decoded straight from the body, and every adapter copes."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bots.app import open_service
from core.config_file import load_config
from core.models import ChatRef, ImageRequest, Reference
from core.payloads import BLOB_MARK, MIN_BLOB_CHARS, blob_for, loads_with_blobs, use_blobs
from tests.fakes.fake_provider import PROVIDER_PREFIXES, FakeProvider
from tests.images import noise_png, png_bytes

BIG = noise_png(200, 200)  # ~120 KB: far above MIN_BLOB_CHARS once in base64


def test_long_runs_become_markers_and_short_ones_stay() -> None:
    small = base64.b64encode(png_bytes()).decode()
    body = json.dumps({"data": [{"b64_json": base64.b64encode(BIG).decode()}, {"b64_json": small}],
                       "url": "data:image/png;base64," + base64.b64encode(BIG).decode()}).encode()
    data, blobs = loads_with_blobs(body)
    assert blobs == (BIG, BIG)
    assert data["data"][0]["b64_json"] == BLOB_MARK + "0"
    assert data["data"][1]["b64_json"] == small
    assert data["url"] == "data:image/png;base64," + BLOB_MARK + "1"


def test_unusual_runs_fall_back_to_plain_json() -> None:
    escaped = json.dumps({"b64_json": base64.encodebytes(BIG).decode()}).encode()  # has \n escapes
    data, blobs = loads_with_blobs(escaped)
    assert blobs == () and base64.b64decode(data["b64_json"]) == BIG
    bad_padding = b'{"b64_json": "' + b"A" * (MIN_BLOB_CHARS + 1) + b'"}'
    data, blobs = loads_with_blobs(bad_padding)
    assert blobs == () and len(data["b64_json"]) == MIN_BLOB_CHARS + 1


async def test_markers_resolve_only_in_the_task_that_parsed_them() -> None:
    use_blobs((b"one", b"two"))
    assert blob_for(f"  {BLOB_MARK}1 ") == b"two"
    assert blob_for(f"{BLOB_MARK}9") is None
    assert blob_for("aGVsbG8=") is None
    both_parsed = asyncio.Barrier(2)

    async def parse_then_read(blob: bytes) -> bytes | None:
        use_blobs((blob,))
        await both_parsed.wait()  # the other task has set its own blobs by now
        return blob_for(f"{BLOB_MARK}0")

    assert await asyncio.gather(parse_then_read(b"left"), parse_then_read(b"right")) == [b"left", b"right"]
    assert blob_for(f"{BLOB_MARK}0") == b"one"  # neither task's blobs leaked back into this one


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
