"""Writing config.json for the set-up page: change a few keys, keep everything else as written.

``save_config`` edits the raw JSON (``${VAR}`` references stay as written), checks the result with the
same loader the bot starts with, and only then replaces the file atomically with mode 0600, so a save
never leaves a config that will not load, nor a half-written one. ``secret_hint`` is all a page may show
of a saved secret.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic.alias_generators import to_snake

from core.config_file import load_config
from core.durable import fsync_dir, make_dirs
from core.errors import ConfigError

__all__ = ["save_config", "secret_hint"]

#: A ``${VAR}`` reference, as core/config_file.py resolves them.
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: Shorter secrets get no tail in their hint: four characters would give away too much of them.
_HINT_MIN_CHARS = 12
#: One save at a time in this process: two read-modify-write cycles would lose one's changes.
_LOCK = threading.Lock()


def secret_hint(value: str | None) -> str:
    """What a page may show for a saved secret: "" when unset, "set" when short, else "…" and its last
    four characters. Never the secret itself."""
    if not value:
        return ""
    if len(value) < _HINT_MIN_CHARS:
        return "set"
    return "…" + value[-4:]


def save_config(path: Path, changes: Mapping[str, object | None], *, remove: Iterable[str] = ()) -> None:
    """Set the keys in ``changes`` in the config file at ``path`` and keep every other key, in order.

    Keys are dotted paths as written in config.json (``"providers.custom.apiKey"``); missing objects on
    the way are created, and a key the file spells in snake_case (``api_key``) is updated in place. A
    value of None leaves the key as it is; keys in ``remove`` are deleted (absent ones are ignored). A
    ``${VAR}`` reference whose value equals the new one is kept. The new file is written next to the
    old one, fsynced, loaded with the bot's own loader and only then renamed over it (mode 0600; the
    folder is created if needed). Every problem is a ConfigError naming the file or key; the file is
    then left untouched. Blocking: run it in a thread from async code.
    """
    path = Path(os.path.realpath(Path(path).expanduser()))  # a symlinked config stays a symlink
    removals = [_split(key) for key in remove]
    edits = [(_split(key), _json_value(key, value)) for key, value in changes.items() if value is not None]
    clash = {".".join(k) for k, _ in edits} & {".".join(k) for k in removals}
    if clash:
        raise ConfigError(f"cannot both set and remove {', '.join(sorted(clash))}")
    with _LOCK:
        raw = _read(path)
        for keys, value in edits:
            _set(raw, keys, value, path)
        for keys in removals:
            _remove(raw, keys, path)
        text = json.dumps(raw, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        _replace_checked(path, text.encode("utf-8"))


def _split(key: str) -> list[str]:
    parts = key.split(".")
    if not key or any(not part for part in parts):
        raise ConfigError(f"{key!r} is not a config key (dotted names such as providers.custom.apiKey)")
    return parts


def _json_value(key: str, value: object) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: the value cannot be written to JSON ({exc})") from None
    return value


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg}); fix it by hand first") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a JSON object ({{...}}), not {type(raw).__name__}; "
                          "fix it by hand first")
    return raw


def _existing_key(node: dict[str, Any], key: str) -> str:
    """The file's own spelling of ``key``: itself, else a key equal to it in snake_case (``api_key``)."""
    if key in node:
        return key
    snake = to_snake(key)
    return next((k for k in node if to_snake(k) == snake), key)


def _parent(raw: dict[str, Any], keys: list[str], path: Path, *, create: bool) -> dict[str, Any] | None:
    node = raw
    for depth, key in enumerate(keys[:-1]):
        name = _existing_key(node, key)
        child = node.get(name)
        if child is None:
            if not create:
                return None
            child = node[name] = {}
        elif not isinstance(child, dict):
            where = ".".join(keys[: depth + 1])
            raise ConfigError(f"{path}: {where} is {json.dumps(child)[:40]}, not an object, so "
                              f"{'.'.join(keys)} cannot be set in it")
        node = child
    return node


def _set(raw: dict[str, Any], keys: list[str], value: Any, path: Path) -> None:
    node = _parent(raw, keys, path, create=True)
    assert node is not None
    name = _existing_key(node, keys[-1])
    if name in node and _resolves_to(node[name], value):
        return  # unchanged, or a ${VAR} reference that already says this: keep it as written
    node[name] = value


def _remove(raw: dict[str, Any], keys: list[str], path: Path) -> None:
    node = _parent(raw, keys, path, create=False)
    if node is not None:
        node.pop(_existing_key(node, keys[-1]), None)


def _resolves_to(current: Any, new: Any) -> bool:
    """Whether the raw ``current`` value, its ``${VAR}`` references resolved from the environment as the
    loader does, says ``new``. A reference to an unset variable resolves to nothing."""
    if isinstance(current, str):
        if not _VAR.search(current):
            return bool(current == new)
        unset = False

        def substitute(match: re.Match[str]) -> str:
            nonlocal unset
            value = os.environ.get(match[1])
            unset = unset or value is None
            return value or ""

        resolved = _VAR.sub(substitute, current)
        if unset:
            return False
        # "${PORT}" resolves to "8088", which the loader reads as the number 8088
        return bool(resolved == (new if isinstance(new, str) else json.dumps(new)))
    if isinstance(current, dict):
        return (isinstance(new, dict) and list(current) == list(new)
                and all(_resolves_to(current[k], new[k]) for k in current))
    if isinstance(current, list):
        return (isinstance(new, list) and len(current) == len(new)
                and all(_resolves_to(c, n) for c, n in zip(current, new, strict=True)))
    return type(current) is type(new) and bool(current == new)


def _replace_checked(path: Path, data: bytes) -> None:
    """Write a dot-named 0600 temp file beside ``path``, fsync it, load it as the bot would, then rename it
    over ``path``. On any failure the temp file goes and ``path`` is as it was."""
    make_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o600)  # whatever the umask says
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            load_config(tmp, env_file=None)
        except ConfigError as exc:
            message = str(exc).replace(str(tmp), str(path))
            raise ConfigError(f"{message} (not saved: {path} is unchanged)") from None
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
