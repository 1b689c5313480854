"""The HTTP API through the official openai SDK, against the real service and the loopback fake provider."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web

from bots.app import open_service
from bots.http_api import make_app, run_api
from core.config import ApiConfig
from core.config_file import load_config
from core.errors import ConfigError
from core.net import RetryPolicy
from core.service import ImageService
from tests.fakes.fake_provider import FakeProvider
from tests.images import jpeg_bytes, noise_png, png_bytes

KEY = "pixbot-test-key"
FAST_RETRY = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.002, total=5.0)


@dataclass
class Api:
    base_url: str
    service: ImageService
    fake: FakeProvider
    clients: list[openai.AsyncOpenAI] = field(default_factory=list)

    def client(self, key: str = KEY) -> openai.AsyncOpenAI:
        """An SDK client (closed by the fixture); no retries, so a 429 or 5xx surfaces at once."""
        client = openai.AsyncOpenAI(base_url=f"{self.base_url}/v1", api_key=key, max_retries=0, timeout=20)
        self.clients.append(client)
        return client

    def raw(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {KEY}"}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=20)


ApiFactory = Callable[..., AbstractAsyncContextManager[Api]]


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


@pytest.fixture
def serve_api(tmp_path: Path, fake: FakeProvider) -> ApiFactory:
    @asynccontextmanager
    async def build(api_key: str | None = KEY, limits: dict[str, Any] | None = None,
                    api: dict[str, Any] | None = None, image: dict[str, Any] | None = None) -> AsyncIterator[Api]:
        raw: dict[str, Any] = {
            "providers": {"custom": {"apiKey": "sk-test", "apiBase": fake.api_base("custom")},
                          "openai": {"apiKey": "sk-oa", "apiBase": fake.api_base("openai")}},
            "tools": {"imageGeneration": {"provider": "custom", "model": "flux-dev", "maxImagesPerTurn": 4,
                                          **(image or {})},
                      "ssrfWhitelist": ["127.0.0.0/8"]},
            "bots": {"api": {"enabled": True, "port": 0, "apiKey": api_key, **(api or {})}},
            "limits": {"perUserDaily": 0, **(limits or {})},
        }
        path = tmp_path / "config.json"
        path.write_text(json.dumps(raw))
        config = load_config(path, env_file=None)
        async with open_service(config) as service:
            service.retry = FAST_RETRY
            runner = web.AppRunner(make_app(config, service), shutdown_timeout=1.0)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            api = Api(f"http://127.0.0.1:{runner.addresses[0][1]}", service, fake)
            try:
                yield api
            finally:
                for client in api.clients:
                    await client.close()
                await runner.cleanup()

    return build


def _decoded(b64: str | None) -> bytes:
    assert b64 is not None
    return base64.b64decode(b64)


async def test_generate_answers_b64_json_by_default(serve_api: ApiFactory, fake: FakeProvider) -> None:
    async with serve_api() as api:
        result = await api.client().images.generate(prompt="a red fox", n=2, user="alice")
        history = await api.service.state.history("api:alice")
    assert len(result.data) == 2
    for item in result.data:
        assert item.url is None
        assert _decoded(item.b64_json).startswith(b"\x89PNG")
    assert len(history) == 2
    sent = fake.requests_of("/custom/v1/images/generations")
    assert len(sent) == 2 and sent[0].json["model"] == "flux-dev" and sent[0].json["prompt"] == "a red fox"


async def test_generate_with_url_serves_the_artifact_from_pixbot(serve_api: ApiFactory) -> None:
    async with serve_api() as api:
        result = await api.client().images.generate(prompt="a fox", response_format="url", size="512x512")
        url = result.data[0].url
        assert url is not None and url.startswith(f"{api.base_url}/v1/artifacts/img_")
        artifact_id = url.split("/")[-1].split("?")[0]
        stored = await api.service.store.read(artifact_id)
        async with httpx.AsyncClient() as plain:  # the signed URL needs no bearer key
            fetched = await plain.get(url)
            tampered = await plain.get(url[:-4] + "0000")
            unsigned = await plain.get(url.split("?")[0])
            garbled = await plain.get(url.split("?")[0] + "?sig=%C3%A9t%C3%A9")
        async with api.raw() as authed:
            with_key = await authed.get(f"/v1/artifacts/{artifact_id}")
            missing = await authed.get("/v1/artifacts/img_000000000000")
    assert fetched.status_code == 200 and fetched.content == stored
    assert fetched.headers["Content-Type"] == "image/png"
    assert tampered.status_code == unsigned.status_code == garbled.status_code == 401
    assert with_key.status_code == 200 and with_key.content == stored
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_edit_with_one_image_sends_it_to_the_provider(serve_api: ApiFactory,
                                                            fake: FakeProvider) -> None:
    upload = png_bytes(40, 30)
    async with serve_api() as api:
        result = await api.client().images.edit(image=("cat.png", upload, "image/png"), prompt="make it blue")
        artifact = (await api.service.store.recent(1))[0]
    assert _decoded(result.data[0].b64_json).startswith(b"\x89PNG")
    edits = fake.requests_of("/custom/v1/images/edits")
    assert len(edits) == 1 and [f.data for f in edits[0].files] == [upload]
    assert edits[0].form_fields["prompt"] == "make it blue"
    assert artifact.source_images == ("upload:cat.png",)


async def test_edit_with_two_images_and_a_lying_content_type(serve_api: ApiFactory,
                                                             fake: FakeProvider) -> None:
    first, second = png_bytes(32, 32), jpeg_bytes(48, 48)
    async with serve_api() as api:
        # The JPEG is declared as PNG: pixbot goes by the bytes and the provider gets the truth.
        result = await api.client().images.edit(
            image=[("a.png", first, "image/png"), ("b.png", second, "image/png")], prompt="combine them",
            model="openai/gpt-image-1")
    assert len(result.data) == 1
    edits = fake.requests_of("/openai/v1/images/edits")
    assert len(edits) == 1
    assert [f.data for f in edits[0].files] == [first, second]
    assert [f.content_type for f in edits[0].files] == ["image/png", "image/jpeg"]
    assert edits[0].form_fields["model"] == "gpt-image-1"


async def test_wrong_or_missing_key_is_401(serve_api: ApiFactory, fake: FakeProvider) -> None:
    async with serve_api() as api:
        with pytest.raises(openai.AuthenticationError) as caught:
            await api.client("wrong-key").images.generate(prompt="a fox")
        async with httpx.AsyncClient(base_url=api.base_url) as plain:
            health = await plain.get("/healthz")
            models = await plain.get("/v1/models")
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert models.status_code == 401 and models.json()["error"]["type"] == "invalid_request_error"
    assert fake.requests == []


async def test_models_lists_the_configured_provider_models(serve_api: ApiFactory) -> None:
    async with serve_api() as api:
        listing = await api.client().models.list()
    ids = [m.id for m in listing.data]
    assert ids[0] == "custom/flux-dev"
    assert "openai/gpt-image-1" in ids
    assert not any(i.startswith("ollama/") for i in ids)  # needs no key, but nobody set it up
    assert all(m.object == "model" for m in listing.data)


@pytest.mark.parametrize(("body", "param"), [
    ({}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": "a fox", "n": 0}, "n"),
    ({"prompt": "a fox", "n": 9}, "n"),
    ({"prompt": "a fox", "response_format": "png"}, "response_format"),
])
async def test_bad_generation_bodies_are_400(serve_api: ApiFactory, fake: FakeProvider, body: dict[str, Any],
                                             param: str) -> None:
    async with serve_api() as api, api.raw() as client:
        answer = await client.post("/v1/images/generations", json=body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]
    assert fake.requests == []


async def test_n_above_the_configured_maximum_is_400_through_the_sdk(serve_api: ApiFactory) -> None:
    async with serve_api() as api:
        with pytest.raises(openai.BadRequestError) as caught:
            await api.client().images.generate(prompt="a fox", n=5)
        with pytest.raises(openai.BadRequestError) as far_over:
            await api.client().images.generate(prompt="a fox", n=9)  # over pixbot's own 8 too: the same answer
        for error in (caught.value, far_over.value):
            assert (error.code, error.param) == ("invalid_value", "n")
        assert far_over.value.message.endswith("n: You can ask for 1 to 4 images at a time (you asked for 9).")
        with pytest.raises(openai.BadRequestError) as not_json:
            await api.client().post("/images/generations", cast_to=object, content=b"{not json",
                                    options={"headers": {"Content-Type": "application/json"}})
    assert "1 to 4 images" in caught.value.message
    assert not_json.value.code == "invalid_json"


async def test_non_image_upload_is_400_invalid_image(serve_api: ApiFactory, fake: FakeProvider) -> None:
    async with serve_api() as api:
        with pytest.raises(openai.BadRequestError) as caught:
            await api.client().images.edit(image=("notes.png", b"just some text, not a PNG", "image/png"),
                                           prompt="edit it")
        async with api.raw() as client:
            no_image = await client.post("/v1/images/edits", data={"prompt": "edit"}, files={"other": b"x"})
            as_json = await client.post("/v1/images/edits", json={"prompt": "edit"})
            masked = await client.post("/v1/images/edits", data={"prompt": "edit"},
                                       files=[("image", ("a.png", png_bytes(), "image/png")),
                                              ("mask", ("m.png", png_bytes(), "image/png"))])
    assert caught.value.status_code == 400 and caught.value.code == "invalid_image"
    assert no_image.status_code == 400 and no_image.json()["error"]["param"] == "image"
    assert as_json.status_code == 400 and as_json.json()["error"]["code"] == "invalid_content_type"
    assert masked.status_code == 400 and masked.json()["error"]["param"] == "mask"
    assert fake.requests == []


async def test_oversized_bodies_are_413(serve_api: ApiFactory, fake: FakeProvider) -> None:
    big = noise_png(220, 220)  # about 145 kB
    async with serve_api(api={"maxBodyBytes": 100_000}) as api:
        with pytest.raises(openai.APIStatusError) as caught:
            await api.client().images.edit(image=("big.png", big, "image/png"), prompt="edit it")
        async with api.raw() as client:
            form = httpx.Request("POST", "/", data={"prompt": "edit"},
                                 files={"image": ("big.png", big, "image/png")})

            async def stream() -> AsyncIterator[bytes]:  # no Content-Length: the cap counts what arrives
                body = form.read()
                for start in range(0, len(body), 16_384):
                    yield body[start:start + 16_384]

            chunked = await client.post("/v1/images/edits", content=stream(),
                                        headers={"Content-Type": form.headers["Content-Type"]})
            huge_json = await client.post("/v1/images/generations", content=b"{" + b" " * 120_000 + b"}",
                                          headers={"Content-Type": "application/json"})
    assert caught.value.status_code == 413
    assert caught.value.body is not None and caught.value.code == "request_too_large"
    assert huge_json.status_code == 413 and huge_json.json()["error"]["code"] == "request_too_large"
    assert chunked.status_code == 413
    assert fake.requests == []


async def test_daily_quota_is_429_insufficient_quota(serve_api: ApiFactory) -> None:
    async with serve_api(limits={"perUserDaily": 1}) as api:
        client = api.client()
        await client.images.generate(prompt="a fox", user="bob")
        with pytest.raises(openai.RateLimitError) as caught:
            await client.images.generate(prompt="another fox", user="bob")
        other_user = await client.images.generate(prompt="a fox", user="carol")
    assert caught.value.status_code == 429 and caught.value.code == "insufficient_quota"
    assert "quota resets" in caught.value.message
    assert len(other_user.data) == 1


async def test_provider_rate_limit_is_429(serve_api: ApiFactory, fake: FakeProvider) -> None:
    fake.fail_next(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0"}, times=2)
    async with serve_api() as api:
        with pytest.raises(openai.RateLimitError) as caught:
            await api.client().images.generate(prompt="a fox")
    assert caught.value.code == "rate_limit_exceeded"


@pytest.mark.parametrize(("status", "body", "expected", "code"), [
    (401, {"error": {"message": "Incorrect API key sk-test"}}, 502, "upstream_auth_failed"),
    (400, {"error": {"message": "rejected by the safety system", "code": "content_policy_violation"}}, 400,
     "content_policy_violation"),
    (503, {"error": {"message": "down"}}, 502, "upstream_unavailable"),
])
async def test_provider_failures_map_to_statuses(serve_api: ApiFactory, fake: FakeProvider, status: int,
                                                 body: dict[str, Any], expected: int, code: str) -> None:
    fake.fail_next(status, body, times=2)
    async with serve_api() as api, api.raw() as client:
        answer = await client.post("/v1/images/generations", json={"prompt": "a fox"})
    assert answer.status_code == expected
    error = answer.json()["error"]
    assert error["code"] == code
    assert "sk-test" not in answer.text


async def test_partial_success_returns_the_images_that_arrived(serve_api: ApiFactory,
                                                               fake: FakeProvider) -> None:
    fake.fail_next(400, {"error": {"message": "bad"}})
    async with serve_api() as api:
        result = await api.client().images.generate(prompt="a fox", n=3)
    assert len(result.data) == 2


async def test_model_names_provider_or_bare_model(serve_api: ApiFactory, fake: FakeProvider) -> None:
    async with serve_api() as api:
        client = api.client()
        await client.images.generate(prompt="a fox", model="openai/gpt-image-1")
        await client.images.generate(prompt="a fox", model="black-forest-labs/flux-schnell")
        with pytest.raises(openai.BadRequestError) as caught:
            await client.images.generate(prompt="a fox", model="gemini/gemini-2.5-flash-image")
    assert fake.requests_of("/openai/v1/images/generations")[0].json["model"] == "gpt-image-1"
    bare = fake.requests_of("/custom/v1/images/generations")[0]
    assert bare.json["model"] == "black-forest-labs/flux-schnell"
    assert "gemini" in caught.value.message and "not configured" in caught.value.message


async def test_a_server_misconfiguration_is_a_5xx_that_names_no_config_key(serve_api: ApiFactory,
                                                                           fake: FakeProvider) -> None:
    async with serve_api(image={"provider": "zhipu", "model": "cogview-4"}) as api:  # zhipu has no key
        async with api.raw() as client:
            answer = await client.post("/v1/images/generations", json={"prompt": "a fox"})
    assert answer.status_code == 500
    error = answer.json()["error"]
    assert error["type"] == "server_error" and "apiKey" not in error["message"] and "zhipu" not in error["message"]
    assert error["message"].startswith("The bot is not set up for this yet")
    assert fake.requests == []


async def test_without_a_key_the_api_is_open_and_urls_unsigned(serve_api: ApiFactory) -> None:
    async with serve_api(api_key=None) as api:
        result = await api.client("anything").images.generate(prompt="a fox", response_format="url")
        history = await api.service.state.history("api:anonymous")
    assert result.data[0].url is not None and "?" not in result.data[0].url
    assert len(history) == 1


async def test_unknown_route_is_an_openai_shaped_404(serve_api: ApiFactory) -> None:
    async with serve_api() as api, api.raw() as client:
        answer = await client.get("/v1/nothing-here")
    assert answer.status_code == 404
    assert answer.json()["error"]["message"]


async def test_run_api_refuses_a_public_host_without_a_key(tmp_path: Path) -> None:
    """Config validation refuses this too; run_api keeps its own guard for configs built in code."""
    path = tmp_path / "config.json"
    path.write_text("{}")
    config = load_config(path, env_file=None)
    public = ApiConfig.model_construct(enabled=True, host="0.0.0.0", port=0, api_key=None,
                                       max_body_bytes=1024)
    config = config.model_copy(update={"bots": config.bots.model_copy(update={"api": public})})
    async with open_service(config) as service:
        with pytest.raises(ConfigError, match="apiKey"):
            await run_api(config, service, asyncio.Event())
