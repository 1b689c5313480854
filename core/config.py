"""AppConfig: the nanobot-compatible configuration schema and its validation rules.

Reading the file (``${VAR}``, ``.env``, env fallbacks) lives in core/config_file.py.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel, to_snake
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.net import is_loopback_host

__all__ = [
    "MAX_IMAGES_PER_REQUEST",
    "PROVIDER_NAMES",
    "ApiConfig",
    "AppConfig",
    "DiscordConfig",
    "FallbackConfig",
    "ImageGenerationConfig",
    "LimitsConfig",
    "PluginConfig",
    "ProviderConfig",
    "StorageConfig",
    "TelegramConfig",
    "WebConfig",
    "parse_ratio",
]

#: Every provider name pixbot knows (registry order). Kept equal to providers.registry by a test.
PROVIDER_NAMES: tuple[str, ...] = (
    "aihubmix", "custom", "gemini", "ollama", "minimax", "openai", "openrouter", "stepfun", "zhipu",
    "modelscope",
)

#: The most images one request may ask for, whatever ``maxImagesPerTurn`` says.
MAX_IMAGES_PER_REQUEST = 8
_RATIO = re.compile(r"^\s*(\d{1,4})\s*:\s*(\d{1,4})\s*$")


def parse_ratio(value: str) -> tuple[int, int] | None:
    """``"16:9"`` → ``(16, 9)``; anything else (including ``0:1``) → None."""
    match = _RATIO.match(value)
    if not match:
        return None
    w, h = int(match[1]), int(match[2])
    return (w, h) if w > 0 and h > 0 else None


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class _OwnBlock(_Model):
    """A block pixbot defines (``bots.*``, ``limits``, ``storage``, ``tools.imageGeneration``): an unknown
    key there is a typo to report, not to ignore: ``alowFrom`` would leave a bot open to everyone. Blocks
    nanobot defines (``providers``, the rest of ``tools``, the top level) still accept keys pixbot
    does not use."""

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = {alias for name, info in cls.model_fields.items() for alias in (name, info.alias) if alias}
        for key in data:
            if key not in known:
                names = sorted({info.alias or name for name, info in cls.model_fields.items()})
                guess = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
                hint = f"did you mean {guess[0]}?" if guess else "known keys: " + ", ".join(names)
                raise ValueError(f"unknown key {key!r} ({hint})")
        return data


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


class FallbackConfig(_OwnBlock):
    provider: str
    model: str | None = None


class ImageGenerationConfig(_OwnBlock):
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
        if not 1 <= value <= MAX_IMAGES_PER_REQUEST:
            raise ValueError(f"must be between 1 and {MAX_IMAGES_PER_REQUEST} (got {value})")
        return value

    def chain(self) -> list[tuple[str, str | None]]:
        """The default provider/model, then each fallback as ``(provider, model or None)``: the order in
        which a request is tried (a fallback without a model uses its provider's default)."""
        return [(self.provider, self.model), *((f.provider, f.model) for f in self.fallbacks)]

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


class PluginConfig(_OwnBlock):
    """``tools.pixbot`` in nanobot's config: the ``pixbot_image`` plugin's own choices, so they need not
    be nanobot's. nanobot's ``providers.custom`` is often its LLM endpoint: ``providers`` here (merged
    over the top-level ones, for pixbot only) and ``provider``/``model`` (over ``tools.imageGeneration``)
    keep image requests away from it."""

    enabled: bool = True
    provider: str | None = None
    model: str | None = None
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)

    @field_validator("provider")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        return None if value is None else _check_provider(value)

    @field_validator("providers", mode="before")
    @classmethod
    def _snake_names(cls, value: Any) -> Any:
        return {to_snake(str(k)): v for k, v in value.items() if v is not None} if isinstance(value, dict) else value


class ToolsConfig(_Model):
    image_generation: ImageGenerationConfig = Field(default_factory=ImageGenerationConfig)
    ssrf_whitelist: list[str] = Field(default_factory=list)
    pixbot: PluginConfig = Field(default_factory=PluginConfig)

    @field_validator("ssrf_whitelist")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not a CIDR such as 10.0.0.0/8") from None
        return value


