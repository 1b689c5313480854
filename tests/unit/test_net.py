"""core.net (retries, clients, loopback hosts) and core.download (the SSRF block list, and ImageDownloader
against a real aiohttp server on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web

from core.download import (
    MAX_DOWNLOAD_BYTES,
    ImageDownloader,
    IPAddress,
    is_blocked_ip,
    parse_whitelist,
    resolve_host,
)
from core.errors import (
    AuthFailed,
    BadImage,
    ConfigError,
    ContentPolicy,
    InvalidRequest,
    PixbotError,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExceeded,
    RateLimited,
)
from core.net import RetryPolicy, create_client, is_loopback_host, with_retries

REFUSED = "The image service returned an image link the bot will not fetch."
LOOPBACK = ["127.0.0.0/8"]
Make = Callable[..., ImageDownloader]

# --- with_retries --------------------------------------------------------------------------------------


@dataclass
class Clock:
    """A fake monotonic clock that only the fake sleep advances."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay


def failing(*errors: BaseException, result: str = "ok") -> tuple[Callable[[], Awaitable[str]], list[int]]:
    """A call that raises ``errors`` one per attempt, then returns ``result``; also its call counter."""
    calls: list[int] = []

    async def call() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    return call, calls


NO_JITTER = RetryPolicy(attempts=3, base_delay=0.5, max_delay=8.0, total=90.0, jitter=0.0)


async def test_rate_limited_waits_exactly_retry_after() -> None:
    clock = Clock()
    seen: list[tuple[PixbotError, int, float]] = []
    err = RateLimited(retry_after=7)
    call, calls = failing(err)
    result = await with_retries(call, RetryPolicy(), sleep=clock.sleep, clock=clock,
                                on_retry=lambda e, n, d: seen.append((e, n, d)))
    assert result == "ok"
    assert clock.sleeps == [7]
    assert seen == [(err, 1, 7)]
    assert len(calls) == 2


async def test_provider_unavailable_is_retried_with_exponential_backoff() -> None:
    clock = Clock()
    call, calls = failing(ProviderUnavailable(detail="HTTP 502"), ProviderUnavailable(detail="HTTP 503"))
    assert await with_retries(call, NO_JITTER, sleep=clock.sleep, clock=clock) == "ok"
    assert clock.sleeps == [0.5, 1.0]
    assert len(calls) == 3


async def test_timeouts_are_retried() -> None:
    clock = Clock()
    call, calls = failing(ProviderTimeout())
    assert await with_retries(call, NO_JITTER, sleep=clock.sleep, clock=clock) == "ok"
    assert clock.sleeps == [0.5]
    assert len(calls) == 2


@pytest.mark.parametrize(
    "error", [InvalidRequest(), AuthFailed(), ContentPolicy(), QuotaExceeded(), BadImage(), ValueError("bug")]
)
async def test_non_retryable_errors_raise_at_once(error: BaseException) -> None:
    clock = Clock()
    call, calls = failing(error)
    with pytest.raises(type(error)) as caught:
        await with_retries(call, NO_JITTER, sleep=clock.sleep, clock=clock)
    assert caught.value is error
    assert len(calls) == 1
    assert clock.sleeps == []


async def test_attempts_bound_the_number_of_calls() -> None:
    clock = Clock()
    errors = [ProviderUnavailable(detail=str(n)) for n in range(10)]
    call, calls = failing(*errors)
    policy = RetryPolicy(attempts=4, base_delay=0.1, jitter=0.0)
    with pytest.raises(ProviderUnavailable) as caught:
        await with_retries(call, policy, sleep=clock.sleep, clock=clock)
    assert len(calls) == 4
    assert caught.value is errors[3]
    assert clock.sleeps == [0.1, 0.2, 0.4]


async def test_retry_after_beyond_the_budget_gives_up_without_sleeping() -> None:
    clock = Clock()
    call, calls = failing(RateLimited(retry_after=120))
    with pytest.raises(RateLimited):
        await with_retries(call, RetryPolicy(total=90), sleep=clock.sleep, clock=clock)
    assert len(calls) == 1
    assert clock.sleeps == []


