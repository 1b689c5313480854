"""Checking a Telegram or Discord bot token before it is saved: one read-only call that says who the token
signs in as (Telegram ``getMe``, Discord ``GET /users/@me``), told in plain words.

The caller's ``httpx.AsyncClient`` sets the timeouts (and any proxy). A check never raises for network or
HTTP trouble, and the token appears in no message and no log line:
Telegram wants it in the URL path, which httpx logs at INFO, so a filter on the ``httpx`` logger masks
``/bot<token>/`` in every record.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
from dataclasses import dataclass
from typing import Any, Final

import httpx

from core.net import redact

__all__ = ["DEFAULT_DISCORD_API", "DEFAULT_TELEGRAM_API", "Check", "check_discord", "check_telegram",
           "discord_api_base"]

DEFAULT_TELEGRAM_API: Final = "https://api.telegram.org"
DEFAULT_DISCORD_API: Final = "https://discord.com/api/v10"
_VERSIONED = re.compile(r"/api/v\d+$")  # as bots/discord/runner.py's configure_endpoints
_TELEGRAM_TOKEN = re.compile(r"\d+:[A-Za-z0-9_-]+")
_DISCORD_TOKEN = re.compile(r"[A-Za-z0-9._-]+")
_TOKEN_IN_URL = re.compile(r"/bot\d+:[A-Za-z0-9_-]+")
#: Discord asks API clients to name themselves this way.
_DISCORD_UA: Final = "DiscordBot (pixbot, 0.1)"
_MAX_DETAIL = 160
#: What a request can raise besides answering: transport trouble, a malformed apiBase, OS errors.
_FAILURES = (httpx.HTTPError, httpx.InvalidURL, OSError)


@dataclass(frozen=True)
class Check:
    """The outcome of a token check: ``message`` is a plain sentence for the page, without the token."""

    ok: bool
    message: str


class _MaskBotTokens(logging.Filter):
    """Masks Telegram tokens in URLs (``/bot123:abc/getMe`` → ``/bot***/getMe``) in httpx's request log."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if _TOKEN_IN_URL.search(text):
            record.msg, record.args = _TOKEN_IN_URL.sub("/bot***", text), None
        return True


def _install_log_filter() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _MaskBotTokens) for f in logger.filters):
        logger.addFilter(_MaskBotTokens())


_install_log_filter()


def discord_api_base(api_base: str | None) -> str:
    """The REST root ``bots.discord.apiBase`` means: `/api/v10` is added unless it names a version."""
    if not api_base:
        return DEFAULT_DISCORD_API
    base = api_base.strip().rstrip("/")
    return base if _VERSIONED.search(base) else base + "/api/v10"


async def check_telegram(token: str, api_base: str | None, client: httpx.AsyncClient) -> Check:
    """``getMe`` with ``token`` on ``api_base`` (Telegram's own when None): who the bot is, or why not."""
    token = token.strip()
    if not token:
        return Check(False, "No Telegram token given.")
    if not _TELEGRAM_TOKEN.fullmatch(token):
        return Check(False, "That is not a Telegram bot token: it looks like 123456789:AAE… (digits, a colon, "
                            "then letters). Copy it again from @BotFather.")
    base = (api_base or "").strip().rstrip("/") or DEFAULT_TELEGRAM_API
    where = _display(base)
    try:
        response = await client.get(f"{base}/bot{token}/getMe")
        body = _json(response)
    except _FAILURES as exc:
        return _failed(where, exc, token)
    result = body.get("result") if isinstance(body, dict) else None
    if response.status_code == 200 and isinstance(body, dict) and body.get("ok") is True and isinstance(result, dict):
        username, name = result.get("username"), result.get("first_name")
        who = f"@{username}" if username else str(name or f"bot {result.get('id', '?')}")
        return _check(True, f"Signed in as {who}.", token)
    description = body.get("description") if isinstance(body, dict) else None
    status = _status(response, description)
    if response.status_code == 401:
        return _check(False, f"Telegram refused the token ({status}). Copy it again from @BotFather.", token)
    if response.status_code == 404:
        return _check(False, f"Telegram answered {status}: the token is not one it knows, or {where} is not "
                             "a Bot API server (check bots.telegram.apiBase).", token)
    if response.status_code == 429:
        return _check(False, f"Telegram is limiting requests ({status}); try again in a minute.", token)
    if response.status_code >= 500:
        return _check(False, f"Telegram could not answer ({status}); try again later.", token)
    if 400 <= response.status_code < 500:
        return _check(False, f"Telegram refused the token ({status}).", token)
    return _check(False, f"{where} did not answer like the Telegram Bot API ({status}); "
                         "check bots.telegram.apiBase.", token)


