"""``pixbot doctor``: what is configured, what each provider's model can do, and what is missing."""

from __future__ import annotations

from typing import Any

from core.config import AppConfig
from core.errors import PixbotError
from core.provider import ImageProvider, ProviderRequest
from core.service import ImageService

__all__ = ["diagnose", "ping_provider", "render"]


async def diagnose(config: AppConfig, service: ImageService, *, ping: bool = False) -> dict[str, Any]:
    """A JSON-able report. Calls a provider only with ``ping`` (one small generation each)."""
    image = config.image
    chain = image.chain()
    in_use = {name for name, _ in chain}
    providers = []
    for name, adapter in service.providers.items():
        model = next((m for n, m in chain if n == name and m), adapter.default_model)
        missing = adapter.missing()
        row: dict[str, Any] = {
            "name": name, "model": model, "in_use": name in in_use, "configured": not missing,
            # Needs nothing (ollama's local default) is not the same as set up by the operator.
            "set_up": not missing and (name in config.providers or name in in_use),
            "missing": missing, "capabilities": adapter.capabilities(model).to_dict(),
        }
        if ping and not missing and name in in_use:
            failure = await ping_provider(adapter, model)
            row["ping"] = "ok" if failure is None else f"{failure.category}: {failure}"
        providers.append(row)
    primary = next(p for p in providers if p["name"] == image.provider)
    problems = [f"the default provider {image.provider} is not configured: set {', '.join(primary['missing'])}"
                ] if primary["missing"] else []
    if primary.get("ping", "ok") != "ok":
        problems.append(f"the default provider {image.provider} failed the ping: {primary['ping']}")
    bots = config.bots
    return {
        "ok": not problems,
        "problems": problems,
        "config_path": str(config.config_path) if config.config_path else None,
        "data_dir": str(config.data_dir),
        "storage": dict(service.storage_info),
        "processes": [{"owner": p.owner, "roles": list(p.roles), "started_at": p.started_at, "seen_at": p.seen_at}
                      for p in await service.processes()],
        "media_dir": str(config.media_dir),
        "default": {"provider": image.provider, "model": image.model, "aspect_ratio": image.default_aspect_ratio,
                    "size": image.default_image_size, "max_images_per_turn": image.max_images_per_turn,
                    "fallbacks": [f.model_dump() for f in image.fallbacks]},
        "front_ends": {"telegram": bots.telegram.active, "discord": bots.discord.active, "api": bots.api.enabled},
        "access": _access(config),
        "providers": providers,
    }


async def ping_provider(adapter: ImageProvider, model: str) -> PixbotError | None:
    """One small generation (billed like any image): None when it worked, else the classified error."""
    try:
        caps = adapter.capabilities(model)
        await adapter.generate(ProviderRequest(prompt="a small red square", model=model, size=_smallest(caps.sizes)))
    except PixbotError as exc:
        return exc
    return None


def _smallest(sizes: frozenset[str] | None) -> str | None:
    """The cheapest size a model lists (a ping is billed like any image), or None for its default."""
    pixels = {s: int(w) * int(h) for s in sizes or () if (w := s.partition("x")[0]).isdigit()
              and (h := s.partition("x")[2]).isdigit()}
    return min(pixels, key=pixels.__getitem__) if pixels else None


def _who(allow_from: list[str]) -> str:
    return "everyone" if "*" in allow_from else ("only " + ", ".join(allow_from) if allow_from else "nobody")


def _access(config: AppConfig) -> dict[str, str]:
    """Who each enabled front-end answers, in words: the first thing to check after editing allowFrom."""
    bots, access = config.bots, {}
    if bots.telegram.active:
        telegram = bots.telegram
        groups = "in groups when mentioned" if telegram.group_policy == "mention" else "in groups, every message"
        access["telegram"] = f"{_who(telegram.allow_from)} ({groups})"
    if bots.discord.active:
        discord = bots.discord
        where = f"servers {', '.join(discord.allow_guilds)}" if discord.allow_guilds else "any server and DMs"
        if discord.allow_roles:  # with roles set, "*" no longer lets everyone in: listed users and role holders
            users = [u for u in discord.allow_from if u != "*"]
            who = f"anyone with role {', '.join(discord.allow_roles)}" + (f", and {', '.join(users)}" if users else "")
        else:
            who = _who(discord.allow_from)
        access["discord"] = f"{who}, in {where}"
    if bots.api.enabled:
        api = bots.api
        key = "a bearer key is required" if api.api_key else "no key: anyone who can reach it"
        access["api"] = f"http://{api.host}:{api.port}, {key}"
    return access


def _cut(listing: str, width: int) -> str:
    """A comma-separated list cut to ``width`` at a comma, with "…" when something was left out."""
    if len(listing) <= width:
        return listing
    return listing[: width - 1].rsplit(",", 1)[0] + "…"


def render(report: dict[str, Any]) -> str:
    default = report["default"]
    lines = [
        f"config:    {report['config_path'] or '(none: defaults)'}",
        f"data dir:  {report['data_dir']}",
        *([f"storage:   {storage['engine']} {storage['location']} (schema {storage['schema_version']})"]
          if (storage := report.get("storage")) else []),
        *(f"process:   {p['owner']}  {', '.join(p['roles']) or 'no front-end'}  (up since {p['started_at'][:19]})"
          for p in report.get("processes", ())),
        f"default:   {default['provider']} / {default['model']}  (ratio {default['aspect_ratio']}, size "
        f"{default['size']}, up to {default['max_images_per_turn']} per request)",
        "fallbacks: " + (", ".join(f"{f['provider']}/{f['model'] or 'default'}" for f in default["fallbacks"])
                         or "none"),
        "front-ends: " + ", ".join(f"{k} {'on' if v else 'off'}" for k, v in report["front_ends"].items()),
        *(f"  {name} answers {who}" for name, who in report["access"].items()),
        "",
        f"{'provider':<11} {'status':<14} {'model':<28} {'edits':<6} {'refs':<5} {'ratios':<22} sizes",
    ]
    for p in report["providers"]:
        caps = p["capabilities"]
        status = ("ready" if p["set_up"] else "not set up") if p["configured"] else (
            "needs " + ",".join(m.rsplit(".", 1)[-1] for m in p["missing"]))
        mark = "*" if p["in_use"] else " "
        ratios = caps["ratios"] if isinstance(caps["ratios"], str) else ",".join(caps["ratios"]) or "ignored"
        sizes = caps["sizes"] if isinstance(caps["sizes"], str) else ",".join(caps["sizes"]) or "ignored"
        edits = "yes" if caps["edits"] else "no"
        lines.append(f"{mark}{p['name']:<10} {status:<14} {p['model'][:28]:<28} "
                     f"{edits:<6} {caps['max_references']:<5} {_cut(ratios, 22):<22} {sizes}")
        if "ping" in p:
            lines.append(f"  ping: {p['ping']}")
    if any("ping" in p for p in report["providers"]):
        lines += ["", "--ping made one small image per provider in use; providers bill it like any other."]
    lines += ["", "* = in use (default or fallback)"]
    lines += [f"problem: {problem}" for problem in report["problems"]]
    return "\n".join(lines)
