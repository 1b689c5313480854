"""Thumbnails: a small WebP of a stored image, made once and kept beside it as ``img_<id>.thumb.webp``.

The original is never touched; retention removes the thumbnail with its image (``ArtifactStore.prune``
takes whole day folders), and the store's scans never take a thumbnail for an artifact. Pillow work
runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from io import BytesIO
from pathlib import Path
from typing import Final

from PIL import Image, ImageOps

from core.artifacts import ArtifactStore, thumbnail_path
from core.durable import atomic_write
from core.errors import InternalError, InvalidRequest
from core.models import Artifact

__all__ = ["BOX", "thumbnail"]

log = logging.getLogger(__name__)

#: The default longest side, in pixels.
BOX: Final = 384
_QUALITY: Final = 70


async def thumbnail(store: ArtifactStore, artifact: Artifact, *, box: int = BOX) -> bytes:
    """A WebP of ``artifact`` that fits in ``box`` x ``box`` (aspect kept, EXIF rotation applied,
    transparency kept, never enlarged): read from the cache beside the image, or made and cached."""
    if box < 1:
        raise ValueError(f"box must be at least 1, got {box}")
    return await asyncio.to_thread(_thumbnail, store, Path(artifact.path), box)


def _thumbnail(store: ArtifactStore, path: Path, box: int) -> bytes:
    image = path.resolve()
    if not image.is_relative_to(store.media_root):
        raise InvalidRequest("That image is not in the bot's media folder.", detail=str(path))
    # Only the standard size is cached (one file beside the image); another box is made each time.
    cached = thumbnail_path(image) if box == BOX else None
    if cached is not None:
        try:
            return cached.read_bytes()
        except FileNotFoundError:
            pass
    try:
        data = _render(image, box)
    except FileNotFoundError as exc:
        raise InvalidRequest("That image is no longer stored.", detail=str(path)) from exc
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InternalError("The thumbnail could not be made. It has been logged; please try again.",
                            detail=f"{path}: {type(exc).__name__}: {exc}") from exc
    if cached is None:
        return data
    try:
        atomic_write(cached, data)  # two requests at once both write the same bytes: either rename wins
    except OSError as exc:  # a read-only folder still gets its thumbnail, made again next time
        log.warning("could not cache the thumbnail of %s: %s", path, exc)
    return data


def _render(image: Path, box: int) -> bytes:
    with Image.open(image) as im:
        im.draft("RGB", (box, box))  # a JPEG decodes at a fraction of its size: much less work
        shown = ImageOps.exif_transpose(im)
        alpha = shown.mode in ("RGBA", "LA", "PA") or "transparency" in shown.info
        small = shown.convert("RGBA" if alpha else "RGB")
        small.thumbnail((box, box), Image.Resampling.LANCZOS)
        out = BytesIO()
        small.save(out, "WEBP", quality=_QUALITY, method=4)
    return out.getvalue()
