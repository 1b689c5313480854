"""The artifact store's directory side: the file names it recognises, the day folders it scans, sidecar
loading, and the per-folder passes behind retention (``clear_day``) and the crash-leftover sweep
(``sweep_day``). Plain blocking file work, for core/artifacts.py to run in worker threads."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path

from core.images import EXTENSIONS
from core.models import Artifact

__all__ = ["SIDECAR", "clear_day", "created_at_key", "day_folders", "entries", "load_sidecar", "sweep_day"]

#: Under the store's logger name, so its log lines read as before.
log = logging.getLogger("core.artifacts")

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
SIDECAR = re.compile(r"(img_[0-9a-f]{12})\.json")
_IMAGE = re.compile(r"(img_[0-9a-f]{12})\.(?:png|jpg|webp|gif)")
_THUMB = re.compile(r"(img_[0-9a-f]{12})\.thumb\.webp")
_TEMP = re.compile(r"\.img_[0-9a-f]{12}\.(?:png|jpg|webp|gif|json|thumb\.webp)\.tmp-[0-9a-f]+")


def day_folders(root: Path) -> list[Path]:
    """The ``YYYY-MM-DD`` folders under ``root``, newest first."""
    days = [e for e in entries(root) if _DAY.fullmatch(e.name) and e.is_dir()]
    return [root / e.name for e in sorted(days, key=lambda e: e.name, reverse=True)]


def clear_day(day: Path) -> list[str]:
    """Delete a day folder's files, then the folder if it is empty; returns the ids of the images that went."""
    removed: list[str] = []
    # Sidecars first: a sidecar must never outlive its image.
    for entry in sorted(entries(day), key=lambda e: _IMAGE.fullmatch(e.name) is not None):
        image = _IMAGE.fullmatch(entry.name)
        if image is not None:
            removed.append(image[1])
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.unlink(entry.path)
    with contextlib.suppress(OSError):  # not empty: a save raced in; the next prune takes it
        day.rmdir()
    return removed


def sweep_day(day: Path, cutoff: float, busy: set[str]) -> int:
    """Remove a day folder's temp files, and its images and thumbnails without a sidecar (ids in ``busy``
    are mid-save and kept), last modified before ``cutoff``; returns how many files went."""
    removed = 0
    for entry in entries(day):
        orphan = _IMAGE.fullmatch(entry.name) or _THUMB.fullmatch(entry.name)
        if orphan is not None:
            if orphan[1] in busy or (day / f"{orphan[1]}.json").exists():
                continue
        elif not _TEMP.fullmatch(entry.name):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def load_sidecar(sidecar: Path) -> Artifact | None:
    """The artifact a sidecar describes, with ``path`` pointing at its image beside it; None if broken."""
    try:
        data = json.loads(sidecar.read_bytes())
        if not isinstance(data, dict) or data.get("id") != sidecar.stem:
            raise ValueError("id does not match the file name")
        artifact = Artifact.from_sidecar(data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("skipping unreadable sidecar %s: %s", sidecar, exc)
        return None
    ext = EXTENSIONS.get(artifact.mime)
    image = sidecar.with_name(artifact.id + ext) if ext else None
    if image is None or not image.is_file():
        log.warning("sidecar %s has no image beside it", sidecar)
        return None
    return dataclasses.replace(artifact, path=str(image))


def entries(folder: Path) -> list[os.DirEntry[str]]:
    """A folder's entries; none when it is missing (or was removed while we looked)."""
    try:
        with os.scandir(folder) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []


def created_at_key(created_at: str) -> datetime:
    """A sidecar's ``created_at`` as an aware datetime for sorting; the earliest one when unreadable."""
    try:
        when = datetime.fromisoformat(created_at)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
