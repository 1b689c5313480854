"""Sign-in for the studio, Jupyter's way: one token (``bots.web.token``, or one generated once and kept in
the data dir, mode 0600); the start-up line carries it as ``?token=``; a valid token sets a signed,
HttpOnly, SameSite=Strict session cookie. Every page and event stream needs the session, every POST
its CSRF token."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlencode

from aiohttp import web

from core.config import AppConfig
from core.errors import ConfigError
from core.net import is_loopback_host

__all__ = ["COOKIE", "SESSION", "Keys", "Session", "check_csrf", "load_token", "sign_in_guard"]

COOKIE: Final = "pixbot_session"
TOKEN_FILE: Final = "studio-token"
CSRF_HEADER: Final = "X-CSRF-Token"
#: A session lasts this long; signing in again with the token starts a new one.
SESSION_MAX_AGE_S: Final = 30 * 24 * 3600
#: Reachable without a session: the sign-in page, assets, the health check, and the API (its own key).
_OPEN_PREFIXES: Final = ("/login", "/static/", "/healthz", "/v1/")

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def load_token(config: AppConfig) -> str:
    """``bots.web.token``, else the token kept in the data dir (made on first start). A studio reachable
    from other machines needs a token its operator chose: a generated one printed in a log is not enough."""
    configured = config.bots.web.token
    host = config.bots.api.host
    if not configured and not is_loopback_host(host):
        raise ConfigError(f"bots.api.host {host!r} is not loopback: set bots.web.token to expose the studio "
                          "(or bots.web.enabled false)")
    if configured:
        return configured
    path = config.data_dir / TOKEN_FILE
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""
    if token:
        return token
    return _create_token(path)


def _create_token(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(temp, path)  # first writer wins when two processes start together
    except FileExistsError:
        token = path.read_text(encoding="utf-8").strip()
    finally:
        temp.unlink(missing_ok=True)
    return token


@dataclass(frozen=True, slots=True)
class Keys:
    """Everything derived from the token, so every replica given the same token agrees."""

    token: str

    @property
    def _secret(self) -> bytes:
        return hmac.new(self.token.encode(), b"pixbot studio session", hashlib.sha256).digest()

    def token_ok(self, presented: str) -> bool:
        return hmac.compare_digest(presented.strip().encode(), self.token.encode())

    def seal(self, session_id: str) -> str:
        return f"{session_id}.{self._mac('session', session_id)}"

    def open(self, cookie: str) -> str | None:
        session_id, _, mac = cookie.partition(".")
        if session_id and hmac.compare_digest(mac.encode(), self._mac("session", session_id).encode()):
            return session_id
        return None

    def csrf(self, session_id: str) -> str:
        return self._mac("csrf", session_id)

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self._secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()[:40]


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    csrf: str


KEYS = web.AppKey("pixbot_web_keys", Keys)
SESSION = web.RequestKey("pixbot_session", Session)


def start_session(response: web.StreamResponse, keys: Keys, secure: bool) -> None:
    response.set_cookie(COOKIE, keys.seal(secrets.token_urlsafe(18)), max_age=SESSION_MAX_AGE_S, path="/",
                        httponly=True, samesite="Strict", secure=secure)


def _session(request: web.Request, keys: Keys) -> Session | None:
    session_id = keys.open(request.cookies.get(COOKIE, ""))
    return Session(session_id, keys.csrf(session_id)) if session_id else None


@web.middleware
async def sign_in_guard(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """``?token=`` signs in (then the same URL without it); no session: pages go to /login, the rest 401."""
    if request.path.startswith(_OPEN_PREFIXES):
        return await handler(request)
    keys = request.app[KEYS]
    presented = request.query.get("token")
    if presented is not None and request.method == "GET":
        if not keys.token_ok(presented):
            raise web.HTTPFound("/login?wrong=1")
        query = {k: v for k, v in request.query.items() if k != "token"}
        response = web.HTTPFound(request.rel_url.with_query(query).path_qs)
        start_session(response, keys, request.secure)
        raise response
    session = _session(request, keys)
    if session is None:
        if request.method == "GET" and "text/event-stream" not in request.headers.get("Accept", ""):
            target = request.rel_url.path_qs
            raise web.HTTPFound(f"/login?{urlencode({'next': target})}" if request.path != "/" else "/login")
        raise web.HTTPUnauthorized(text="Sign in first.")
    request[SESSION] = session
    if request.method == "POST":
        await check_csrf(request, session)
    return await handler(request)


async def check_csrf(request: web.Request, session: Session) -> None:
    """The page's token, in a header (scripts) or a form field (plain forms)."""
    presented = request.headers.get(CSRF_HEADER)
    if presented is None and request.content_type == "application/x-www-form-urlencoded":
        presented = str((await request.post()).get("csrf", ""))
    if not presented or not hmac.compare_digest(presented.encode(), session.csrf.encode()):
        raise web.HTTPForbidden(text="This form has expired. Reload the page and try again.")
