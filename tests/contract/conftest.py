"""Contract-test fixtures shared by every provider: one httpx client, an offline-safe downloader,
request/reference factories and a provider builder. HTTP is mocked with respx (``respx_mock``)."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar

import httpx
import pytest
import respx

from core.config import ProviderConfig
from core.download import ImageDownloader
from core.provider import ProviderRequest, ReferenceImage
from providers.base import HttpProvider
from tests.images import jpeg_bytes, png_bytes

#: The address every host "resolves" to in contract tests: public, so the SSRF pre-check passes.
PUBLIC_IP = ipaddress.ip_address("93.184.216.34")

P = TypeVar("P", bound=HttpProvider)


async def fake_resolver(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    return [PUBLIC_IP]


class MakeProvider(Protocol):
    def __call__(self, cls: type[P], **config: Any) -> P: ...


@pytest.fixture(scope="session")
def ssl_context() -> ssl.SSLContext:
    """Built once: loading the CA bundle costs ~17 ms, and respx answers before any TLS anyway."""
    return httpx.create_ssl_context()


@pytest.fixture
async def http_client(respx_mock: respx.MockRouter, ssl_context: ssl.SSLContext) -> AsyncIterator[httpx.AsyncClient]:
    """Every contract test runs under respx (all routes must be mocked): no request leaves the process."""
    async with httpx.AsyncClient(verify=ssl_context) as client:
        yield client


@pytest.fixture
async def downloader() -> AsyncIterator[ImageDownloader]:
    """Downloads go through respx like API calls; DNS answers a public address without a network."""
    fetcher = ImageDownloader(resolver=fake_resolver)
    yield fetcher
    await fetcher.aclose()


@pytest.fixture
def make_provider(http_client: httpx.AsyncClient, downloader: ImageDownloader) -> MakeProvider:
    """``make_provider(OpenAIProvider, api_key="sk-test", extra_body={...})``: config keys are
    ProviderConfig's snake_case fields."""

    def build(cls: type[P], **config: Any) -> P:
        return cls(ProviderConfig(**config), http_client, downloader)

    return build


@pytest.fixture
def provider_request() -> Callable[..., ProviderRequest]:
    """``provider_request(prompt=..., model=..., aspect_ratio=..., size=..., references=(...))``."""

    def build(prompt: str = "a red fox", model: str = "test-model", **fields: Any) -> ProviderRequest:
        if "references" in fields:
            fields["references"] = tuple(fields["references"])
        return ProviderRequest(prompt=prompt, model=model, **fields)

    return build


@pytest.fixture
def png_ref() -> ReferenceImage:
    return ReferenceImage(data=png_bytes(), mime="image/png", name="cat.png")


@pytest.fixture
def jpeg_ref() -> ReferenceImage:
    return ReferenceImage(data=jpeg_bytes(), mime="image/jpeg", name="dog.jpg")
