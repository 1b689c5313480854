"""Planning a request onto providers: the primary provider/model and its fallbacks, each checked against
what it is configured with and what its model can do (``core.capabilities.plan_for``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from core.capabilities import Plan, Wanted, plan_for
from core.config import ImageGenerationConfig
from core.errors import ConfigError, InvalidRequest, PixbotError, Unsupported
from core.provider import ImageProvider

__all__ = ["plan_chain"]


def plan_chain(image_cfg: ImageGenerationConfig, providers: Mapping[str, ImageProvider], provider: str | None,
               model: str | None, wanted: Wanted) -> list[Plan]:
    """The primary plan (``provider``/``model`` if asked for, else the configured default) followed by every
    fallback that can serve the request; the first refusal when none can."""
    if provider is not None and provider not in providers:
        raise InvalidRequest(f"Unknown provider {provider!r}. Available: {', '.join(sorted(providers))}.")
    primary = provider or image_cfg.provider
    if model is not None:
        primary_model = model
    elif provider is None or provider == image_cfg.provider:
        primary_model = image_cfg.model
    else:
        primary_model = providers[primary].default_model
    candidates = [(primary, primary_model)]
    candidates += [(name, fallback_model or providers[name].default_model)
                   for name, fallback_model in image_cfg.chain()[1:] if name in providers]
    plans: list[Plan] = []
    problems: list[PixbotError] = []
    for name, model_name in candidates:
        adapter = providers.get(name)
        if adapter is None:
            problems.append(ConfigError(f"Provider {name} is not available."))
            continue
        missing = adapter.missing()
        if missing and name == provider:  # asked for by name: the asker picks another
            problems.append(InvalidRequest(f"Provider {name} is not configured on this server; use another "
                                           "model.", detail=f"set {', '.join(missing)}"))
            continue
        if missing:  # the configured default or a fallback: the operator's to fix
            problems.append(ConfigError(f"Provider {name} is not configured: set {', '.join(missing)}."))
            continue
        try:
            plans.append(plan_for(name, model_name, adapter.capabilities(model_name), wanted))
        except Unsupported as exc:
            problems.append(exc)
    if not plans:
        raise problems[0]
    if plans[0].provider != primary or plans[0].model != primary_model:
        why = str(problems[0]) if problems else ""
        plans[0] = replace(plans[0], report=replace(
            plans[0].report, notes=(*plans[0].report.notes, f"used {plans[0].provider}/{plans[0].model}: {why}")))
    return plans
