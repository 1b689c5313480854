"""Config: nanobot compatibility, aliases, ${VAR}, env fallbacks, validation messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.config import PROVIDER_NAMES
from core.config_file import load_config
from core.errors import ConfigError

NANOBOT_CONFIG = {
    "agents": {"defaults": {"model": "anthropic/claude-opus-4-5", "workspace": "~/.nanobot/workspace"}},
    "channels": {"telegram": {"enabled": True, "token": "123:abc", "allowFrom": ["42"]}},
    "providers": {
        "openrouter": {"apiKey": "${OPENROUTER_API_KEY}"},
        "openaiCodex": {"proxy": None},
        "custom": {"apiKey": "", "apiBase": "https://api.example.com/v1", "extraBody": {"size": "2K"}},
        "deepseek": {"apiKey": "sk-x"},
    },
    "gateway": {"port": 18790},
    "tools": {
        "restrictToWorkspace": False,
        "web": {"search": {"provider": "duckduckgo"}},
        "imageGeneration": {"enabled": True, "provider": "openrouter", "model": "openai/gpt-5.4-image-2",
                            "defaultAspectRatio": "16:9", "defaultImageSize": "2K", "maxImagesPerTurn": 6,
                            "saveDir": "generated"},
        "ssrfWhitelist": ["100.64.0.0/10"],
    },
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENROUTER_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "TELEGRAM_BOT_TOKEN",
                 "DISCORD_BOT_TOKEN", "PIXBOT_API_KEY", "CUSTOM_IMAGE_API_KEY", "CUSTOM_IMAGE_API_BASE",
                 "PIXBOT_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return path


def test_nanobot_config_loads_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-1")
    config = load_config(write(tmp_path, NANOBOT_CONFIG), env_file=None)
    assert config.provider("openrouter").api_key == "sk-or-1"
    assert config.provider("custom").extra_body == {"size": "2K"}
    assert "openai_codex" in config.providers
    assert config.image.max_images_per_turn == 6
    assert config.image.default_aspect_ratio == "16:9"
    assert config.tools.ssrf_whitelist == ["100.64.0.0/10"]
    assert config.data_dir == tmp_path.resolve()
    assert config.media_dir == tmp_path.resolve() / "media"
    assert config.state_path == tmp_path.resolve() / "pixbot.db"


def test_snake_case_keys_are_accepted(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, {"tools": {"image_generation": {"max_images_per_turn": 2,
                                                                         "default_image_size": "4K"}}}),
                         env_file=None)
    assert config.image.max_images_per_turn == 2
    assert config.image.default_image_size == "4K"


def test_unset_variable_names_the_key_and_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, NANOBOT_CONFIG), env_file=None)
    assert "providers.openrouter.apiKey" in str(caught.value)
    assert "OPENROUTER_API_KEY" in str(caught.value)


def test_env_fallbacks_for_keys_and_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "g-key")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "1:tok")
    config = load_config(write(tmp_path, {}), env_file=None)
    assert config.provider("gemini").api_key == "g-key"
    assert config.bots.telegram.token == "1:tok"
    assert config.bots.telegram.active
    assert not config.bots.discord.active


@pytest.mark.parametrize("block", [None, {"apiKey": None}, {"apiKey": ""}, {"api_key": None}])
def test_env_fallback_fills_a_null_or_empty_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                block: object) -> None:
    """nanobot saves unset keys as null; a null block must not crash the loader either."""
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-env")
    config = load_config(write(tmp_path, {"providers": {"openrouter": block}}), env_file=None)
    assert config.provider("openrouter").api_key == "sk-env"


def test_dotenv_file_is_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text("CUSTOM_IMAGE_API_KEY=from-dotenv\n")
    config = load_config(write(tmp_path, {"providers": {"custom": {"apiKey": "${CUSTOM_IMAGE_API_KEY}",
                                                                   "apiBase": "http://x/v1"}}}), env_file=env)
    assert config.provider("custom").api_key == "from-dotenv"
    monkeypatch.delenv("CUSTOM_IMAGE_API_KEY")


@pytest.mark.parametrize(
    ("image_generation", "expected"),
    [
        ({"provider": "dalle"}, "tools.imageGeneration.provider: unknown provider 'dalle'; use one of"),
        ({"maxImagesPerTurn": 9}, "maxImagesPerTurn: must be between 1 and 8 (got 9)"),
        ({"maxImagesPerTurn": 0}, "must be between 1 and 8 (got 0)"),
        ({"defaultAspectRatio": "wide"}, "defaultAspectRatio: must look like 16:9"),
        ({"defaultAspectRatio": "0:1"}, "defaultAspectRatio: must look like 16:9"),
        ({"fallbacks": [{"provider": "nope"}]}, "fallbacks[0].provider 'nope' is not a provider"),
    ],
)
def test_validation_errors_name_key_and_accepted_values(tmp_path: Path, image_generation: dict[str, object],
                                                        expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, {"tools": {"imageGeneration": image_generation}}), env_file=None)
    assert expected in str(caught.value)
    if "provider" in image_generation:
        assert all(name in str(caught.value) for name in PROVIDER_NAMES)


def test_bad_ssrf_whitelist_entry(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tools.ssrfWhitelist.*'not-a-cidr' is not a CIDR"):
        load_config(write(tmp_path, {"tools": {"ssrfWhitelist": ["not-a-cidr"]}}), env_file=None)


def test_ids_compare_as_strings_and_disabled_bot_needs_nothing(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, {"bots": {"telegram": {"allowFrom": [123, "bob"], "token": "1:x"},
                                                   "discord": {"enabled": False},
                                                   }}), env_file=None)
    assert config.bots.telegram.allow_from == ["123", "bob"]
    assert not config.bots.discord.active


def test_public_api_host_needs_a_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"bots.api.*not loopback; set bots.api.apiKey"):
        load_config(write(tmp_path, {"bots": {"api": {"enabled": True, "host": "0.0.0.0"}}}), env_file=None)


def test_invalid_json_and_missing_explicit_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{ nope")
    with pytest.raises(ConfigError, match="not valid JSON: line 1"):
        load_config(bad, env_file=None)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.json", env_file=None)


def test_env_settings_fill_what_the_file_leaves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXBOT_LIMITS__PER_USER_DAILY", "7")
    config = load_config(write(tmp_path, {"limits": {"concurrency": 3}}), env_file=None)
    assert config.limits.per_user_daily == 7
    assert config.limits.concurrency == 3


def test_data_dir_override(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, {"storage": {"dataDir": str(tmp_path / "data")}}), env_file=None)
    assert config.media_dir == (tmp_path / "data" / "media").resolve()


def test_the_config_nanobot_itself_writes_loads(tmp_path: Path) -> None:
    """nanobot's own schema, dumped as nanobot saves it (camelCase, every block), is a valid pixbot config."""
    schema = pytest.importorskip("nanobot.config.schema")
    raw = schema.Config().model_dump(mode="json", by_alias=True)
    raw["tools"]["imageGeneration"].update({"enabled": True, "provider": "custom", "model": "flux-dev"})
    raw["providers"]["custom"].update({"apiBase": "https://images.example/v1"})
    config = load_config(write(tmp_path, raw), env_file=None)
    assert (config.image.provider, config.image.model) == ("custom", "flux-dev")
    assert config.provider("custom").api_base == "https://images.example/v1"
    assert config.image.default_image_size == raw["tools"]["imageGeneration"]["defaultImageSize"]


def test_default_ports_do_not_collide_with_nanobots_api_or_a_local_bot_api_server(tmp_path: Path) -> None:
    """nanobot's own API listens on 8900 and a self-hosted Telegram Bot API server on 8081."""
    config = load_config(write(tmp_path, {}), env_file=None)
    assert config.bots.api.port == 8790 and config.bots.telegram.listen_port == 8088


def test_a_database_url_must_be_postgresql(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"storage.databaseUrl.*postgresql://"):
        load_config(write(tmp_path, {"storage": {"databaseUrl": "mysql://db/pixbot"}}), env_file=None)
    config = load_config(write(tmp_path, {"storage": {"databaseUrl": "postgresql://u:secret@db/pixbot"}}),
                         env_file=None)
    assert config.storage.database_url == "postgresql://u:secret@db/pixbot"
    assert "secret" not in repr(config.storage)
