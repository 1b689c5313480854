"""Reference resolution: artifact ids, local paths (contained unless trusted) and uploaded bytes
become validated ReferenceImages, read once per job and off the event loop."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.artifacts import ArtifactStore
from core.errors import BadImage, InvalidRequest
from core.images import inspect_image
from core.models import Reference
from core.provider import ReferenceImage

__all__ = ["MAX_REFERENCES", "ReferenceResolver", "ResolvedReference"]

MAX_REFERENCES = 16


@dataclass(frozen=True, slots=True)
class ResolvedReference:
    image: ReferenceImage
    #: What goes into the sidecar's ``source_images``: a path, or ``upload:<name>``.
    source: str
    artifact_id: str | None = None
    #: The image's pixel size, so an edit can keep its shape.
    width: int = 0
    height: int = 0


class ReferenceResolver:
    """Turns Reference values into images. Untrusted paths must resolve inside ``allowed_roots``."""

    def __init__(self, store: ArtifactStore, allowed_roots: Sequence[Path], *, max_bytes: int,
                 max_pixels: int) -> None:
        self.store = store
        self.allowed_roots = [Path(root).expanduser().resolve() for root in allowed_roots]
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels

    async def resolve_all(self, references: Sequence[Reference]) -> list[ResolvedReference]:
        if len(references) > MAX_REFERENCES:
            raise InvalidRequest(f"Too many reference images: {len(references)}; the limit is {MAX_REFERENCES}.")
        return list(await asyncio.gather(*(self._named(ref) for ref in references)))

    async def _named(self, ref: Reference) -> ResolvedReference:
        """``resolve``, with a bad image's message naming it: with several references, which one."""
        try:
            return await self.resolve(ref)
        except BadImage as exc:
            name = ref.name or (Path(ref.path).name if ref.path else ref.artifact_id)
            if not name or name in exc.message:
                raise
            raise BadImage(f"{name}: {exc.message}", detail=exc.detail) from exc

    async def resolve(self, ref: Reference) -> ResolvedReference:
        if ref.artifact_id is not None:
            artifact = await self.store.get(ref.artifact_id)
            if artifact is None:
                raise InvalidRequest(f"There is no stored image with id {ref.artifact_id}.")
            data = await self.store.read(artifact)
            return await self._resolved(data, ref.name or Path(artifact.path).name, artifact.path, artifact.path,
                                        artifact.id)
        if ref.data is not None:
            name = ref.name or "upload"
            return await self._resolved(ref.data, name, None, f"upload:{name}")
        if ref.path is not None:
            path = await asyncio.to_thread(self._checked_path, ref.path, ref.trusted)
            data = await asyncio.to_thread(self._read, path)
            return await self._resolved(data, path.name, str(path), str(path))
        raise InvalidRequest("A reference image was given without an id, a path or any data.")

    async def _resolved(self, data: bytes, name: str, path: str | None, source: str,
                        artifact_id: str | None = None) -> ResolvedReference:
        if len(data) > self.max_bytes:
            raise BadImage(f"That image is too large: {len(data) / 1_048_576:.1f} MB; the limit is "
                           f"{self.max_bytes / 1_048_576:.0f} MB.")
        info = await inspect_image(data, max_pixels=self.max_pixels)
        image = ReferenceImage(data=data, mime=info.mime, name=name, path=path)
        return ResolvedReference(image, source, artifact_id, info.width, info.height)

    def _checked_path(self, raw: str, trusted: bool) -> Path:
        """Containment is decided before existence, so an untrusted caller learns nothing about
        files outside the allowed folders (and a relative path is refused the same way wherever
        the process happens to run)."""
        path = Path(raw).expanduser()
        try:
            if not trusted and not self._contained(path.resolve()):
                raise InvalidRequest("Reference images must be inside the media directory or an allowed directory.")
            resolved = path.resolve(strict=True)
        except (FileNotFoundError, NotADirectoryError):
            raise InvalidRequest(f"Reference image not found: {raw}") from None
        except (OSError, RuntimeError) as exc:  # RuntimeError: symlink loop
            raise InvalidRequest(f"Reference image cannot be read: {raw} ({type(exc).__name__})") from None
        if not trusted and not self._contained(resolved):  # a link swapped between the two looks
            raise InvalidRequest("Reference images must be inside the media directory or an allowed directory.")
        if not stat.S_ISREG(resolved.stat().st_mode):
            raise InvalidRequest(f"Reference image is not a regular file: {raw}")
        return resolved

    def _contained(self, resolved: Path) -> bool:
        return any(resolved.is_relative_to(root) for root in self.allowed_roots)

    def _read(self, path: Path) -> bytes:
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                raise BadImage(f"That image is too large: {size / 1_048_576:.1f} MB; the limit is "
                               f"{self.max_bytes / 1_048_576:.0f} MB.")
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            with os.fdopen(fd, "rb") as handle:
                data = handle.read(self.max_bytes + 1)
        except OSError as exc:  # unreadable (permissions), or removed or replaced since the check
            raise InvalidRequest(f"Reference image cannot be read: {path.name} ({type(exc).__name__})",
                                 detail=f"{path}: {exc}") from None
        if len(data) > self.max_bytes:
            raise BadImage(f"That image is too large; the limit is {self.max_bytes / 1_048_576:.0f} MB.")
        return data