async def test_backoff_stops_when_the_total_budget_is_spent() -> None:
    clock = Clock()

    async def slow_failure() -> str:
        clock.now += 1.0  # each attempt itself takes a second
        raise ProviderTimeout()

    policy = RetryPolicy(attempts=10, base_delay=1.0, max_delay=8.0, total=6.0, jitter=0.0)
    with pytest.raises(ProviderTimeout):
        await with_retries(slow_failure, policy, sleep=clock.sleep, clock=clock)
    # t=1 fail, sleep 1 -> t=3 fail, sleep 2 -> t=6 fail: 4 s would overrun the 6 s budget.
    assert clock.sleeps == [1.0, 2.0]
    assert clock.now <= policy.total


def test_backoff_is_jittered_and_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0, jitter=0.25)
    for attempt in range(1, 12):
        nominal = min(8.0, 0.5 * 2 ** (attempt - 1))
        for _ in range(50):
            delay = policy.backoff(attempt)
            assert nominal * 0.75 <= delay <= min(8.0, nominal * 1.25)


# --- the block list ---------------------------------------------------------------------------------------

BLOCKED = [
    "0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.254", "127.0.0.1",
    "127.8.9.10", "169.254.0.1", "169.254.169.254", "172.16.0.1", "172.31.255.255", "192.0.0.8",
    "192.0.2.1", "192.168.1.1", "198.18.0.1", "198.19.255.255", "198.51.100.7", "203.0.113.9",
    "224.0.0.1", "239.255.255.250", "240.0.0.1", "250.1.2.3", "255.255.255.255",
    "::", "::1", "fc00::1", "fd12:3456::1", "fe80::1", "fe80::1%eth0", "febf::1", "ff02::1", "ff0e::1",
    "2001:db8::1", "100::1",
    # IPv4-mapped
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0",
    # IPv4-compatible and SIIT forms: all of ::/8
    "::127.0.0.1", "::10.0.0.1", "::8.8.8.8", "::ffff:0:8.8.8.8",
    # NAT64 embedding a blocked IPv4, and local-use NAT64
    "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::808:808",
    # 6to4 embedding a blocked IPv4 in bits 16-48
    "2002:7f00:1::1", "2002:a00:1::", "2002:a9fe:a9fe::1", "2002:c0a8:101::1",
    # Teredo: client IPv4 xor-ed (f5ff:fffe = 10.0.0.1, 80ff:fefe = 127.0.0.1), or a private server
    "2001:0:4136:e378:8000:63bf:f5ff:fffe", "2001:0:4136:e378:8000:63bf:80ff:fefe",
    "2001:0:a00:1:8000:63bf:f7f7:f7f7",
]
ALLOWED = [
    "8.8.8.8", "1.1.1.1", "93.184.216.34", "100.63.255.255", "100.128.0.1", "172.32.0.1", "198.20.0.1",
    "2606:4700:4700::1111", "2a00:1450:4001:80b::200e", "::ffff:8.8.8.8",
    "64:ff9b::808:808", "2002:808:808::1", "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
]


@pytest.mark.parametrize("address", BLOCKED)
def test_non_global_addresses_are_blocked(address: str) -> None:
    assert is_blocked_ip(ipaddress.ip_address(address), ())


@pytest.mark.parametrize("address", ALLOWED)
def test_global_addresses_are_allowed(address: str) -> None:
    assert not is_blocked_ip(ipaddress.ip_address(address), ())


@pytest.mark.parametrize(
    ("address", "cidr"),
    [
        ("127.0.0.1", "127.0.0.0/8"),
        ("::ffff:127.0.0.1", "127.0.0.0/8"),
        ("10.1.2.3", "10.1.0.0/16"),
        ("64:ff9b::a01:203", "10.1.0.0/16"),
        ("2002:a01:203::1", "10.1.0.0/16"),
        ("fd00::5", "fd00::/8"),
        ("169.254.169.254", "169.254.169.254/32"),
    ],
)
def test_whitelist_exempts_addresses(address: str, cidr: str) -> None:
    ip = ipaddress.ip_address(address)
    assert is_blocked_ip(ip, ())
    assert not is_blocked_ip(ip, parse_whitelist([cidr]))