class _BotConfig(_OwnBlock):
    enabled: bool | None = None
    token: str | None = Field(default=None, repr=False)
    api_base: str | None = None
    allow_from: list[str] = Field(default_factory=lambda: ["*"])

    @field_validator("allow_from", mode="before")
    @classmethod
    def _allow_from_ids(cls, value: Any) -> list[str]:
        return _ids(value)

    @property
    def active(self) -> bool:
        """``enabled`` defaults to whether a token is available."""
        return bool(self.token) if self.enabled is None else self.enabled


class TelegramConfig(_BotConfig):
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str | None = None
    webhook_secret: str | None = Field(default=None, repr=False)
    listen_host: str = "127.0.0.1"
    #: Not 8081: that is a self-hosted Bot API server's default port, often on the same machine.
    listen_port: int = 8088
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
    #: Unset: one gateway connection (discord.py's default). Set: the bot's gateway is split into this many
    #: shards (a guild's events go to shard ``(guild_id >> 22) % shardCount``), run by one or several processes.
    shard_count: int | None = Field(default=None, ge=1)
    #: The shards this process runs, each in ``range(shardCount)``; unset: all of them.
    shard_ids: list[int] = Field(default_factory=list)

    @field_validator("allow_guilds", "allow_roles", "command_guilds", mode="before")
    @classmethod
    def _discord_ids(cls, value: Any) -> list[str]:
        return _ids(value)

    @model_validator(mode="after")
    def _shards_in_range(self) -> DiscordConfig:
        if "shard_ids" in self.model_fields_set and not self.shard_ids:
            raise ValueError("shardIds is empty: list the shards this process runs, or leave it out to run all")
        if self.shard_ids and self.shard_count is None:
            raise ValueError("shardIds needs shardCount (the total number of shards, over all processes)")
        if self.shard_count is not None:
            outside = sorted({i for i in self.shard_ids if not 0 <= i < self.shard_count})
            if outside:
                raise ValueError(f"shardIds {outside}: not a shard of shardCount {self.shard_count} "
                                 f"(shard ids run from 0 to {self.shard_count - 1})")
        if len(set(self.shard_ids)) != len(self.shard_ids):
            raise ValueError(f"shardIds {self.shard_ids} lists a shard twice")
        return self


class ApiConfig(_OwnBlock):
    enabled: bool = False
    host: str = "127.0.0.1"
    #: Not 8900: nanobot's own API listens there, and both often run on one machine.
    port: int = 8790
    api_key: str | None = Field(default=None, repr=False)
    max_body_bytes: int = 64 * 1024 * 1024

    @model_validator(mode="after")
    def _public_needs_key(self) -> ApiConfig:
        if self.enabled and not is_loopback_host(self.host) and not self.api_key:
            raise ValueError(f"host {self.host!r} is not loopback; set bots.api.apiKey to expose the API")
        return self


class WebConfig(_OwnBlock):
    """The studio: web pages served with the API on ``bots.api.host``/``port``."""

    enabled: bool = True
    #: The sign-in token; unset, one is generated once and kept in the data dir (mode 0600).
    token: str | None = Field(default=None, repr=False)


class BotsConfig(_OwnBlock):
    telegram: TelegramConfig = Field(default_factory=TelegramConfig)
    discord: DiscordConfig = Field(default_factory=DiscordConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    web: WebConfig = Field(default_factory=WebConfig)


class StorageConfig(_OwnBlock):
    data_dir: Path | None = None
    #: Extra directories untrusted reference paths may come from (besides the media dir).
    allowed_dirs: list[Path] = Field(default_factory=list)
    #: Delete stored images older than this many days (whole UTC days); 0 keeps everything.
    retention_days: int = Field(default=0, ge=0)
    #: Unset: SQLite in the data dir (one machine). ``postgresql://…``: a database several processes share.
    database_url: str | None = Field(default=None, repr=False)

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL (leave it unset for SQLite in the data dir)")
        return value or None


class LimitsConfig(_OwnBlock):
    #: Provider calls in flight per provider in this process.
    concurrency: int = Field(default=8, ge=1, le=256)
    #: Provider calls in flight per provider across every process sharing the state database (slots leased
    #: in the database, ``core/limits.py``); 0 = no shared limit, only ``concurrency`` per process.
    global_concurrency: int = Field(default=0, ge=0, le=4096, description="0 = off")
    #: Jobs running at once in one chat, counted across every process sharing the state database.
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
