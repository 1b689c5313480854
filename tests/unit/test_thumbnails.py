"""core.thumbnails: a small WebP made once beside its image, never instead of it; the store's scans and
retention treat it as part of its image, never as an artifact."""

from __future__ import annotations

import asyncio
import io
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from core.artifacts import ArtifactStore, thumbnail_path
from core.errors import InvalidRequest
from core.models import Artifact
from core.thumbnails import thumbnail
from tests.crafted_images import exif_rotated_jpeg, image_bytes
from tests.images import jpeg_bytes, png_bytes

WHEN = datetime(2026, 5, 8, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "media")


async def _save(store: ArtifactStore, data: bytes, when: datetime = WHEN) -> Artifact:
    return await store.save(data, prompt="p", model="m", provider="fake", created=when)


def _open(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


async def test_a_thumbnail_is_a_small_webp_made_once_beside_its_image(store: ArtifactStore) -> None:
    original = png_bytes(1200, 600)
    artifact = await _save(store, original)
    data = await thumbnail(store, artifact)
    im = _open(data)
    assert (im.format, im.size) == ("WEBP", (384, 192))  # fits the box, aspect kept
    cached = Path(artifact.path).with_name(f"{artifact.id}.thumb.webp")
    assert cached == thumbnail_path(Path(artifact.path)) and cached.read_bytes() == data
    made = cached.stat()

    await asyncio.sleep(0.02)
    assert await thumbnail(store, artifact) == data  # the second call reads the cached file
    again = cached.stat()
    assert (again.st_ino, again.st_mtime_ns) == (made.st_ino, made.st_mtime_ns)
    assert await store.read(artifact) == original and Path(artifact.path).read_bytes() == original
    assert len(data) < len(original)


async def test_a_cached_thumbnail_is_served_as_it_is(store: ArtifactStore) -> None:
    artifact = await _save(store, png_bytes(500, 500))
    thumbnail_path(Path(artifact.path)).write_bytes(b"cached")
    assert await thumbnail(store, artifact) == b"cached"
    # Only the standard size is cached: another box is made from the image, never the cached file.
    assert _open(await thumbnail(store, artifact, box=64)).size == (64, 64)
    assert thumbnail_path(Path(artifact.path)).read_bytes() == b"cached"


async def test_other_box_sizes_and_small_images_are_never_enlarged(store: ArtifactStore) -> None:
    tall = await _save(store, jpeg_bytes(300, 900))
    assert _open(await thumbnail(store, tall, box=90)).size == (30, 90)
    small = await _save(store, png_bytes(50, 20))
    assert _open(await thumbnail(store, small)).size == (50, 20)
    with pytest.raises(ValueError):
        await thumbnail(store, small, box=0)


async def test_exif_rotation_is_applied(store: ArtifactStore) -> None:
    artifact = await _save(store, exif_rotated_jpeg(80, 40, orientation=6))  # stored wide, shown tall
    im = _open(await thumbnail(store, artifact))
    assert im.size == (40, 80)
    red, _green, blue = im.convert("RGB").getpixel((20, 5))  # type: ignore[misc]
    assert red > 200 and blue < 60  # the stored left edge (red band) is now at the top


async def test_transparency_is_kept(store: ArtifactStore) -> None:
    rgba = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 32, 64))
    artifact = await _save(store, image_bytes(rgba, "PNG"))
    im = _open(await thumbnail(store, artifact))
    assert im.mode == "RGBA"
    assert im.getpixel((60, 32))[3] == 0 and im.getpixel((4, 32))[3] == 255  # type: ignore[index]


async def test_images_outside_the_store_or_gone_are_refused(store: ArtifactStore, tmp_path: Path) -> None:
    artifact = await _save(store, png_bytes())
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(png_bytes())
    with pytest.raises(InvalidRequest):
        await thumbnail(store, Artifact(**{**artifact.to_sidecar(), "source_images": (), "path": str(outside)}))
    assert not thumbnail_path(outside).exists()
    Path(artifact.path).unlink()
    with pytest.raises(InvalidRequest, match="no longer stored"):
        await thumbnail(store, artifact)


async def test_the_store_never_takes_a_thumbnail_for_an_artifact(store: ArtifactStore) -> None:
    artifact = await _save(store, png_bytes(100, 100))
    await thumbnail(store, artifact)
    fresh = ArtifactStore(store.media_root)  # no cache: every lookup scans the folders
    assert [a.id for a in await fresh.recent(10)] == [artifact.id]
    assert (await fresh.get(artifact.id)) == artifact
    assert await fresh.get_many([artifact.id, "img_000000000000"]) == {artifact.id: artifact}
    assert fresh._taken(artifact.id)
    assert await fresh.sweep_temp(0) == 0  # a thumbnail with its image is no leftover
    assert thumbnail_path(Path(artifact.path)).exists() and Path(artifact.path).exists()


async def test_sweeping_removes_orphan_thumbnails_and_their_temp_files(store: ArtifactStore) -> None:
    artifact = await _save(store, png_bytes())
    day = Path(artifact.path).parent
    orphan = day / "img_0123456789ab.thumb.webp"  # its image and sidecar are gone (a race with retention)
    orphan.write_bytes(b"x")
    temp = day / f".{artifact.id}.thumb.webp.tmp-1a2b3c4d"  # a crash while caching one
    temp.write_bytes(b"x")
    assert store._taken("img_0123456789ab")  # its id is not handed out while the thumbnail is there
    old = time.time() - 7200
    for path in (orphan, temp):
        os.utime(path, (old, old))
    assert await store.sweep_temp(3600) == 2
    assert not orphan.exists() and not temp.exists() and Path(artifact.path).exists()


async def test_retention_removes_the_thumbnail_with_its_image(store: ArtifactStore) -> None:
    old = await _save(store, png_bytes(), WHEN - timedelta(days=10))
    kept = await _save(store, png_bytes())
    for artifact in (old, kept):
        await thumbnail(store, artifact)
    assert await store.prune(WHEN.date()) == [old.id]
    assert not thumbnail_path(Path(old.path)).exists() and not Path(old.path).parent.exists()
    assert thumbnail_path(Path(kept.path)).exists() and await store.get(kept.id) == kept