def test_whitelist_exempts_only_its_own_range() -> None:
    whitelist = parse_whitelist(["10.1.0.0/16"])
    assert is_blocked_ip(ipaddress.ip_address("10.2.0.1"), whitelist)
    assert is_blocked_ip(ipaddress.ip_address("::1"), parse_whitelist(LOOPBACK))


def test_bad_whitelist_entry_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_whitelist(["10.0.0.0/8", "intranet"])
    assert "tools.ssrfWhitelist" in (caught.value.detail or "")


async def test_resolve_host_uses_getaddrinfo() -> None:
    assert await resolve_host("127.0.0.1", 80) == [ipaddress.ip_address("127.0.0.1")]
    # glibc reads a bare number as an IPv4 address: the block list sees what the socket would.
    assert await resolve_host("2130706433", 80) == [ipaddress.ip_address("127.0.0.1")]


async def test_create_client_honours_an_explicit_proxy_only() -> None:
    proxied, plain = create_client(timeout=5, proxy="http://127.0.0.1:3128"), create_client(timeout=5)
    async with proxied, plain:
        assert proxied.trust_env is False
        assert plain.trust_env is True
        assert proxied.timeout == httpx.Timeout(5)
        assert proxied.follow_redirects is False


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("localhost", True), ("::1", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("example.com", False),
])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


# --- ImageDownloader against a real server ----------------------------------------------------------------


@dataclass
class Server:
    base: str
    port: int
    hits: list[str]
    hosts: list[str]


@pytest.fixture
async def server(png: bytes) -> AsyncIterator[Server]:
    hits: list[str] = []
    hosts: list[str] = []
    closing = asyncio.Event()

    @web.middleware
    async def record(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        hits.append(request.path_qs)
        hosts.append(request.host)
        return await handler(request)

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=png, content_type="text/plain")  # the declared type is ignored

    async def redirect(request: web.Request) -> web.Response:
        left = int(request.match_info["n"])
        raise web.HTTPFound("/img" if left == 0 else f"/redir/{left - 1}")  # relative: urljoin'ed

    async def to(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["location"])

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=png + bytes(200_000))

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            await response.write(png)
            for _ in range(30):
                await response.write(bytes(10_000))
            await response.write_eof()
        return response

    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            await response.write(png[:16])
            while not closing.is_set():
                await response.write(b"\0")  # one byte per 50 ms: never idle long enough for a read timeout
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closing.wait(), 0.05)
        return response

    async def text(request: web.Request) -> web.Response:
        return web.Response(body=b"<html>not an image</html>", content_type="image/png")

    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    app = web.Application(middlewares=[record])
    app.router.add_get("/img", image)
    app.router.add_get("/redir/{n}", redirect)
    app.router.add_get("/to", to)
    app.router.add_get("/loop", loop)
    app.router.add_get("/big", big)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/drip", drip)
    app.router.add_get("/text", text)
    app.router.add_get("/500", fail)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        yield Server(f"http://127.0.0.1:{port}", port, hits, hosts)
    finally:
        closing.set()
        await runner.cleanup()


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., ImageDownloader]]:
    made: list[ImageDownloader] = []

    def factory(**kwargs: Any) -> ImageDownloader:
        options: dict[str, Any] = {"whitelist": LOOPBACK, "max_bytes": 100_000, "timeout": 5.0}
        downloader = ImageDownloader(**(options | kwargs))
        made.append(downloader)
        return downloader

    yield factory
    for downloader in made:
        await downloader.aclose()


class Resolver:
    """An injectable resolver answering from a script, one answer per call (the last one repeats)."""

    def __init__(self, *answers: list[str] | BaseException) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append((host, port))
        answer = self.answers[min(len(self.calls), len(self.answers)) - 1]
        if isinstance(answer, BaseException):
            raise answer
        return [ipaddress.ip_address(a) for a in answer]


