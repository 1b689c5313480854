"""HttpProvider: what every adapter shares. Request helpers, the one HTTP-status → error mapping
(kept in providers/http_errors.py, re-exported here), payload decoding straight to bytes, and the
capability lookup. Adapters add only their wire format.

An answer's image strings are base64 text, data URLs or http(s) URLs, or (when long) a DecodedBase64 that
``send()`` decoded while parsing (core/payloads.py); the ``decode_*`` and ``image_from_string`` helpers take
both, so an adapter checks for ``str | DecodedBase64`` where it would check for a string."""

from __future__ import annotations

import asyncio
import binascii
import logging
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from core.config import ProviderConfig
from core.download import ImageDownloader
from core.errors import BadImage, PixbotError, ProviderTimeout, ProviderUnavailable
from core.images import sniff_mime
from core.net import redact
from core.payloads import DecodedBase64, parse_json
from core.provider import Capabilities, ProviderRequest, ProviderResult
from providers.http_errors import classify_message, error_for_response, http_error_detail

__all__ = [
    "GPT_IMAGE_SIZES",
    "HttpProvider",
    "classify_message",
    "error_for_response",
    "gpt_size_for_ratio",
    "http_error_detail",
    "openai_images",
    "ratio_size",
]

log = logging.getLogger(__name__)

_DATA_URL = re.compile(r"^data:(image/[A-Za-z0-9.+-]+);base64,(.*)$", re.DOTALL)
_WHITESPACE = re.compile(r"\s+")
#: The largest provider answer read (a 30 MB PNG is ~40 MB of base64 inside JSON).
MAX_BODY_BYTES = 128 * 1024 * 1024
#: Bodies larger than this are parsed in a worker thread, off the event loop.
_PARSE_INLINE_BYTES = 256 * 1024

#: OpenAI's GPT-image ratio table, shared by custom, openai and aihubmix.
GPT_IMAGE_SIZES: dict[str, str] = {
    "1:1": "1024x1024",
    "16:9": "1536x1024",
    "4:3": "1536x1024",
    "9:16": "1024x1536",
    "3:4": "1024x1536",
}


def gpt_size_for_ratio(ratio: str | None, default: str = "1024x1024") -> str:
    return GPT_IMAGE_SIZES.get(ratio or "", default)


def ratio_size(size: str | None, ratio: str | None, table: Mapping[str, str], default: str) -> str:
    """nanobot's "x-pass" rule: a size containing ``x`` is sent verbatim, else the ratio table."""
    if size and "x" in size.lower():
        return size
    return table.get(ratio or "", default)


