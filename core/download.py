"""SSRF-safe download of provider image URLs: a connection guard that pins each connection to an
address the block list allows (the rules and async DNS are in core/ssrf.py, re-exported here), and the
streaming, size-capped fetch."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import re
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import httpcore
import httpx

from core.errors import BadImage, ProviderTimeout, ProviderUnavailable
from core.images import sniff_mime
from core.ssrf import IPAddress, IPNetwork, Resolver, is_blocked_ip, parse_whitelist, resolve_host

MAX_DOWNLOAD_BYTES: Final = 32 * 1024 * 1024

__all__ = [
    "MAX_DOWNLOAD_BYTES",
    "IPAddress",
    "IPNetwork",
    "ImageDownloader",
    "Resolver",
    "is_blocked_ip",
    "parse_whitelist",
    "resolve_host",
]


_REFUSED_LINK: Final = "The image service returned an image link the bot will not fetch."
_NOT_AN_IMAGE: Final = "The image service returned a file that is not a supported image."
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})


class _UnsafeTarget(Exception):
    """A URL or connection the SSRF rules refuse; ``fetch`` turns it into BadImage."""


def _literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


class _Guard:
    """The one place that decides whether a host may be contacted, and at which addresses."""

    def __init__(self, whitelist: Sequence[IPNetwork], resolver: Resolver) -> None:
        self.whitelist = whitelist
        self.resolver = resolver

    async def addresses(self, host: str, port: int, *, delegated: bool = False) -> list[IPAddress]:
        """Validated addresses for ``host``; [] when DNS is left to a proxy (``delegated``).

        Raises _UnsafeTarget when any address is blocked, OSError when the name does not resolve.
        """
        name = host.rstrip(".").lower()
        literal = _literal_ip(name)
        if literal is not None:
            if is_blocked_ip(literal, self.whitelist):
                raise _UnsafeTarget(f"{literal} is a private or reserved address")
            return [literal]
        if (name == "localhost" or name.endswith(".localhost")) and is_blocked_ip(
            ipaddress.IPv4Address("127.0.0.1"), self.whitelist
        ):
            raise _UnsafeTarget(f"{name} is the local machine")
        try:
            found = await self.resolver(name, port)
            if not found:
                raise OSError(f"{name} has no addresses")
        except OSError:
            if delegated:
                return []
            raise
        blocked = [str(ip) for ip in found if is_blocked_ip(ip, self.whitelist)]
        if blocked:
            raise _UnsafeTarget(f"{name} resolves to blocked address {', '.join(blocked)}")
        return found


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves and validates at connect time, then connects to the checked IP (no DNS rebinding).

    httpcore wraps TLS after ``connect_tcp`` with the URL's hostname, so SNI and certificate checks
    still use the name while the socket goes to the address that passed the block list.
    """

    def __init__(self, guard: _Guard) -> None:
        self._guard = guard
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._guard.addresses(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        error: Exception = httpcore.ConnectError(f"no address for {host}")
        for ip in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(ip), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not used for image downloads")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


#: httpcore's exceptions and the httpx ones they stand for, most specific first: callers catch httpx's.
_HTTPX_ERRORS: Final[tuple[tuple[type[Exception], type[httpx.TransportError]], ...]] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)


@contextmanager
def _as_httpx_errors() -> Iterator[None]:
    """Re-raise httpcore's exceptions as httpx's; anything else (``_UnsafeTarget``) passes unchanged."""
    try:
        yield
    except Exception as exc:
        mapped = next((theirs for ours, theirs in _HTTPX_ERRORS if isinstance(exc, ours)), None)
        if mapped is None:
            raise
        raise mapped(str(exc)) from exc


class _GuardedBody(httpx.AsyncByteStream):
    """An httpcore response body read through httpx, with httpcore's errors mapped."""

    def __init__(self, response: httpcore.Response) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for chunk in self._response.aiter_stream():
                yield chunk

    async def aclose(self) -> None:
        with _as_httpx_errors():
            await self._response.aclose()


