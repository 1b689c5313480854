"""One aiohttp server for pixbot's web face: the studio's pages (``bots.web``), the OpenAI-compatible
API under ``/v1`` (``bots.api``) and ``/healthz``, on ``bots.api.host``/``port``."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Final

from aiohttp import web

from bots.chat import ChatFlow
from bots.http_api import make_api
from bots.web import gallery, setup, studio
from bots.web.events import ThreadEvents
from bots.web.render import STATIC_DIR, TEMPLATES, Templates, html
from bots.web.setup import RECONFIGURE, Reconfigure
from bots.web.signin import KEYS, Keys, load_token, sign_in_guard, start_session
from bots.web.studio import STUDIO, Studio
from bots.web.surface import PLATFORM, WebSurface
from core.config import AppConfig
from core.errors import ConfigError
from core.service import ImageService
from core.stores import JobRecord

__all__ = ["make_server", "run_server"]

log = logging.getLogger(__name__)

CATCH_UP = web.AppKey("pixbot_web_catch_up", asyncio.Task[None])
#: How long running studio jobs may finish at shutdown before they are cancelled (images kept).
DRAIN_GRACE_S: Final = 10.0


async def _no_reconfigure() -> list[str]:
    return ["Restart pixbot to use the new settings."]


def make_server(config: AppConfig, service: ImageService, *, token: str | None = None,
                reconfigure: Reconfigure | None = None) -> web.Application:
    """The application: the API when ``bots.api.enabled``, the studio when ``bots.web.enabled``."""
    bots = config.bots
    app = web.Application(client_max_size=bots.api.max_body_bytes,
                          middlewares=[sign_in_guard] if bots.web.enabled else [])
    app.router.add_get("/healthz", _healthz)
    if bots.api.enabled:
        app.add_subapp("/v1", make_api(config, service))
    if bots.web.enabled:
        app[KEYS] = Keys(token or load_token(config))
        app[TEMPLATES] = Templates()
        events = ThreadEvents(service.events)  # the storage's bus: shared with every replica on PostgreSQL
        flow = ChatFlow(service)
        app[STUDIO] = Studio(service, flow, events)
        app[RECONFIGURE] = reconfigure or _no_reconfigure
        app.router.add_routes([web.get("/login", _login_page), web.post("/login", _login),
                               *studio.routes(), *gallery.routes(), *setup.routes()])
        app.router.add_static("/static/", STATIC_DIR, append_version=True)
        app.on_startup.append(_deliver_pending)
        app.on_shutdown.append(_drain)
    return app


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _login_page(request: web.Request) -> web.StreamResponse:
    wrong = bool(request.query.get("wrong"))
    return html(request, "login.html", status=403 if wrong else 200, wrong=wrong,
                next=_local(request.query.get("next", "/")))


async def _login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if not request.app[KEYS].token_ok(str(form.get("token", ""))):
        return html(request, "login.html", status=403, wrong=True, next=_local(str(form.get("next", "/"))))
    response = web.HTTPSeeOther(_local(str(form.get("next", "/"))))
    start_session(response, request.app[KEYS], request.secure)
    raise response


def _local(target: str) -> str:
    """Only a path on this site (never ``//elsewhere``) as a place to return to after signing in."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


async def _deliver_pending(app: web.Application) -> None:
    """Studio jobs a previous run stored but never announced, and jobs a crash cut short, are recorded
    on their threads (a page renders them from the ledger)."""
    state = app[STUDIO]

    async def surface_for(record: JobRecord) -> WebSurface:
        return WebSurface(state.service, state.events, record.chat_key.partition(":")[2],
                          recorded=record.origin, job_id=record.id)

    service = state.service
    state.flow.inflight.spawn(state.flow.deliver_pending(await service.pending_deliveries(PLATFORM), surface_for),
                              None, name="web:pending")
    state.flow.inflight.spawn(state.flow.notify_interrupted(await service.take_interrupted(PLATFORM), surface_for),
                              None, name="web:interrupted")
    # Studio jobs of another process that stopped (a replica on the same database), from now on.
    app[CATCH_UP] = asyncio.create_task(state.flow.keep_catching_up(PLATFORM, surface_for, state.stopping),
                                        name="web:catch-up")


async def _drain(app: web.Application) -> None:
    state = app[STUDIO]
    state.stopping.set()
    state.events.close()
    await state.flow.drain(DRAIN_GRACE_S)


async def run_server(config: AppConfig, service: ImageService, stop: asyncio.Event,
                     reconfigure: Reconfigure | None = None) -> None:
    """Serve until ``stop``; with the studio on, print its sign-in URL (one line, on stdout)."""
    api = config.bots.api
    app = make_server(config, service, reconfigure=reconfigure)
    service.roles.update(name for name, on in (("web", config.bots.web.enabled), ("api", api.enabled)) if on)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, api.host, api.port)
        try:
            await site.start()
        except (OSError, OverflowError) as exc:  # in use, not an address of this machine, port out of range
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError(f"cannot listen on {api.host}:{api.port} (bots.api.host and port): {reason}") from None
        for address in runner.addresses:
            host, port = address[0], address[1]
            origin = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
            if config.bots.api.enabled:
                log.info("pixbot API listening on %s/v1 (auth %s)", origin, "on" if api.api_key else "off")
            if config.bots.web.enabled:
                print(f"pixbot studio: {origin}/?token={app[KEYS].token}", file=sys.stdout, flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