class HttpProvider:
    """Base for HTTP adapters. Handed its config slice and shared clients; never builds one."""

    name: ClassVar[str]
    default_model: ClassVar[str]
    default_base: ClassVar[str | None] = None
    default_timeout: ClassVar[float] = 120.0
    requires_key: ClassVar[bool] = True
    requires_base: ClassVar[bool] = False
    #: Headers every request carries, after the defaults and before extraHeaders (OpenRouter's attribution).
    fixed_headers: ClassVar[Mapping[str, str]] = {}
    #: Content-Type is set after extraHeaders, which cannot change it (AIHubMix).
    content_type_last: ClassVar[bool] = False

    def __init__(
        self,
        config: ProviderConfig,
        client: httpx.AsyncClient,
        downloader: ImageDownloader | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.downloader = downloader

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} base={self.base_url!r}>"

    # -- configuration ---------------------------------------------------------------------
    @property
    def api_key(self) -> str | None:
        return self.config.api_key or None

    @property
    def base_url(self) -> str:
        return (self.config.api_base or self.default_base or "").rstrip("/")

    @property
    def timeout(self) -> float:
        return self.config.timeout or self.default_timeout

    @property
    def extra_body(self) -> dict[str, Any]:
        return dict(self.config.extra_body)

    def missing(self) -> list[str]:
        missing = []
        if self.requires_base and not self.config.api_base:
            missing.append(f"providers.{self.name}.apiBase")
        if self.requires_key and not self.api_key:
            missing.append(f"providers.{self.name}.apiKey")
        return missing

    def capabilities(self, model: str) -> Capabilities:
        return Capabilities()

    def headers(self, *, json_body: bool = True, bearer: bool = True) -> dict[str, str]:
        """Authorization and Content-Type, the adapter's ``fixed_headers``, then extraHeaders (which win),
        except that with ``content_type_last`` the Content-Type is set last and extras cannot change it."""
        headers: dict[str, str] = {}
        if bearer and self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if json_body and not self.content_type_last:
            headers["Content-Type"] = "application/json"
        headers.update(self.fixed_headers)
        extras = self.config.extra_headers
        if self.content_type_last:
            extras = {k: v for k, v in extras.items() if k.lower() != "content-type"}
        headers.update(extras)
        if json_body and self.content_type_last:
            headers["Content-Type"] = "application/json"
        return headers

    # -- HTTP --------------------------------------------------------------------------------
    def _secrets(self) -> list[str]:
        return [s for s in (self.api_key, *self.config.extra_headers.values()) if s]

    async def send(self, method: str, url: str, **kwargs: Any) -> Any:
        """Send one request and return its JSON body (long base64 strings as DecodedBase64), or raise the
        matching PixbotError.

        The timeout bounds the whole exchange, not just each read: httpx's timeouts are per phase, so
        a body trickled a few bytes at a time would otherwise hold the slot until the job's deadline.
        """
        timeout = kwargs.setdefault("timeout", self.timeout)
        deadline = float(timeout) if isinstance(timeout, int | float) else None
        try:
            async with asyncio.timeout(deadline), self.client.stream(method, url, **kwargs) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self.error_for(response)
                body = await self._read_body(response)
        except TimeoutError:
            raise ProviderTimeout(detail=f"{self.name}: no complete answer within {timeout}s",
                                  provider=self.name) from None
        except httpx.TimeoutException as exc:
            raise ProviderTimeout(detail=f"{self.name}: {type(exc).__name__}", provider=self.name) from exc
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(detail=f"{self.name}: {type(exc).__name__}: {redact(str(exc), self._secrets())}",
                                      provider=self.name) from exc
        try:
            if len(body) > _PARSE_INLINE_BYTES:
                return await asyncio.to_thread(parse_json, body)
            return parse_json(body)
        except ValueError:
            text = bytes(body[:1000]).decode("utf-8", "replace")
            raise ProviderUnavailable(
                "The image service sent an answer the bot could not read.",
                detail=f"{self.name}: non-JSON body: {redact(text, self._secrets(), limit=200)}",
                provider=self.name,
            ) from None

    async def _read_body(self, response: httpx.Response) -> bytearray:
        """Collect the body into one growing buffer (no chunk list + join copy), capped: an image
        answer larger than any image we would accept is refused before it fills memory."""
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise BadImage("The image service sent an answer too large to accept.",
                               detail=f"{self.name}: body over {MAX_BODY_BYTES} bytes", provider=self.name)
        return body

    async def post_json(self, url: str, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Any:
        log.debug("%s POST %s", self.name, url)
        return await self.send("POST", url, json=body, headers=dict(headers or self.headers()))

    def error_for(self, response: httpx.Response) -> PixbotError:
        """The error for an HTTP error status; adapters override it to read their error payloads."""
        return error_for_response(self.name, response, self._secrets())

    def require_mapping(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise ProviderUnavailable("The image service sent an answer the bot could not read.",
                                      detail=f"{self.name}: expected a JSON object, got {type(data).__name__}",
                                      provider=self.name)
        return data

    # -- payloads ----------------------------------------------------------------------------
    def decode_b64(self, payload: str | DecodedBase64) -> bytes:
        """Strict bare base64 → image bytes, checked by magic bytes (the provider's claimed type is ignored)."""
        if isinstance(payload, DecodedBase64):
            if payload.mime is not None:  # a data URL where bare base64 belongs, refused as its text would be
                raise self._broken("payload was not valid base64")
            return self._image(payload.data)
        try:
            cleaned = _WHITESPACE.sub("", payload) if _WHITESPACE.search(payload) else payload
            data = binascii.a2b_base64(cleaned, strict_mode=True)
        except (binascii.Error, ValueError):
            raise self._broken("payload was not valid base64") from None
        return self._image(data)

    def decode_data_url(self, url: str | DecodedBase64) -> bytes:
        """A base64 ``data:image/...`` URL → image bytes (checked like ``decode_b64``)."""
        if isinstance(url, DecodedBase64):
            if url.mime is None:
                raise self._broken("expected a base64 image data URL")
            return self._image(url.data)
        match = _DATA_URL.match(url.strip())
        if not match:
            raise self._broken("expected a base64 image data URL")
        return self.decode_b64(match[2])

    def decode_inline(self, value: str | DecodedBase64) -> bytes:
        """An image given inline either way: a ``data:`` URL or bare base64."""
        is_url = value.mime is not None if isinstance(value, DecodedBase64) else value.lstrip().startswith("data:")
        return self.decode_data_url(value) if is_url else self.decode_b64(value)

    def _image(self, data: bytes) -> bytes:
        if sniff_mime(data) is None:
            raise BadImage("The image service sent something that is not an image.",
                           detail=f"{self.name}: payload was not a supported image", provider=self.name)
        return data

    def _broken(self, why: str) -> BadImage:
        return BadImage("The image service sent a broken image.", detail=f"{self.name}: {why}", provider=self.name)

    async def download(self, url: str) -> bytes:
        if self.downloader is None:
            raise ProviderUnavailable(detail=f"{self.name}: no downloader for {url[:80]}", provider=self.name)
        return await self.downloader.fetch(url)

    async def image_from_string(self, value: str | DecodedBase64) -> bytes | None:
        """A data URL (decoded) or an http(s) URL (downloaded); None for anything else, bare base64 included."""
        if isinstance(value, DecodedBase64):
            return self.decode_data_url(value) if value.mime is not None else None
        value = value.strip()
        if value.startswith("data:image/"):
            return self.decode_data_url(value)
        if value.startswith(("http://", "https://")):
            return await self.download(value)
        return None

    def no_images(self, data: Any) -> PixbotError:
        """Zero images: classify any error the body carries, else say so plainly."""
        message = ""
        if isinstance(data, dict) and data.get("error"):
            error = data["error"]
            message = str(error.get("message", error)) if isinstance(error, dict) else str(error)
        said = f": {redact(message, self._secrets(), limit=500)}" if message else ""
        detail = f"{self.name} returned no images{said}"
        log.warning("%s", detail)
        signalled = classify_message(message) if message else None
        if signalled is not None:
            return signalled(detail=detail, provider=self.name)
        return ProviderUnavailable("The image service answered without an image. Try again or rephrase.",
                                   detail=detail, provider=self.name)

    def result(self, images: list[bytes], data: Any, text: str = "") -> ProviderResult:
        if not images:
            raise self.no_images(data)
        return ProviderResult(images=images, text=text)

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Clients are owned by the composition root; nothing to close here."""


async def openai_images(provider: HttpProvider, data: Mapping[str, Any]) -> list[bytes]:
    """``data[]`` items: ``b64_json`` (or Together's ``base64``), else ``url`` (downloaded or a data URL)."""
    items = data.get("data")
    if not isinstance(items, list):
        return []
    images: list[bytes] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        candidates = (item.get("b64_json"), item.get("base64"))
        payload = next((v for v in candidates if isinstance(v, DecodedBase64) or (isinstance(v, str) and v.strip())),
                       None)
        if payload is not None:
            images.append(provider.decode_inline(payload))
            continue
        url = item.get("url")
        if isinstance(url, str | DecodedBase64):
            image = await provider.image_from_string(url)
            if image is not None:
                images.append(image)
    return images