def assert_refused(caught: pytest.ExceptionInfo[BadImage], *words: str) -> None:
    """The user sees the refusal message; the log detail names the reason."""
    assert str(caught.value) == REFUSED
    for word in words:
        assert word in (caught.value.detail or ""), caught.value.detail


async def test_fetch_returns_the_image_bytes(server: Server, make: Make, png: bytes) -> None:
    assert await make().fetch(f"{server.base}/img") == png
    assert server.hits == ["/img"]


async def test_redirect_chain_within_the_limit_is_followed(server: Server, make: Make, png: bytes) -> None:
    assert await make().fetch(f"{server.base}/redir/4") == png  # exactly 5 redirects
    assert server.hits == ["/redir/4", "/redir/3", "/redir/2", "/redir/1", "/redir/0", "/img"]


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://10.0.0.1/x", "10.0.0.1"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://[::ffff:192.168.0.1]/", "::ffff:c0a8:1"),
        ("http://[64:ff9b::a9fe:a9fe]/", "64:ff9b::a9fe:a9fe"),
        ("file:///etc/passwd", "scheme 'file'"),
    ],
)
async def test_redirect_to_a_private_address_is_refused(server: Server, make: Make, location: str, reason: str
                                                        ) -> None:
    with pytest.raises(BadImage) as caught:
        await make().fetch(f"{server.base}/to?location={location}")
    assert_refused(caught, reason)
    assert len(server.hits) == 1


async def test_redirect_loop_stops_at_the_limit(server: Server, make: Make) -> None:
    with pytest.raises(BadImage) as caught:
        await make().fetch(f"{server.base}/loop")
    assert_refused(caught, "more than 5 redirects")
    assert server.hits == ["/loop"] * 6


async def test_declared_content_length_over_the_cap_is_refused(server: Server, make: Make) -> None:
    with pytest.raises(BadImage) as caught:
        await make().fetch(f"{server.base}/big")
    assert_refused(caught, "Content-Length")


async def test_chunked_body_over_the_cap_is_refused(server: Server, make: Make) -> None:
    with pytest.raises(BadImage) as caught:
        await make().fetch(f"{server.base}/chunked")
    assert_refused(caught, "body exceeds the 100000-byte limit")


def test_default_cap_is_32_mib() -> None:
    assert MAX_DOWNLOAD_BYTES == 32 * 1024 * 1024


async def test_bytes_that_are_not_an_image_are_bad_image(server: Server, make: Make) -> None:
    with pytest.raises(BadImage) as caught:
        await make().fetch(f"{server.base}/text")
    assert str(caught.value) != REFUSED
    assert "/text" in (caught.value.detail or "")


async def test_http_500_is_provider_unavailable(server: Server, make: Make) -> None:
    with pytest.raises(ProviderUnavailable) as caught:
        await make().fetch(f"{server.base}/500")
    assert "HTTP 500" in (caught.value.detail or "")


async def test_slow_drip_body_hits_the_total_deadline(server: Server, make: Make) -> None:
    with pytest.raises(ProviderTimeout):
        await make(timeout=0.4).fetch(f"{server.base}/drip")


async def test_transport_failures_surface_as_httpx_errors(make: Make) -> None:
    """The guarded transport raises httpx's exceptions (httpx's own transport would), never httpcore's."""
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"this is not HTTP\r\n\r\n")
        await writer.drain()
        writer.close()

    not_http = await asyncio.start_server(garbage, "127.0.0.1", 0)
    closed = await asyncio.start_server(garbage, "127.0.0.1", 0)
    closed_port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    async with not_http:
        port = not_http.sockets[0].getsockname()[1]
        for url, error in ((f"http://127.0.0.1:{port}/img", "RemoteProtocolError"),
                           (f"http://127.0.0.1:{closed_port}/img", "ConnectError")):
            with pytest.raises(ProviderUnavailable) as caught:
                await make().fetch(url)
            assert f"image download failed: {error}" in (caught.value.detail or "")


