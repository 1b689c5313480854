"""Loading the config file: ``.env``, ``${VAR}`` resolution, env fallbacks for keys and tokens, and
validation errors that name the key. Loaded once by the composition root; no other module reads the
file or ``os.environ``."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from dotenv import load_dotenv
from pydantic import ValidationError
from pydantic.alias_generators import to_snake

from core.config import AppConfig
from core.errors import ConfigError

__all__ = ["BOT_TOKEN_ENV", "PROVIDER_BASE_ENV", "PROVIDER_KEY_ENV", "default_config_path", "load_config"]

#: Environment variables consulted when a provider block has no apiKey (first set one wins).
PROVIDER_KEY_ENV: dict[str, tuple[str, ...]] = {
    "openrouter": ("OPENROUTER_API_KEY",),
    "custom": ("CUSTOM_IMAGE_API_KEY",),
    "openai": ("OPENAI_API_KEY",),
    "aihubmix": ("AIHUBMIX_API_KEY",),
    "minimax": ("MINIMAX_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "ollama": ("OLLAMA_API_KEY",),
    "stepfun": ("STEPFUN_API_KEY",),
    "zhipu": ("ZAI_API_KEY", "ZHIPUAI_API_KEY"),
    "modelscope": ("MODELSCOPE_API_KEY",),
}
PROVIDER_BASE_ENV: dict[str, str] = {"custom": "CUSTOM_IMAGE_API_BASE", "ollama": "OLLAMA_API_BASE"}
BOT_TOKEN_ENV: dict[str, str] = {"telegram": "TELEGRAM_BOT_TOKEN", "discord": "DISCORD_BOT_TOKEN"}


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def default_config_path() -> Path:
    env = os.environ.get("PIXBOT_CONFIG")
    return Path(env).expanduser() if env else Path.home() / ".pixbot" / "config.json"


def load_config(path: str | Path | None = None, *, env_file: str | Path | None = ".env") -> AppConfig:
    """Read, resolve and validate the config. Every problem is one ConfigError naming the key."""
    if env_file is not None and Path(env_file).is_file():
        load_dotenv(env_file, override=False)
    config_path = Path(path).expanduser() if path is not None else default_config_path()
    raw: dict[str, Any] = {}
    if config_path.exists():
        try:
            raw = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {config_path}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{config_path} is not valid JSON: line {exc.lineno}: {exc.msg}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{config_path} must hold a JSON object")
    elif path is not None:
        raise ConfigError(f"config file {config_path} does not exist")

    missing: list[str] = []
    resolved = _resolve_vars(raw, "", missing)
    if missing:
        raise ConfigError(f"{config_path}: " + "; ".join(missing))
    _apply_env_fallbacks(resolved)
    try:
        return AppConfig(**resolved, config_path=config_path.resolve())
    except ValidationError as exc:
        raise ConfigError(f"{config_path}: " + _describe(exc)) from None


def _resolve_vars(node: Any, where: str, missing: list[str]) -> Any:
    if isinstance(node, dict):
        return {k: _resolve_vars(v, f"{where}.{k}" if where else str(k), missing) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_vars(v, f"{where}[{i}]", missing) for i, v in enumerate(node)]
    if isinstance(node, str):
        def substitute(match: re.Match[str]) -> str:
            value = os.environ.get(match[1])
            if value is None:
                missing.append(f"{where} uses ${{{match[1]}}}, which is not set in the environment")
                return ""
            return value

        return _VAR.sub(substitute, node)
    return node


def _apply_env_fallbacks(raw: dict[str, Any]) -> None:
    providers = raw.setdefault("providers", {})
    if not isinstance(providers, dict):
        return
    for name, env_names in PROVIDER_KEY_ENV.items():
        key = _find_key(providers, name)
        block = providers.get(key) if key else None
        if block is not None and not isinstance(block, dict):
            continue  # validation names the malformed block
        if block and (block.get("apiKey") or block.get("api_key")):
            continue
        value = next((os.environ[e] for e in env_names if os.environ.get(e)), None)
        base = os.environ.get(PROVIDER_BASE_ENV.get(name, ""), "")
        if value or base:
            if block is None:  # no block, or an explicit ``"openrouter": null``
                block = providers[key or name] = {}
            if value:  # the block's key is absent, null or "" (nanobot saves null): the env fills it
                block.pop("api_key", None)
                block["apiKey"] = value
            if base and not (block.get("apiBase") or block.get("api_base")):
                block["apiBase"] = base
    bots = raw.setdefault("bots", {})
    if not isinstance(bots, dict):
        return
    for name, env_name in BOT_TOKEN_ENV.items():
        block = bots.setdefault(name, {})
        if isinstance(block, dict) and not block.get("token") and os.environ.get(env_name):
            block["token"] = os.environ[env_name]
    api = bots.setdefault("api", {})
    if isinstance(api, dict) and not (api.get("apiKey") or api.get("api_key")) and os.environ.get("PIXBOT_API_KEY"):
        api["apiKey"] = os.environ["PIXBOT_API_KEY"]


def _find_key(providers: dict[str, Any], name: str) -> str | None:
    for key in providers:
        if to_snake(str(key)) == name:
            return str(key)
    return None


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)
