"""AppConfig: one nanobot-compatible JSON file, ``${VAR}`` resolution, env fallbacks, validation.

Loaded once by the composition root; no other module reads the file or ``os.environ``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from dotenv import load_dotenv
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel, to_snake
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.errors import ConfigError

__all__ = [
    "PROVIDER_NAMES",
    "ApiConfig",
    "AppConfig",
    "DiscordConfig",
    "FallbackConfig",
    "ImageGenerationConfig",
    "LimitsConfig",
    "ProviderConfig",
    "StorageConfig",
    "TelegramConfig",
    "default_config_path",
    "load_config",
    "parse_ratio",
]

#: Every provider name pixbot knows (registry order). Kept equal to providers.registry by a test.
PROVIDER_NAMES: tuple[str, ...] = (
    "aihubmix", "custom", "gemini", "ollama", "minimax", "openai", "openrouter", "stepfun", "zhipu",
    "modelscope",
)

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
_RATIO = re.compile(r"^\s*(\d{1,4})\s*:\s*(\d{1,4})\s*$")
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def parse_ratio(value: str) -> tuple[int, int] | None:
    """``"16:9"`` → ``(16, 9)``; anything else (including ``0:1``) → None."""
    match = _RATIO.match(value)
    if not match:
        return None
    w, h = int(match[1]), int(match[2])
    return (w, h) if w > 0 and h > 0 else None


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


def _ids(value: Any) -> list[str]:
    """Ids may be written as numbers or strings; they are compared as strings."""
    if value is None:
        return []
    if isinstance(value, (str, int)):
        value = [value]
    return [str(v).strip() for v in value]


class ProviderConfig(_Model):
    api_key: str | None = Field(default=None, repr=False)
    api_base: str | None = None
    extra_headers: dict[str, str] = Field(default_factory=dict, repr=False)
    extra_body: dict[str, Any] = Field(default_factory=dict)
    proxy: str | None = None
    timeout: float | None = Field(default=None, gt=0)

    @field_validator("extra_headers", "extra_body", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class FallbackConfig(_Model):
    provider: str
    model: str | None = None


class ImageGenerationConfig(_Model):
    enabled: bool = False
    provider: str = "openrouter"
    model: str = "openai/gpt-5.4-image-2"
    default_aspect_ratio: str = "1:1"
    default_image_size: str = "1K"
    max_images_per_turn: int = 4
    save_dir: str = "generated"
    fallbacks: list[FallbackConfig] = Field(default_factory=list)

    @field_validator("max_images_per_turn")
    @classmethod
    def _count_range(cls, value: int) -> int:
        if not 1 <= value <= 8:
            raise ValueError(f"must be between 1 and 8 (got {value})")
        return value

    @field_validator("default_aspect_ratio")
    @classmethod
    def _ratio_form(cls, value: str) -> str:
        if value and parse_ratio(value) is None:
            raise ValueError(f"must look like 16:9 (two positive numbers), got {value!r}")
        return value.strip()

    @field_validator("default_image_size")
    @classmethod
    def _size_form(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z0-9xX:_-]{1,32}", value.strip()):
            raise ValueError(f"must be 1-32 letters, digits or 'x', e.g. 1K, 2K or 1024x1024, got {value!r}")
        return value.strip()

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        return _check_provider(value)

    @model_validator(mode="after")
    def _fallback_providers(self) -> ImageGenerationConfig:
        for index, fallback in enumerate(self.fallbacks):
            if fallback.provider not in PROVIDER_NAMES:
                raise ValueError(
                    f"fallbacks[{index}].provider {fallback.provider!r} is not a provider; "
                    f"use one of {', '.join(PROVIDER_NAMES)}"
                )
        return self


def _check_provider(value: str) -> str:
    if value not in PROVIDER_NAMES:
        raise ValueError(f"unknown provider {value!r}; use one of {', '.join(PROVIDER_NAMES)}")
    return value


class ToolsConfig(_Model):
    image_generation: ImageGenerationConfig = Field(default_factory=ImageGenerationConfig)
    ssrf_whitelist: list[str] = Field(default_factory=list)

    @field_validator("ssrf_whitelist")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not a CIDR such as 10.0.0.0/8") from None
        return value


class _BotConfig(_Model):
    enabled: bool | None = None
    token: str | None = Field(default=None, repr=False)
    api_base: str | None = None
    allow_from: list[str] = Field(default_factory=lambda: ["*"])

    _ids = field_validator("allow_from", mode="before")(classmethod(lambda cls, v: _ids(v)))

    @property
    def active(self) -> bool:
        """``enabled`` defaults to whether a token is available."""
        return bool(self.token) if self.enabled is None else self.enabled


class TelegramConfig(_BotConfig):
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str | None = None
    webhook_secret: str | None = Field(default=None, repr=False)
    listen_host: str = "127.0.0.1"
    listen_port: int = 8081
    group_policy: Literal["mention", "open"] = "mention"
    delivery: Literal["photo", "document", "both"] = "photo"

    @model_validator(mode="after")
    def _webhook_needs_url(self) -> TelegramConfig:
        if self.active and self.mode == "webhook" and not self.webhook_url:
            raise ValueError("mode 'webhook' needs webhookUrl (the public HTTPS URL Telegram posts to)")
        return self


class DiscordConfig(_BotConfig):
    gateway_url: str | None = None
    allow_guilds: list[str] = Field(default_factory=list)
    allow_roles: list[str] = Field(default_factory=list)
    command_guilds: list[str] = Field(default_factory=list)

    _more_ids = field_validator("allow_guilds", "allow_roles", "command_guilds", mode="before")(
        classmethod(lambda cls, v: _ids(v))
    )


class ApiConfig(_Model):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8900
    api_key: str | None = Field(default=None, repr=False)
    max_body_bytes: int = 64 * 1024 * 1024

    @model_validator(mode="after")
    def _public_needs_key(self) -> ApiConfig:
        if self.host not in _LOOPBACK_HOSTS and not self.api_key:
            raise ValueError(f"host {self.host!r} is not loopback; set bots.api.apiKey to expose the API")
        return self


class BotsConfig(_Model):
    telegram: TelegramConfig = Field(default_factory=TelegramConfig)
    discord: DiscordConfig = Field(default_factory=DiscordConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)


class StorageConfig(_Model):
    data_dir: Path | None = None
    #: Extra directories untrusted reference paths may come from (besides the media dir).
    allowed_dirs: list[Path] = Field(default_factory=list)


class LimitsConfig(_Model):
    concurrency: int = Field(default=8, ge=1, le=256)
    per_chat_jobs: int = Field(default=2, ge=1)
    per_user_daily: int = Field(default=50, ge=0, description="0 = unlimited")
    job_timeout_s: float = Field(default=300, gt=0)
    max_prompt_chars: int = Field(default=4000, ge=1)
    max_reference_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(default=40_000_000, ge=1)


class AppConfig(BaseSettings):
    """The whole configuration. Unknown top-level blocks (nanobot's agents, channels…) are ignored."""

    model_config = SettingsConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        env_prefix="PIXBOT_",
        env_nested_delimiter="__",
        frozen=True,
    )

    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    bots: BotsConfig = Field(default_factory=BotsConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    config_path: Path | None = Field(default=None, validation_alias=AliasChoices("configPath", "config_path"))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file (passed as init kwargs) is the source of truth; PIXBOT_* env vars fill the rest.
        return (init_settings, env_settings)

    @field_validator("providers", mode="before")
    @classmethod
    def _snake_provider_names(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {to_snake(str(k)): v for k, v in value.items() if v is not None}
        return value

    @property
    def image(self) -> ImageGenerationConfig:
        return self.tools.image_generation

    @property
    def data_dir(self) -> Path:
        if self.storage.data_dir is not None:
            return self.storage.data_dir.expanduser().resolve()
        if self.config_path is not None:
            return self.config_path.expanduser().resolve().parent
        return (Path.home() / ".pixbot").resolve()

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def state_path(self) -> Path:
        return self.data_dir / "pixbot.db"

    def provider(self, name: str) -> ProviderConfig:
        return self.providers.get(name) or ProviderConfig()


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
        if isinstance(block, dict) and (block.get("apiKey") or block.get("api_key")):
            continue
        value = next((os.environ[e] for e in env_names if os.environ.get(e)), None)
        base = os.environ.get(PROVIDER_BASE_ENV.get(name, ""), "")
        if value or base:
            target = providers.setdefault(key or name, {}) if block is None else block
            if value:
                target.setdefault("apiKey", value)
            if base and not (target.get("apiBase") or target.get("api_base")):
                target["apiBase"] = base
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