async def check_discord(token: str, api_base: str | None, client: httpx.AsyncClient) -> Check:
    """``GET /users/@me`` with ``Authorization: Bot <token>`` on ``api_base`` (Discord's own when None)."""
    token = token.strip()
    if not token:
        return Check(False, "No Discord token given.")
    if token.lower().startswith("bot "):
        return Check(False, "Paste the token without the word 'Bot' in front of it.")
    if not _DISCORD_TOKEN.fullmatch(token):
        return Check(False, "That is not a Discord bot token (letters, digits, dots, - and _ only). Copy it "
                            "again from the developer portal (Bot → Reset Token).")
    base = discord_api_base(api_base)
    where = _display(base)
    headers = {"Authorization": f"Bot {token}", "User-Agent": _DISCORD_UA}
    try:
        response = await client.get(f"{base}/users/@me", headers=headers)
        body = _json(response)
    except _FAILURES as exc:
        return _failed(where, exc, token)
    if response.status_code == 200 and isinstance(body, dict) and body.get("username"):
        name, tag = str(body["username"]), body.get("discriminator")
        who = f"{name}#{tag}" if tag and tag != "0" else name
        return _check(True, f"Signed in as {who}." if body.get("bot", True) else
                      f"That token signs in as {who}, which is not a bot account.", token)
    message = body.get("message") if isinstance(body, dict) else None
    status = _status(response, None if message and str(message).startswith(str(response.status_code)) else message)
    if response.status_code == 401:
        return _check(False, f"Discord refused the token ({status}). Copy it again from the developer portal "
                             "(Bot → Reset Token).", token)
    if response.status_code == 404:
        return _check(False, f"{where} has no /users/@me ({status}): check bots.discord.apiBase.", token)
    if response.status_code == 429:
        return _check(False, f"Discord is limiting requests ({status}); try again in a minute.", token)
    if response.status_code >= 500:
        return _check(False, f"Discord could not answer ({status}); try again later.", token)
    if 400 <= response.status_code < 500:
        return _check(False, f"Discord refused the token ({status}).", token)
    return _check(False, f"{where} did not answer like Discord's API ({status}); check bots.discord.apiBase.",
                  token)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:  # not JSON (json.JSONDecodeError, or undecodable bytes)
        return None


def _status(response: httpx.Response, description: object) -> str:
    """``401 Unauthorized``: the status with the server's own words (or the reason phrase)."""
    text = str(description).strip() if isinstance(description, str) and description.strip() else ""
    text = text or response.reason_phrase or "no reason given"
    return f"{response.status_code} {text[:_MAX_DETAIL]}"


def _display(base: str) -> str:
    """The API root as shown in messages: without any user:password part."""
    try:
        url = httpx.URL(base)
    except (httpx.InvalidURL, TypeError, ValueError):
        return base
    return str(url.copy_with(userinfo=b"")) if url.userinfo else base


def _failed(where: str, exc: BaseException, token: str) -> Check:
    if isinstance(exc, httpx.TimeoutException):
        return _check(False, f"Could not reach {where}: it did not answer in time (timed out).", token)
    if isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        return _check(False, f"{where} is not a usable address ({exc}); check the apiBase setting.", token)
    return _check(False, f"Could not reach {where}: {_reason(exc)}.", token)


def _reason(exc: BaseException) -> str:
    """The root cause of a connection failure in a few words (httpx wraps it two or three times)."""
    seen: set[int] = set()
    queue: list[BaseException] = [exc]
    deepest = exc
    while queue:
        err = queue.pop(0)
        if id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, ConnectionRefusedError):
            return "connection refused"
        if isinstance(err, socket.gaierror):
            return "the host name was not found"
        if isinstance(err, ssl.SSLCertVerificationError):
            return f"its TLS certificate was not accepted ({err.verify_message or err.reason})"
        if isinstance(err, ssl.SSLError):
            return f"the TLS handshake failed ({err.reason or err})"
        if isinstance(err, (ConnectionResetError, ConnectionAbortedError)):
            return "the connection was closed"
        if isinstance(err, BaseExceptionGroup):
            queue.extend(err.exceptions)
        if isinstance(err, OSError) and err.strerror:
            deepest = err
        for nxt in (err.__cause__, err.__context__):
            if nxt is not None:
                queue.append(nxt)
    if isinstance(deepest, OSError) and deepest.strerror:
        return deepest.strerror.lower()
    text = str(exc).strip()
    return (text[:_MAX_DETAIL] or type(exc).__name__).rstrip(".")


def _check(ok: bool, message: str, token: str) -> Check:
    """A Check whose message has the token (should a server echo it) masked."""
    return Check(ok, redact(message, [token]))
