"""``pixbot doctor``: what is configured, what each provider's model can do, and what is missing."""

from __future__ import annotations

from typing import Any

from core.config import AppConfig
from core.errors import PixbotError
from core.provider import ProviderRequest
from core.service import ImageService

__all__ = ["diagnose", "render"]


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
            "missing": missing, "capabilities": adapter.capabilities(model).to_dict(),
        }
        if ping and not missing and name in in_use:
            try:
                await adapter.generate(ProviderRequest(prompt="a small red square", model=model))
                row["ping"] = "ok"
            except PixbotError as exc:
                row["ping"] = f"{exc.category}: {exc}"
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
        "media_dir": str(config.media_dir),
        "default": {"provider": image.provider, "model": image.model, "aspect_ratio": image.default_aspect_ratio,
                    "size": image.default_image_size, "max_images_per_turn": image.max_images_per_turn,
                    "fallbacks": [f.model_dump() for f in image.fallbacks]},
        "front_ends": {"telegram": bots.telegram.active, "discord": bots.discord.active, "api": bots.api.enabled},
        "providers": providers,
    }


def render(report: dict[str, Any]) -> str:
    default = report["default"]
    lines = [
        f"config:    {report['config_path'] or '(none: defaults)'}",
        f"data dir:  {report['data_dir']}",
        f"default:   {default['provider']} / {default['model']}  (ratio {default['aspect_ratio']}, size "
        f"{default['size']}, up to {default['max_images_per_turn']} per request)",
        "fallbacks: " + (", ".join(f"{f['provider']}/{f['model'] or 'default'}" for f in default["fallbacks"])
                         or "none"),
        "front-ends: " + ", ".join(f"{k} {'on' if v else 'off'}" for k, v in report["front_ends"].items()),
        "",
        f"{'provider':<11} {'status':<14} {'model':<28} {'edits':<6} {'refs':<5} {'ratios':<22} sizes",
    ]
    for p in report["providers"]:
        caps = p["capabilities"]
        status = "ready" if p["configured"] else "needs " + ",".join(m.rsplit(".", 1)[-1] for m in p["missing"])
        mark = "*" if p["in_use"] else " "
        ratios = caps["ratios"] if isinstance(caps["ratios"], str) else ",".join(caps["ratios"]) or "ignored"
        sizes = caps["sizes"] if isinstance(caps["sizes"], str) else ",".join(caps["sizes"]) or "ignored"
        lines.append(f"{mark}{p['name']:<10} {status:<14} {p['model'][:28]:<28} "
                     f"{'yes' if caps['edits'] else 'no':<6} {caps['max_references']:<5} {ratios[:22]:<22} {sizes}")
        if "ping" in p:
            lines.append(f"  ping: {p['ping']}")
    lines += ["", "* = in use (default or fallback)"]
    lines += [f"problem: {problem}" for problem in report["problems"]]
    return "\n".join(lines)
