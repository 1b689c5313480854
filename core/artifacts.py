"""Artifact store: provider bytes saved unchanged beside a JSON sidecar, atomically; lookup by id.

Layout (nanobot-compatible): ``<media root>/<saveDir>/<YYYY-MM-DD, UTC>/img_<12 hex>.<ext>`` plus
``img_<12 hex>.json``. The sidecar is the commit point: it is written only after its image is
complete on disk, so a sidecar always has its image. Temp files are dotfiles, and a thumbnail
(``img_<12 hex>.thumb.webp``, made by ``core/thumbnails.py``) lives and dies with its image: neither
ever counts as an artifact. No network, no chat types, no Pillow work on the event loop. The folder
scanning, sidecar loading and the prune and sweep passes are in ``core/artifact_files.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from core.artifact_files import SIDECAR, clear_day, created_at_key, day_folders, entries, load_sidecar, sweep_day
from core.durable import atomic_write, fsync_dir, make_dirs
from core.errors import ConfigError, InternalError, InvalidRequest
from core.images import EXTENSIONS, validate_image
from core.models import Artifact

__all__ = ["THUMB_SUFFIX", "ArtifactStore", "is_artifact_id", "new_artifact_id", "thumbnail_path"]

log = logging.getLogger(__name__)

_SAVE_DIR_KEY = "tools.imageGeneration.saveDir"
_ID = re.compile(r"img_[0-9a-f]{12}")
#: What follows the id in a thumbnail's file name.
THUMB_SUFFIX = ".thumb.webp"
_ID_ATTEMPTS = 8


def is_artifact_id(value: str) -> bool:
    """``img_`` + 12 lowercase hex digits: the only form ever looked up on disk."""
    return _ID.fullmatch(value) is not None


def thumbnail_path(image: Path) -> Path:
    """Where the thumbnail of the image file ``image`` is kept: beside it, ``img_<id>.thumb.webp``."""
    return image.with_name(image.stem + THUMB_SUFFIX)


def new_artifact_id() -> str:
    """48 random bits from ``secrets``; the store checks for collisions before using one."""
    return "img_" + secrets.token_hex(6)


class ArtifactStore:
    """Saves, finds and reads artifacts under ``<media_root>/<save_dir>``.

    Safe to share between tasks: every file operation runs in a worker thread, and in-flight ids
    are reserved under a lock so concurrent saves never pick the same id.
    """

    def __init__(
        self, media_root: Path | str, save_dir: str = "generated", *, max_pixels: int = 40_000_000
    ) -> None:
        self._media_root = Path(media_root).expanduser().resolve()
        self._root = _safe_root(self._media_root, save_dir)
        self._max_pixels = max_pixels
        self._lock = threading.Lock()
        #: id → sidecar path, filled by saves and lookups (a cache, re-checked on use).
        self._sidecars: dict[str, Path] = {}
        #: ids of saves still being written: not yet visible, but taken.
        self._reserved: set[str] = set()

    def __repr__(self) -> str:
        return f"ArtifactStore({str(self._root)!r})"

    @property
    def root(self) -> Path:
        """The resolved artifact directory (``media_root / save_dir``); may not exist yet."""
        return self._root

    @property
    def media_root(self) -> Path:
        return self._media_root

    async def save(
        self,
        data: bytes,
        *,
        prompt: str,
        model: str,
        provider: str,
        source_images: Sequence[str] = (),
        parent_id: str | None = None,
        job_id: str | None = None,
        chat: str | None = None,
        applied: Mapping[str, Any] | None = None,
        ignored: Mapping[str, str] | None = None,
        created: datetime | None = None,
    ) -> Artifact:
        """Validate the bytes (BadImage if they are not a sound image), then store them unchanged.
        Both happen in one worker-thread hop."""
        when = created if created is not None else datetime.now(UTC)
        if when.tzinfo is None:
            raise ValueError("created must be timezone-aware")
        when = when.astimezone(UTC)
        draft = Artifact(
            id="",
            path="",
            mime="",
            prompt=prompt,
            model=model,
            provider=provider,
            source_images=tuple(str(s) for s in source_images),
            created_at=when.isoformat(),
            parent_id=parent_id,
            job_id=job_id,
            chat=chat,
            bytes=len(data),
            applied=dict(applied or {}),
            ignored={str(k): str(v) for k, v in (ignored or {}).items()},
        )
        try:
            artifact = await asyncio.to_thread(self._validate_and_write, data, draft, when.strftime("%Y-%m-%d"))
        except OSError as exc:
            raise InternalError("The image could not be stored. It has been logged; please try again.",
                                detail=f"{type(exc).__name__}: {exc}") from exc
        log.info("stored %s %s %dx%d %d bytes provider=%s job=%s chat=%s", artifact.id, artifact.mime,
                 artifact.width, artifact.height, artifact.bytes, provider, job_id, chat)
        return artifact

    async def get(self, artifact_id: str) -> Artifact | None:
        """The artifact with this id, or None (unknown, malformed, or its files are gone)."""
        if not is_artifact_id(artifact_id):
            return None
        return await asyncio.to_thread(self._get, artifact_id)

    async def read(self, artifact: Artifact | str) -> bytes:
        """The stored bytes of an artifact (or of an artifact id), exactly as the provider sent them."""
        if isinstance(artifact, str):
            found = await self.get(artifact)
            if found is None:
                raise InvalidRequest("There is no stored image with that id.", detail=repr(artifact[:80]))
            artifact = found
        return await asyncio.to_thread(self._read, Path(artifact.path))

    async def get_many(self, artifact_ids: Sequence[str]) -> dict[str, Artifact]:
        """The artifacts among these ids that are still stored, by id, in one worker-thread hop and
        at most one pass over the day folders (for many ids at once: ``get`` looks for each alone)."""
        wanted = {i for i in artifact_ids if is_artifact_id(i)}
        return await asyncio.to_thread(self._get_many, wanted) if wanted else {}

    async def recent(self, limit: int = 20, *, chat: str | None = None) -> list[Artifact]:
        """Newest first, read from the sidecars; only one chat's when ``chat`` is given."""
        if limit <= 0:
            return []
        return await asyncio.to_thread(self._recent, limit, chat)

    async def prune(self, before: date) -> list[str]:
        """Delete every artifact stored on a UTC day before ``before`` (retention); returns their ids.

        Whole day folders go (thumbnails too), sidecar before image, so a crash midway leaves only
        orphan images that ``sweep_temp`` clears (never a sidecar without its image); folders that are
        not ``YYYY-MM-DD`` are never touched."""
        return await asyncio.to_thread(self._prune, before.isoformat())

    async def sweep_temp(self, older_than_s: float = 3600) -> int:
        """Remove crash leftovers older than ``older_than_s``; returns how many files went.

        That is temp files, images whose sidecar never got written (a crash between the two renames):
        such an image was never an artifact, and thumbnails whose image is gone. ``older_than_s`` must
        exceed the longest save, since another process may be mid-save.
        """
        if older_than_s < 0:
            raise ValueError("older_than_s must not be negative")
        return await asyncio.to_thread(self._sweep, time.time() - older_than_s)

    def _validate_and_write(self, data: bytes, draft: Artifact, day: str) -> Artifact:
        info = validate_image(data, max_pixels=self._max_pixels, full=False)
        draft = dataclasses.replace(draft, mime=info.mime, width=info.width, height=info.height)
        return self._write(data, draft, day)

    def _write(self, data: bytes, draft: Artifact, day: str) -> Artifact:
        day_dir = self._root / day
        make_dirs(day_dir)
        if not day_dir.resolve().is_relative_to(self._root):
            raise ConfigError(f"{_SAVE_DIR_KEY}: the folder {day_dir} leads outside the artifact directory.")
        artifact_id = self._reserve_id()
        try:
            image = day_dir / f"{artifact_id}{EXTENSIONS[draft.mime]}"
            sidecar = day_dir / f"{artifact_id}.json"
            artifact = dataclasses.replace(draft, id=artifact_id, path=str(image))
            text = json.dumps(artifact.to_sidecar(), indent=2, ensure_ascii=False, default=str) + "\n"
            atomic_write(image, data)
            try:
                atomic_write(sidecar, text.encode("utf-8"))
            except BaseException:
                image.unlink(missing_ok=True)
                raise
            fsync_dir(day_dir)
            with self._lock:
                self._sidecars[artifact_id] = sidecar
            return artifact
        finally:
            with self._lock:
                self._reserved.discard(artifact_id)

    def _reserve_id(self) -> str:
        for _ in range(_ID_ATTEMPTS):
            candidate = new_artifact_id()
            with self._lock:
                if candidate in self._reserved or candidate in self._sidecars:
                    continue
                self._reserved.add(candidate)
            if not self._taken(candidate):
                return candidate
            with self._lock:
                self._reserved.discard(candidate)
        raise InternalError("Could not pick a fresh image id.", detail=f"{_ID_ATTEMPTS} collisions in a row")

    def _taken(self, artifact_id: str) -> bool:
        """A sidecar or image (even an orphan) with this id in any day folder: 48 bits can collide."""
        # A thumbnail left behind would be shown for a new image with its id.
        names = [f"{artifact_id}.json", artifact_id + THUMB_SUFFIX, *(artifact_id + ext for ext in EXTENSIONS.values())]
        return any((day / name).exists() for day in self._days() for name in names)

    def _days(self) -> list[Path]:
        """Day folders, newest first."""
        return day_folders(self._root)

    def _find(self, artifact_id: str) -> Path | None:
        with self._lock:
            cached = self._sidecars.get(artifact_id)
        if cached is not None and cached.is_file():
            return cached
        for day in self._days():
            sidecar = day / f"{artifact_id}.json"
            if sidecar.is_file():
                return sidecar
        return None

    def _get(self, artifact_id: str) -> Artifact | None:
        sidecar = self._find(artifact_id)
        artifact = load_sidecar(sidecar) if sidecar is not None else None
        with self._lock:
            if artifact is not None and sidecar is not None:
                self._sidecars[artifact_id] = sidecar
            else:
                self._sidecars.pop(artifact_id, None)
        return artifact

    def _get_many(self, wanted: set[str]) -> dict[str, Artifact]:
        found: dict[str, Path] = {}
        with self._lock:
            cached = {i: self._sidecars[i] for i in wanted if i in self._sidecars}
        found.update((i, path) for i, path in cached.items() if path.is_file())
        if len(found) < len(wanted):
            for day in self._days():
                for entry in entries(day):
                    match = SIDECAR.fullmatch(entry.name)
                    if match is not None and match[1] in wanted and match[1] not in found:
                        found[match[1]] = day / entry.name
        artifacts = {i: a for i, sidecar in found.items() if (a := load_sidecar(sidecar)) is not None}
        with self._lock:
            self._sidecars.update((i, found[i]) for i in artifacts)
        return artifacts

    def _read(self, path: Path) -> bytes:
        resolved = path.resolve()
        if not resolved.is_relative_to(self._media_root):
            raise InvalidRequest("That image is not in the bot's media folder.", detail=str(path))
        try:
            return resolved.read_bytes()
        except FileNotFoundError as exc:
            raise InvalidRequest("That image is no longer stored.", detail=str(path)) from exc
        except OSError as exc:
            raise InternalError("The stored image could not be read. It has been logged; please try again.",
                                detail=f"{path}: {type(exc).__name__}: {exc}") from exc

    def _recent(self, limit: int, chat: str | None) -> list[Artifact]:
        found: list[Artifact] = []
        for day in self._days():
            batch = [
                artifact
                for entry in entries(day)
                if SIDECAR.fullmatch(entry.name)
                and (artifact := load_sidecar(day / entry.name)) is not None
                and (chat is None or artifact.chat == chat)
            ]
            batch.sort(key=lambda a: (created_at_key(a.created_at), a.id), reverse=True)
            found.extend(batch)
            if len(found) >= limit:
                break
        return found[:limit]

    def _prune(self, before: str) -> list[str]:
        removed: list[str] = []
        for day in self._days():
            if day.name < before:
                removed.extend(clear_day(day))
        with self._lock:
            for artifact_id in removed:
                self._sidecars.pop(artifact_id, None)
        if removed:
            log.info("retention: removed %d image(s) stored before %s", len(removed), before)
        return removed

    def _sweep(self, cutoff: float) -> int:
        with self._lock:
            busy = set(self._reserved)
        removed = sum(sweep_day(day, cutoff, busy) for day in self._days())
        if removed:
            log.info("swept %d leftover file(s) under %s", removed, self._root)
        return removed


def _safe_root(media_root: Path, save_dir: str) -> Path:
    """``media_root / save_dir`` resolved, refusing anything that could lead outside the media root."""
    raw = save_dir.replace("\\", "/")
    if PurePosixPath(raw).is_absolute() or PureWindowsPath(save_dir).drive or raw.startswith("~"):
        raise ConfigError(f"{_SAVE_DIR_KEY} must be a folder name relative to the media directory, "
                          f"not an absolute path (got {save_dir!r}).")
    relative = raw.strip("/")
    if not relative:
        raise ConfigError(f"{_SAVE_DIR_KEY} must not be empty.")
    if any(part in ("", ".", "..") for part in relative.split("/")):
        raise ConfigError(f"{_SAVE_DIR_KEY} must be a plain relative path without '.', '..' or empty "
                          f"parts (got {save_dir!r}).")
    root = (media_root / relative).resolve()
    if not root.is_relative_to(media_root):
        raise ConfigError(f"{_SAVE_DIR_KEY} {save_dir!r} leads outside the media directory {media_root} "
                          f"(through a symlink).")
    return root
