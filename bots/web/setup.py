"""The set-up page: choose the default provider (each shown with what it can do), enter its key, base
and model, **Check** it with the same ping as ``pixbot doctor --ping``, **Save** it into config.json
(atomically, mode 0600, keeping ``${VAR}`` references and every key it does not manage). Optional
Telegram and Discord tokens with their own check. A saved secret never goes back to the page."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, Final

from aiohttp import web

from bots.app import open_adapter
from bots.doctor import ping_provider
from bots.token_checks import check_discord, check_telegram
from bots.web.render import html
from bots.web.studio import STUDIO, set_up
from core.config import PROVIDER_NAMES, ProviderConfig
from core.config_write import save_config, secret_hint
from core.errors import PixbotError
from core.net import create_client
from core.service import ImageService

__all__ = ["RECONFIGURE", "Reconfigure", "routes"]

log = logging.getLogger(__name__)

#: Reloads config.json into the running process and starts front-ends newly set up; returns what it
#: did in words ("Telegram bot started.", "Restart pixbot to …").
Reconfigure = Callable[[], Awaitable[list[str]]]
RECONFIGURE: web.AppKey[Reconfigure] = web.AppKey("pixbot_reconfigure")
_CHECK_TIMEOUT_S: Final = 30.0


def _providers(service: ImageService) -> list[dict[str, Any]]:
    image = service.config.image
    rows = []
    for name in PROVIDER_NAMES:
        adapter = service.providers.get(name)
        if adapter is None:
            continue
        configured = service.config.provider(name)
        model = image.model if name == image.provider else adapter.default_model
        caps = adapter.capabilities(model)
        rows.append({
            "name": name, "model": model, "api_base": configured.api_base or "",
            "key_hint": secret_hint(configured.api_key), "ready": not adapter.missing(),
            "edits": caps.edits, "references": caps.max_references,
            "ratios": "any" if caps.ratios is None else (", ".join(sorted(caps.ratios)) or "model decides"),
            "sizes": "any" if caps.sizes is None else (", ".join(sorted(caps.sizes)) or "model decides"),
        })
    return rows


async def setup_page(request: web.Request) -> web.StreamResponse:
    service = request.app[STUDIO].service
    bots = service.config.bots
    return html(request, "setup.html", providers=_providers(service), current=service.default_provider,
                ready=set_up(service), telegram_hint=secret_hint(bots.telegram.token),
                discord_hint=secret_hint(bots.discord.token), config_path=str(service.config.config_path or ""))


def _provider_form(service: ImageService, form: Any) -> tuple[str, ProviderConfig, str]:
    name = str(form.get("provider", ""))
    if name not in service.providers:
        raise web.HTTPBadRequest(text="Choose a provider from the list.")
    saved = service.config.provider(name)
    key = str(form.get("api_key", "")).strip() or saved.api_key
    base = str(form.get("api_base", "")).strip() or saved.api_base
    model = str(form.get("model", "")).strip() or service.providers[name].default_model
    return name, saved.model_copy(update={"api_key": key, "api_base": base}), model


async def check(request: web.Request) -> web.StreamResponse:
    """Check: one small image with what the form says (the saved key when the field is left empty)."""
    service = request.app[STUDIO].service
    name, settings, model = _provider_form(service, await request.post())
    async with AsyncExitStack() as stack:
        adapter = open_adapter(name, settings, service.config.tools.ssrf_whitelist, stack,
                               timeout_cap=_CHECK_TIMEOUT_S)
        missing = adapter.missing()
        if missing:
            return web.json_response({"ok": False, "message": f"{name} needs {', '.join(missing)}."})
        failure = await ping_provider(adapter, model)
    if failure is None:
        return web.json_response({"ok": True, "message": f"{name} / {model} made a test image. It works."})
    log.info("setup check of %s failed: %s (%s)", name, failure.category, failure.detail or failure)
    return web.json_response({"ok": False, "message": f"{failure.category}: {failure.public_message}"})


async def check_bot(request: web.Request) -> web.StreamResponse:
    """Check a Telegram or Discord token (the saved one when the field is left empty)."""
    service = request.app[STUDIO].service
    form = await request.post()
    kind = str(form.get("bot", ""))
    if kind not in ("telegram", "discord"):
        raise web.HTTPBadRequest(text="Choose telegram or discord.")
    bot = service.config.bots.telegram if kind == "telegram" else service.config.bots.discord
    token = str(form.get("token", "")).strip() or bot.token
    if not token:
        return web.json_response({"ok": False, "message": "Enter a token first."})
    checker = check_telegram if kind == "telegram" else check_discord
    client = create_client(timeout=_CHECK_TIMEOUT_S)
    try:
        result = await checker(token, bot.api_base, client)
    finally:
        await client.aclose()
    return web.json_response({"ok": result.ok, "message": result.message})


async def save(request: web.Request) -> web.StreamResponse:
    """Save the default provider into config.json, then apply it to the running process."""
    service = request.app[STUDIO].service
    form = await request.post()
    name, _, model = _provider_form(service, form)
    typed = {field: str(form.get(field, "")).strip() for field in ("api_key", "api_base")}
    return await _save(request, {
        "tools.imageGeneration.provider": name,
        "tools.imageGeneration.model": model,
        f"providers.{name}.apiKey": typed["api_key"] or None,
        f"providers.{name}.apiBase": typed["api_base"] or None,
    })


async def save_bot(request: web.Request) -> web.StreamResponse:
    """Save a Telegram or Discord token; the bot starts at once when it was not running."""
    form = await request.post()
    kind, token = str(form.get("bot", "")), str(form.get("token", "")).strip()
    if kind not in ("telegram", "discord"):
        raise web.HTTPBadRequest(text="Choose telegram or discord.")
    if not token:
        return web.json_response({"ok": False, "message": "Enter a token first."})
    return await _save(request, {f"bots.{kind}.token": token})


async def _save(request: web.Request, changes: dict[str, object | None]) -> web.StreamResponse:
    path = request.app[STUDIO].service.config.config_path
    if path is None:
        return web.json_response({"ok": False, "message": "pixbot was started without a config file path."})
    try:
        await asyncio.to_thread(save_config, path, changes)
        done = await request.app[RECONFIGURE]()
    except PixbotError as exc:  # the operator is reading: a config problem names its key
        return web.json_response({"ok": False, "message": str(exc)})
    return web.json_response({"ok": True, "message": " ".join([f"Saved to {path}.", *done])})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/setup", setup_page),
        web.post("/setup/check", check),
        web.post("/setup/check-bot", check_bot),
        web.post("/setup", save),
        web.post("/setup/bot", save_bot),
    ]