class _GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over an httpcore pool that connects through the guarded backend.

    httpx's own transport takes no network backend, so this is the part of it the downloader needs:
    the request and response handed across, and httpcore's errors raised as httpx's.
    """

    def __init__(self, guard: _Guard, limits: httpx.Limits) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(guard),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        return httpx.Response(status_code=response.status, headers=response.headers, stream=_GuardedBody(response),
                              extensions=response.extensions)

    async def aclose(self) -> None:
        await self._pool.aclose()


_USERINFO: Final = re.compile(r"//[^/?#]*@")


def _for_log(url: str) -> str:
    """The URL without credentials, query or fragment: signed CDN links carry tokens logs must not keep."""
    return _USERINFO.sub("//", url.split("#", 1)[0].split("?", 1)[0], count=1)[:200]


class ImageDownloader:
    """Fetches the image URLs providers return, refusing anything that could reach a private network."""

    def __init__(
        self,
        *,
        whitelist: Sequence[str] = (),
        proxy: str | None = None,
        timeout: float = 120.0,
        max_bytes: int = MAX_DOWNLOAD_BYTES,
        max_redirects: int = 5,
        resolver: Resolver | None = None,
    ) -> None:
        self._guard = _Guard(parse_whitelist(whitelist), resolver or resolve_host)
        self._proxy = proxy
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._max_redirects = max_redirects
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=4, keepalive_expiry=15.0)
        options: dict[str, Any] = {"timeout": timeout, "follow_redirects": False, "trust_env": False}
        if proxy:  # the proxy resolves names, so nothing to pin; URLs are still pre-checked per hop
            self._client = httpx.AsyncClient(proxy=proxy, limits=limits, **options)
        else:
            self._client = httpx.AsyncClient(transport=_GuardedTransport(self._guard, limits), **options)

    async def check_url(self, url: str) -> None:
        """Refuse (BadImage) a URL the bot will not fetch: scheme, missing host, blocked addresses."""
        try:
            await self._check(url)
        except _UnsafeTarget as exc:
            raise self._refused(url, str(exc)) from None
        except OSError as exc:
            detail = f"image host of {_for_log(url)} does not resolve: {exc}"
            raise ProviderUnavailable(detail=detail) from None

    async def fetch(self, url: str) -> bytes:
        """The image bytes behind ``url`` (sniffed PNG/JPEG/GIF/WebP), within the size and time limits."""
        try:
            async with asyncio.timeout(self._timeout):
                return await self._fetch(url)
        except TimeoutError:
            detail = f"image download exceeded {self._timeout:g}s: {_for_log(url)}"
            raise ProviderTimeout(detail=detail) from None

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _check(self, url: str) -> None:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise _UnsafeTarget(f"not a valid URL ({exc})") from None
        if parsed.scheme not in ("http", "https"):
            raise _UnsafeTarget(f"scheme {parsed.scheme!r} is not http or https")
        if not parsed.raw_host:
            raise _UnsafeTarget("no host name")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        await self._guard.addresses(parsed.raw_host.decode("ascii"), port, delegated=bool(self._proxy))

    def _refused(self, url: str, reason: str) -> BadImage:
        return BadImage(_REFUSED_LINK, detail=f"refused image URL {_for_log(url)}: {reason}")

    async def _fetch(self, url: str) -> bytes:
        current = url
        for hop in range(self._max_redirects + 1):
            await self.check_url(current)
            try:
                async with self._client.stream("GET", current) as response:
                    location = response.headers.get("location")
                    if response.status_code in _REDIRECTS and location:
                        if hop == self._max_redirects:
                            raise self._refused(url, f"more than {self._max_redirects} redirects")
                        try:
                            current = str(response.url.join(location))
                        except httpx.InvalidURL:
                            raise self._refused(current, "invalid redirect Location") from None
                        continue
                    if not response.is_success:
                        raise ProviderUnavailable(
                            detail=f"image download failed (HTTP {response.status_code}): {_for_log(current)}"
                        )
                    body = await self._read_capped(response, current)
            except _UnsafeTarget as exc:  # raised at connect time by the guarded backend
                raise self._refused(current, str(exc)) from None
            except httpx.TimeoutException as exc:
                raise ProviderTimeout(detail=f"image download timed out ({type(exc).__name__})") from None
            except httpx.HTTPError as exc:
                raise ProviderUnavailable(
                    detail=f"image download failed: {type(exc).__name__}: {exc}: {_for_log(current)}"
                ) from None
            if sniff_mime(body) is None:
                raise BadImage(_NOT_AN_IMAGE, detail=f"{_for_log(current)} did not return PNG/JPEG/GIF/WebP")
            return body
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    async def _read_capped(self, response: httpx.Response, url: str) -> bytes:
        """The body, refused as soon as it is known to exceed the cap; one growing buffer, no chunk list."""
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise self._refused(url, f"Content-Length {declared} exceeds the {self._max_bytes}-byte limit")
        buffer = io.BytesIO()
        async for chunk in response.aiter_bytes():
            if buffer.tell() + len(chunk) > self._max_bytes:
                raise self._refused(url, f"body exceeds the {self._max_bytes}-byte limit")
            buffer.write(chunk)
        return buffer.getvalue()  # hands over BytesIO's own buffer: no extra copy