async def test_loopback_is_refused_unless_whitelisted(server: Server, make: Make) -> None:
    downloader = make(whitelist=())
    for url in (f"{server.base}/img", f"http://localhost:{server.port}/img", f"http://[::1]:{server.port}/img",
                f"http://2130706433:{server.port}/img", f"http://app.localhost:{server.port}/img"):
        with pytest.raises(BadImage) as caught:
            await downloader.fetch(url)
        assert_refused(caught)
    assert server.hits == []


@pytest.mark.parametrize("url", ["ftp://cdn.example/a.png", "file:///etc/passwd", "http:///a.png",
                                 "data:image/png;base64,AAAA", "http://[zz]/a.png"])
async def test_only_http_urls_with_a_host_are_fetched(make: Make, url: str) -> None:
    with pytest.raises(BadImage) as caught:
        await make(resolver=Resolver(["93.184.216.34"])).check_url(url)
    assert_refused(caught)


async def test_hostname_resolving_to_a_private_address_is_refused(make: Make) -> None:
    resolver = Resolver(["93.184.216.34", "10.1.2.3"])
    with pytest.raises(BadImage) as caught:
        await make(resolver=resolver).fetch("https://cdn.example/a.png")
    assert_refused(caught, "cdn.example", "10.1.2.3")
    assert resolver.calls == [("cdn.example", 443)]


async def test_hostname_resolving_to_a_public_address_passes_the_check(make: Make) -> None:
    resolver = Resolver(["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
    await make(whitelist=(), resolver=resolver).check_url("https://CDN.example./a.png")
    assert resolver.calls == [("cdn.example", 443)]


async def test_connection_goes_to_the_validated_address(server: Server, make: Make, png: bytes) -> None:
    # Public at the pre-check, the (whitelisted) local server at connect time: the socket goes to the
    # address the connect-time check validated, while the Host header keeps the name.
    resolver = Resolver(["93.184.216.34"], ["127.0.0.1"])
    assert await make(resolver=resolver).fetch(f"http://cdn.example:{server.port}/img") == png
    assert resolver.calls == [("cdn.example", server.port)] * 2
    assert server.hosts == [f"cdn.example:{server.port}"]


async def test_dns_rebinding_is_caught_at_connect_time(server: Server, make: Make) -> None:
    resolver = Resolver(["93.184.216.34"], ["10.0.0.7"])
    with pytest.raises(BadImage) as caught:
        await make(resolver=resolver).fetch(f"http://cdn.example:{server.port}/img")
    assert_refused(caught, "10.0.0.7")
    assert len(resolver.calls) == 2  # pre-check passed; the connect-time check refused
    assert server.hits == []


async def test_unresolvable_host_is_provider_unavailable(make: Make) -> None:
    with pytest.raises(ProviderUnavailable):
        await make(resolver=Resolver(OSError("NXDOMAIN"))).fetch("https://cdn.example/a.png")


async def test_with_a_proxy_unresolvable_names_are_left_to_the_proxy(make: Make) -> None:
    downloader = make(whitelist=(), proxy="http://127.0.0.1:9", resolver=Resolver(OSError("no local DNS")))
    await downloader.check_url("https://cdn.example/a.png")
    for url in ("http://localhost/a.png", "http://10.0.0.1/a.png", "http://[fd00::1]/a.png"):
        with pytest.raises(BadImage):
            await downloader.check_url(url)
    resolving = make(whitelist=(), proxy="http://127.0.0.1:9", resolver=Resolver(["192.168.1.20"]))
    with pytest.raises(BadImage) as caught:
        await resolving.check_url("https://cdn.example/a.png")
    assert_refused(caught, "192.168.1.20")


async def test_log_detail_keeps_no_credentials_or_signed_query(make: Make) -> None:
    with pytest.raises(BadImage) as caught:
        await make().fetch("http://user:hunter2@10.0.0.1/img.png?X-Amz-Signature=TOKEN123#frag")
    assert_refused(caught, "http://10.0.0.1/img.png")
    assert "hunter2" not in (caught.value.detail or "")
    assert "TOKEN123" not in (caught.value.detail or "")
