"""save_config: only the named keys change, ${VAR} references survive, the file is replaced atomically
with mode 0600 and only with a config that loads; secret_hint never shows a secret."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

import core.config_write as config_write
from core.config_file import load_config
from core.config_write import save_config, secret_hint
from core.errors import ConfigError

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")

#: A nanobot-style file: blocks pixbot does not know, in an order a save must keep.
CONFIG: dict[str, Any] = {
    "agents": {"defaults": {"model": "anthropic/claude-opus-4-5", "workspace": "~/.nanobot/workspace"}},
    "providers": {
        "openrouter": {"apiKey": "${PIX_TEST_OR_KEY}", "extraHeaders": {"X-Title": "pixbot"}},
        "custom": {"apiBase": "https://old.example.com/v1", "apiKey": "sk-old-custom-key", "timeout": 30},
    },
    "gateway": {"port": 18790},
    "tools": {
        "restrictToWorkspace": False,
        "imageGeneration": {"enabled": True, "provider": "openrouter", "model": "openai/gpt-5.4-image-2"},
        "ssrfWhitelist": ["100.64.0.0/10"],
    },
    "bots": {"telegram": {"token": "${PIX_TEST_TG}", "allowFrom": ["42"], "listenPort": "${PIX_TEST_PORT}"}},
}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENROUTER_API_KEY", "CUSTOM_IMAGE_API_KEY", "CUSTOM_IMAGE_API_BASE", "TELEGRAM_BOT_TOKEN",
                 "DISCORD_BOT_TOKEN", "PIXBOT_API_KEY", "PIXBOT_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIX_TEST_OR_KEY", "sk-or-from-env")
    monkeypatch.setenv("PIX_TEST_TG", "111:tg-from-env")
    monkeypatch.setenv("PIX_TEST_PORT", "8099")


def write(path: Path, data: object, mode: int = 0o644) -> Path:
    path.write_text(json.dumps(data, indent=4))
    path.chmod(mode)
    return path


def read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def test_sets_only_the_named_keys_and_keeps_the_rest_in_order(tmp_path: Path) -> None:
    path = write(tmp_path / "config.json", CONFIG)
    save_config(path, {"providers.custom.apiKey": "sk-new-custom-key", "tools.imageGeneration.provider": "custom",
                       "tools.imageGeneration.model": "flux-dev", "bots.telegram.token": None})
    expected = json.loads(json.dumps(CONFIG))
    expected["providers"]["custom"]["apiKey"] = "sk-new-custom-key"
    expected["tools"]["imageGeneration"]["provider"] = "custom"
    expected["tools"]["imageGeneration"]["model"] = "flux-dev"
    saved = read(path)
    assert saved == expected
    # order, at every level: dict equality ignores it
    assert list(saved) == list(CONFIG)
    assert list(saved["providers"]["custom"]) == ["apiBase", "apiKey", "timeout"]
    assert list(saved["tools"]) == ["restrictToWorkspace", "imageGeneration", "ssrfWhitelist"]
    config = load_config(path, env_file=None)
    assert config.provider("custom").api_key == "sk-new-custom-key"
    assert (config.image.provider, config.image.model) == ("custom", "flux-dev")


def test_none_leaves_a_key_as_it_is(tmp_path: Path) -> None:
    path = write(tmp_path / "config.json", CONFIG)
    save_config(path, {"providers.custom.apiKey": None, "bots.discord.token": None})
    assert read(path) == CONFIG  # no key removed, no empty block created


def test_a_var_reference_that_says_the_new_value_is_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "config.json", CONFIG)
    save_config(path, {"providers.openrouter.apiKey": "sk-or-from-env", "bots.telegram.token": "111:tg-from-env",
                       "bots.telegram.listenPort": 8099})
    saved = read(path)
    assert saved["providers"]["openrouter"]["apiKey"] == "${PIX_TEST_OR_KEY}"
    assert saved["bots"]["telegram"]["token"] == "${PIX_TEST_TG}"
    assert saved["bots"]["telegram"]["listenPort"] == "${PIX_TEST_PORT}"


def test_a_var_reference_is_replaced_by_a_different_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "config.json", CONFIG)
    save_config(path, {"providers.openrouter.apiKey": "sk-or-typed-in"})
    assert read(path)["providers"]["openrouter"]["apiKey"] == "sk-or-typed-in"
    assert read(path)["bots"]["telegram"]["token"] == "${PIX_TEST_TG}"  # untouched ones stay references


def test_a_reference_to_an_unset_variable_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "config.json", {"bots": {"discord": {"token": "${PIX_TEST_UNSET}"}}})
    monkeypatch.delenv("PIX_TEST_UNSET", raising=False)
    save_config(path, {"bots.discord.token": "typed.discord.token"})
    assert read(path) == {"bots": {"discord": {"token": "typed.discord.token"}}}


def test_nested_objects_are_created(tmp_path: Path) -> None:
    path = write(tmp_path / "config.json", {"providers": {"custom": None}, "agents": {}})
    save_config(path, {"providers.custom.apiKey": "sk-abc", "providers.gemini.apiKey": "g-key",
                       "bots.discord.token": "discord.token.value"})
    assert read(path) == {
        "providers": {"custom": {"apiKey": "sk-abc"}, "gemini": {"apiKey": "g-key"}},
        "agents": {},
        "bots": {"discord": {"token": "discord.token.value"}},
    }


def test_a_snake_case_key_is_updated_where_it_is(tmp_path: Path) -> None:
    path = write(tmp_path / "config.json", {"providers": {"custom": {"api_key": "old", "api_base": "http://x"}}})
    save_config(path, {"providers.custom.apiKey": "new"})
    assert read(path) == {"providers": {"custom": {"api_key": "new", "api_base": "http://x"}}}


def test_remove_deletes_a_key(tmp_path: Path) -> None:
    path = write(tmp_path / "config.json", CONFIG)
    save_config(path, {}, remove=["providers.custom.apiKey", "bots.discord.token"])
    assert "apiKey" not in read(path)["providers"]["custom"]
    assert read(path)["providers"]["openrouter"] == CONFIG["providers"]["openrouter"]
    assert read(path)["bots"] == CONFIG["bots"]  # removing what is not there creates nothing
    with pytest.raises(ConfigError, match="both set and remove"):
        save_config(path, {"tools.imageGeneration.model": "m"}, remove=["tools.imageGeneration.model"])


def test_a_new_file_and_its_folder_are_created_with_mode_0600(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        path = tmp_path / "new" / "dir" / "config.json"
        save_config(path, {"bots.telegram.token": "123:abc", "tools.imageGeneration.provider": "custom"})
    finally:
        os.umask(old_umask)
    assert mode(path) == 0o600
    assert read(path) == {"bots": {"telegram": {"token": "123:abc"}}, "tools": {"imageGeneration": {
        "provider": "custom"}}}
    assert leftovers(path.parent) == []


def test_an_existing_file_becomes_0600(tmp_path: Path) -> None:
    path = write(tmp_path / "config.json", CONFIG, mode=0o644)
    save_config(path, {"tools.imageGeneration.model": "other"})
    assert mode(path) == 0o600
    assert read(path)["tools"]["imageGeneration"]["model"] == "other"


def test_a_symlinked_config_stays_a_symlink(tmp_path: Path) -> None:
    target = write(tmp_path / "real.json", CONFIG)
    link = tmp_path / "config.json"
    link.symlink_to(target)
    save_config(link, {"tools.imageGeneration.model": "other"})
    assert link.is_symlink()
    assert read(target)["tools"]["imageGeneration"]["model"] == "other"


def test_a_value_that_does_not_validate_leaves_the_file_byte_identical(tmp_path: Path) -> None:
    path = write(tmp_path / "config.json", CONFIG, mode=0o640)
    before = path.read_bytes()
    with pytest.raises(ConfigError) as caught:
        save_config(path, {"tools.imageGeneration.provider": "no-such-provider", "providers.custom.apiKey": "x"})
    message = str(caught.value)
    assert "provider" in message and "no-such-provider" in message
    assert str(path) in message and ".tmp-" not in message
    assert path.read_bytes() == before
    assert mode(path) == 0o640
    assert leftovers(tmp_path) == []


def test_a_misspelt_key_is_refused_and_named(tmp_path: Path) -> None:
    path = write(tmp_path / "config.json", CONFIG)
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="tokn"):
        save_config(path, {"bots.telegram.tokn": "123:abc"})
    assert path.read_bytes() == before


def test_a_crash_during_validation_leaves_the_file_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "config.json", CONFIG)
    before = path.read_bytes()
    seen: list[bytes] = []

    def exploding_load(candidate: Path, **_: object) -> None:
        seen.append(Path(candidate).read_bytes())  # the new content is on disk, beside the old file
        assert mode(Path(candidate)) == 0o600
        raise RuntimeError("power cut")

    monkeypatch.setattr(config_write, "load_config", exploding_load)
    with pytest.raises(RuntimeError):
        save_config(path, {"tools.imageGeneration.model": "other"})
    assert json.loads(seen[0])["tools"]["imageGeneration"]["model"] == "other"
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "null", "{not json"])
def test_a_file_that_is_not_a_json_object_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        save_config(path, {"bots.telegram.token": "123:abc"})
    assert str(path) in str(caught.value)
    assert path.read_text() == content


def test_a_key_under_a_value_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "config.json", {"bots": {"telegram": "on"}})
    with pytest.raises(ConfigError, match=r"bots\.telegram is .* not an object"):
        save_config(path, {"bots.telegram.token": "123:abc"})
    assert read(path) == {"bots": {"telegram": "on"}}


@pytest.mark.parametrize("key", ["", "bots..token", ".bots", "bots.telegram."])
def test_a_malformed_key_is_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError, match="not a config key"):
        save_config(tmp_path / "config.json", {key: "x"})
    assert not (tmp_path / "config.json").exists()


def test_a_value_json_cannot_hold_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"limits\.jobTimeoutS"):
        save_config(tmp_path / "config.json", {"limits.jobTimeoutS": float("nan")})
    assert not (tmp_path / "config.json").exists()


@pytest.mark.parametrize(("value", "hint"), [
    (None, ""),
    ("", ""),
    ("abc", "set"),
    ("12345678901", "set"),  # 11 characters: too short to show any of it
    ("123456789012", "…9012"),
    ("sk-or-v1-0123456789abcdef", "…cdef"),
])
def test_secret_hint(value: str | None, hint: str) -> None:
    assert secret_hint(value) == hint
    if value and len(value) >= 12:
        assert value not in secret_hint(value)
