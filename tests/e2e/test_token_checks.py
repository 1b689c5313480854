"""Token checks of the set-up page against the loopback Telegram and Discord fakes: who a good token signs
in as, plain words for a refused token, an unreachable or silent server, and never the token itself."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from bots.token_checks import Check, check_discord, check_telegram, discord_api_base
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_telegram import FakeTelegramServer

WRONG_TELEGRAM = "123456:WRONG-secret-part"
WRONG_DISCORD = "wrong-discord-token.abcdefghijkl"


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer() as server:
        yield server


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield http


@pytest.fixture
def closed_base() -> Iterator[str]:
    """A loopback address nothing listens on: the socket is bound, never listening, so connections are
    refused at once and no other server can take the port during the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
async def silent_base() -> AsyncIterator[str]:
    """A server that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


def assert_no_secret(check: Check, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in check.message
        assert secret.split(":")[-1] not in check.message


# --- Telegram -----------------------------------------------------------------------------------------


async def test_telegram_good_token_names_the_bot(telegram: FakeTelegramServer, client: httpx.AsyncClient) -> None:
    check = await check_telegram(telegram.token, telegram.base_url, client)
    assert check == Check(True, "Signed in as @pixbot_test_bot.")
    assert [c.ok for c in telegram.calls_of("getMe")] == [True]


async def test_telegram_base_with_a_trailing_slash_and_a_pasted_newline(telegram: FakeTelegramServer,
                                                                        client: httpx.AsyncClient) -> None:
    check = await check_telegram(f" {telegram.token}\n", telegram.base_url + "/", client)
    assert check.ok, check.message


async def test_telegram_wrong_token_is_refused(telegram: FakeTelegramServer, client: httpx.AsyncClient) -> None:
    check = await check_telegram(WRONG_TELEGRAM, telegram.base_url, client)
    assert not check.ok
    assert check.message.startswith("Telegram refused the token (401 Unauthorized).")
    assert_no_secret(check, WRONG_TELEGRAM, telegram.token)


async def test_telegram_malformed_token_is_not_sent(telegram: FakeTelegramServer, client: httpx.AsyncClient) -> None:
    check = await check_telegram("not a token/../getUpdates", telegram.base_url, client)
    assert not check.ok and "not a Telegram bot token" in check.message
    assert telegram.calls == []
    assert not (await check_telegram("  ", telegram.base_url, client)).ok


async def test_telegram_server_errors_are_told(telegram: FakeTelegramServer, client: httpx.AsyncClient) -> None:
    telegram.fail_next("getMe", 502, "Bad Gateway")
    busy = await check_telegram(telegram.token, telegram.base_url, client)
    assert busy == Check(False, "Telegram could not answer (502 Bad Gateway); try again later.")
    telegram.fail_next("getMe", 429, "Too Many Requests: retry after 5", retry_after=5)
    limited = await check_telegram(telegram.token, telegram.base_url, client)
    assert not limited.ok and "limiting" in limited.message
    assert_no_secret(busy, telegram.token)
    assert_no_secret(limited, telegram.token)


async def test_telegram_token_echoed_by_the_server_is_masked(telegram: FakeTelegramServer,
                                                             client: httpx.AsyncClient) -> None:
    telegram.fail_next("getMe", 400, f"Bad Request: bot {telegram.token} is deactivated")
    check = await check_telegram(telegram.token, telegram.base_url, client)
    assert check == Check(False, "Telegram refused the token (400 Bad Request: bot *** is deactivated).")


async def test_telegram_not_a_bot_api_server(discord_fake: FakeDiscord, client: httpx.AsyncClient) -> None:
    check = await check_telegram("123456:TEST-token", discord_fake.base_url, client)
    assert not check.ok
    assert "bots.telegram.apiBase" in check.message and "404" in check.message


async def test_telegram_closed_port(closed_base: str, client: httpx.AsyncClient) -> None:
    check = await check_telegram(WRONG_TELEGRAM, closed_base, client)
    assert check == Check(False, f"Could not reach {closed_base}: connection refused.")


async def test_telegram_timeout(silent_base: str) -> None:
    async with httpx.AsyncClient(timeout=0.3) as quick:
        check = await check_telegram(WRONG_TELEGRAM, silent_base, quick)
    assert not check.ok
    assert check.message.startswith(f"Could not reach {silent_base}") and "timed out" in check.message
    assert_no_secret(check, WRONG_TELEGRAM)


async def test_telegram_token_never_reaches_the_log(telegram: FakeTelegramServer, client: httpx.AsyncClient,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await check_telegram(telegram.token, telegram.base_url, client)
    await check_telegram(WRONG_TELEGRAM, telegram.base_url, client)
    logged = [r for r in caplog.records if r.name == "httpx"]
    assert logged, "httpx logs every request at INFO: the masking must be seen working"
    assert all("/bot***/getMe" in r.getMessage() for r in logged)
    for secret in (telegram.token, WRONG_TELEGRAM):
        assert secret.split(":")[-1] not in caplog.text


# --- Discord ------------------------------------------------------------------------------------------


async def test_discord_good_token_names_the_bot(discord_fake: FakeDiscord, client: httpx.AsyncClient) -> None:
    check = await check_discord(discord_fake.token, discord_fake.api_base, client)
    assert check == Check(True, "Signed in as pixbot.")
    assert [(c.method, c.path, c.status) for c in discord_fake.calls] == [("GET", "/users/@me", 200)]


async def test_discord_root_base_gets_the_api_version(discord_fake: FakeDiscord, client: httpx.AsyncClient) -> None:
    assert discord_api_base(None) == "https://discord.com/api/v10"
    assert discord_api_base(discord_fake.base_url + "/") == discord_fake.api_base
    assert discord_api_base("http://h/api/v9") == "http://h/api/v9"
    check = await check_discord(discord_fake.token, discord_fake.base_url, client)
    assert check.ok, check.message


async def test_discord_wrong_token_is_refused(discord_fake: FakeDiscord, client: httpx.AsyncClient) -> None:
    check = await check_discord(WRONG_DISCORD, discord_fake.api_base, client)
    assert not check.ok
    assert check.message.startswith("Discord refused the token (401 Unauthorized).")
    assert_no_secret(check, WRONG_DISCORD, discord_fake.token)
    assert [c.status for c in discord_fake.calls] == [401]


async def test_discord_pasted_bot_prefix_is_explained(discord_fake: FakeDiscord, client: httpx.AsyncClient) -> None:
    check = await check_discord(f"Bot {discord_fake.token}", discord_fake.api_base, client)
    assert not check.ok and "without the word 'Bot'" in check.message
    assert_no_secret(check, discord_fake.token)
    assert discord_fake.calls == []


async def test_discord_server_error(discord_fake: FakeDiscord, client: httpx.AsyncClient) -> None:
    discord_fake.fail_next("GET", r"^/users/@me$", 503, json={"message": "Service Unavailable", "code": 0})
    check = await check_discord(discord_fake.token, discord_fake.api_base, client)
    assert check == Check(False, "Discord could not answer (503 Service Unavailable); try again later.")


async def test_discord_closed_port(closed_base: str, client: httpx.AsyncClient) -> None:
    check = await check_discord(WRONG_DISCORD, closed_base, client)
    assert check == Check(False, f"Could not reach {closed_base}/api/v10: connection refused.")


async def test_discord_timeout(silent_base: str) -> None:
    async with httpx.AsyncClient(timeout=0.3) as quick:
        check = await check_discord(WRONG_DISCORD, silent_base, quick)
    assert not check.ok and "timed out" in check.message
    assert_no_secret(check, WRONG_DISCORD)
