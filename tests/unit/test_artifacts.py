"""core.artifacts: layout, sidecars, validation on save, saveDir safety, lookup, crash safety, concurrency."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image

import core.artifacts
from core.artifacts import ArtifactStore, is_artifact_id
from core.errors import BadImage, ConfigError, InternalError, InvalidRequest
from core.images import validate_image
from core.models import Artifact
from tests.crafted_images import flip_idat_byte, header_only_png, image_bytes
from tests.images import jpeg_bytes, noise_png, png_bytes

REPO = Path(__file__).resolve().parents[2]
ID = re.compile(r"img_[0-9a-f]{12}")
WHEN = datetime(2026, 5, 8, 12, 0, tzinfo=UTC)


@pytest.fixture
def media(tmp_path: Path) -> Path:
    return tmp_path / "media"


@pytest.fixture
def store(media: Path) -> ArtifactStore:
    return ArtifactStore(media)


async def _save(store: ArtifactStore, data: bytes | None = None, **kw: object) -> Artifact:
    fields: dict[str, object] = {"prompt": "a fox", "model": "m-1", "provider": "fake"} | kw
    return await store.save(png_bytes() if data is None else data, **fields)  # type: ignore[arg-type]


def _visible(root: Path) -> list[Path]:
    """Every non-dot file under ``root`` (tests do their small file checks in plain helpers)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _bytes(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def _exists(path: str | Path) -> bool:
    return Path(path).exists()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _remove(path: str | Path) -> None:
    Path(path).unlink()


def _block_with_a_file(folder: Path) -> None:
    folder.parent.mkdir(parents=True)
    folder.write_text("a file where the folder should be")


def _symlink_day(day: Path, target: Path) -> None:
    target.mkdir()
    day.parent.mkdir(parents=True)
    day.symlink_to(target, target_is_directory=True)


class TestLayoutAndSidecar:
    async def test_image_and_sidecar_live_in_a_utc_day_folder(self, store: ArtifactStore) -> None:
        created = datetime(2026, 5, 8, 23, 30, tzinfo=timezone(timedelta(hours=-5)))  # 04:30 UTC next day
        art = await _save(store, created=created)
        assert ID.fullmatch(art.id)
        assert store.root == store.media_root / "generated"
        day = store.root / "2026-05-09"
        assert Path(art.path) == day / f"{art.id}.png" and Path(art.path).is_absolute()
        assert _visible(store.media_root) == sorted([day / f"{art.id}.json", day / f"{art.id}.png"])
        assert art.created_at == "2026-05-09T04:30:00+00:00"

    async def test_default_creation_time_is_now_in_utc(self, store: ArtifactStore) -> None:
        before = datetime.now(UTC)
        art = await _save(store)
        created = datetime.fromisoformat(art.created_at)
        assert created.utcoffset() == timedelta(0) and before <= created <= datetime.now(UTC)
        assert Path(art.path).parent.name == created.strftime("%Y-%m-%d")

    async def test_sidecar_holds_nanobot_and_pixbot_fields(self, store: ArtifactStore) -> None:
        data = png_bytes(48, 32)
        art = await store.save(
            data, prompt="café au lait 🦊", model="openai/gpt-5.4-image-2", provider="openrouter",
            source_images=["/refs/a.png"], parent_id="img_00000000000a", job_id="job-1", chat="telegram:42",
            applied={"aspect_ratio": "3:2"}, ignored={"size": "4K not supported"}, created=WHEN,
        )
        raw = Path(art.path).with_suffix(".json").read_text(encoding="utf-8")
        assert "café au lait 🦊" in raw and raw.startswith('{\n  "id"')  # UTF-8, indent=2
        sidecar = json.loads(raw)
        assert sidecar == art.to_sidecar()
        assert sidecar == {
            "id": art.id, "path": art.path, "mime": "image/png", "prompt": "café au lait 🦊",
            "model": "openai/gpt-5.4-image-2", "provider": "openrouter", "source_images": ["/refs/a.png"],
            "created_at": "2026-05-08T12:00:00+00:00", "parent_id": "img_00000000000a", "job_id": "job-1",
            "chat": "telegram:42", "width": 48, "height": 32, "bytes": len(data),
            "applied": {"aspect_ratio": "3:2"}, "ignored": {"size": "4K not supported"},
        }

    @pytest.mark.parametrize(
        ("data", "ext", "mime"),
        [
            (jpeg_bytes(), ".jpg", "image/jpeg"),
            (image_bytes(Image.new("RGB", (8, 8)), "WEBP"), ".webp", "image/webp"),
            (image_bytes(Image.new("RGB", (8, 8)), "GIF"), ".gif", "image/gif"),
        ],
        ids=["jpeg", "webp", "gif"],
    )
    async def test_extension_comes_from_the_magic_bytes(
        self, store: ArtifactStore, data: bytes, ext: str, mime: str
    ) -> None:
        art = await _save(store, data)
        assert art.path.endswith(ext) and art.mime == mime
        assert _bytes(art.path) == data  # stored unchanged, never re-encoded

    async def test_naive_creation_time_is_a_programming_error(self, store: ArtifactStore) -> None:
        with pytest.raises(ValueError, match="timezone"):
            await _save(store, created=datetime(2026, 1, 1))


class TestSaveValidates:
    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (b"<html>not an image</html>", "not an image the bot can use"),
            (noise_png(32, 32)[:1500], "damaged or incomplete"),
            (flip_idat_byte(png_bytes()), "damaged or incomplete"),
            (header_only_png(20000, 20000), "20000x20000 pixels"),
        ],
        ids=["non-image", "truncated", "flipped-idat", "bomb"],
    )
    async def test_bad_bytes_are_refused_and_nothing_is_written(
        self, store: ArtifactStore, media: Path, data: bytes, message: str
    ) -> None:
        with pytest.raises(BadImage, match=message):
            await _save(store, data)
        assert not _exists(media)

    async def test_over_the_pixel_budget(self, media: Path) -> None:
        small = ArtifactStore(media, max_pixels=1000)
        with pytest.raises(BadImage, match="64x64 pixels; the limit is 1000 pixels"):
            await _save(small, png_bytes(64, 64))
        assert (await _save(small, png_bytes(20, 20))).width == 20

    async def test_disk_errors_become_internal_errors(self, store: ArtifactStore) -> None:
        _block_with_a_file(store.root)
        with pytest.raises(InternalError) as caught:
            await _save(store)
        assert "could not be stored" in str(caught.value) and caught.value.detail


class TestSaveDir:
    @pytest.mark.parametrize(
        ("save_dir", "relative"),
        [("generated", "generated"), ("a/b/", "a/b"), ("pics\\out\\", "pics/out"), ("nano bot", "nano bot")],
    )
    def test_accepted_forms(self, media: Path, save_dir: str, relative: str) -> None:
        store = ArtifactStore(media, save_dir)
        assert store.root == media.resolve() / relative
        assert not media.exists()  # validated eagerly, but nothing is created

    @pytest.mark.parametrize(
        "save_dir",
        ["", "/", "\\", "/x/", "\\pics", "../x", "/abs", "a/../../b", "./x", "a/./b", "a//b", "C:\\p", "~/p"],
    )
    def test_unsafe_save_dirs_name_the_config_key(self, media: Path, save_dir: str) -> None:
        with pytest.raises(ConfigError) as caught:
            ArtifactStore(media, save_dir)
        assert "tools.imageGeneration.saveDir" in str(caught.value)

    def test_symlink_inside_media_pointing_outside(self, tmp_path: Path, media: Path) -> None:
        outside = tmp_path / "elsewhere"
        outside.mkdir()
        media.mkdir()
        (media / "link").symlink_to(outside, target_is_directory=True)
        with pytest.raises(ConfigError, match="outside the media directory"):
            ArtifactStore(media, "link")
        with pytest.raises(ConfigError):
            ArtifactStore(media, "link/sub")

    async def test_day_folder_swapped_for_an_outside_symlink(self, tmp_path: Path, media: Path) -> None:
        store = ArtifactStore(media)
        outside = tmp_path / "elsewhere"
        _symlink_day(store.root / "2026-05-08", outside)
        with pytest.raises(ConfigError):
            await _save(store, created=WHEN)
        assert _files(outside) == []


class TestLookup:
    async def test_get_by_id_from_a_fresh_store(self, store: ArtifactStore, media: Path) -> None:
        art = await _save(store, created=WHEN - timedelta(days=3))
        await _save(store, created=WHEN)
        assert await store.get(art.id) == art
        assert await ArtifactStore(media).get(art.id) == art  # no cache: found by searching day folders

    @pytest.mark.parametrize(
        "bad_id",
        ["", "img_", "img_XYZ", "IMG_0123456789ab", "img_0123456789abc", "../../etc/passwd", "img_0/../x"],
    )
    async def test_malformed_ids_are_never_looked_up(self, store: ArtifactStore, bad_id: str) -> None:
        assert not is_artifact_id(bad_id)
        assert await store.get(bad_id) is None
        with pytest.raises(InvalidRequest):
            await store.read(bad_id)

    async def test_unknown_id(self, store: ArtifactStore) -> None:
        await _save(store)
        assert await store.get("img_0123456789ab") is None
        with pytest.raises(InvalidRequest, match="no stored image"):
            await store.read("img_0123456789ab")

    async def test_sidecar_without_image_is_not_an_artifact(self, store: ArtifactStore) -> None:
        art = await _save(store)
        _remove(art.path)
        assert await store.get(art.id) is None

    async def test_read_returns_the_exact_bytes(self, store: ArtifactStore) -> None:
        data = jpeg_bytes(40, 40)
        art = await _save(store, data)
        assert await store.read(art) == data
        assert await store.read(art.id) == data

    async def test_read_refuses_paths_outside_media(self, store: ArtifactStore, tmp_path: Path) -> None:
        art = await _save(store)
        stray = _write(tmp_path / "stray.png", png_bytes())
        with pytest.raises(InvalidRequest, match="media folder"):
            await store.read(Artifact(**(art.to_sidecar() | {"path": str(stray), "source_images": ()})))

    async def test_recent_is_newest_first_and_skips_junk(self, store: ArtifactStore) -> None:
        saved = [
            await _save(store, created=WHEN + timedelta(hours=h), chat="tg:1" if h % 2 else "tg:2")
            for h in (0, 30, 5, 49, 1)
        ]
        day = Path(saved[0].path).parent
        (day / "img_000000000000.json").write_text("{not json")
        (day / ".img_111111111111.png.tmp-ab12").write_bytes(b"partial")
        (day / "notes.txt").write_text("ignored")
        newest_first = sorted(saved, key=lambda a: a.created_at, reverse=True)
        assert await store.recent() == newest_first
        assert await store.recent(2) == newest_first[:2]
        assert await store.recent(10, chat="tg:2") == [a for a in newest_first if a.chat == "tg:2"]
        assert await store.recent(0) == []

    async def test_recent_on_an_empty_store(self, store: ArtifactStore) -> None:
        assert await store.recent() == []


class TestIdsAndConcurrency:
    async def test_twenty_concurrent_saves_get_distinct_ids(self, store: ArtifactStore, media: Path) -> None:
        arts = await asyncio.gather(*(_save(store, png_bytes(8 + i, 8)) for i in range(20)))
        assert len({a.id for a in arts}) == 20
        assert len(_visible(media)) == 40
        for art in arts:
            assert await store.get(art.id) == art

    async def test_an_id_already_on_disk_is_not_reused(
        self, store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        first = await _save(store, created=WHEN - timedelta(days=1))
        orphan = _write(Path(first.path).with_name("img_0000000000aa.png"), png_bytes())
        fresh = ArtifactStore(store.media_root)  # nothing cached: the check has to look on disk
        ids = iter([first.id, orphan.stem, "img_00000000beef"])
        monkeypatch.setattr(core.artifacts, "new_artifact_id", lambda: next(ids))
        second = await _save(fresh, created=WHEN)
        assert second.id == "img_00000000beef"
        assert await fresh.get(first.id) == first

    async def test_endless_collisions_give_up(
        self, store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        first = await _save(store)
        monkeypatch.setattr(core.artifacts, "new_artifact_id", lambda: first.id)
        with pytest.raises(InternalError):
            await _save(store)


class TestSweep:
    async def test_sweep_removes_stale_temp_files_and_orphan_images(self, store: ArtifactStore) -> None:
        kept = await _save(store)
        day = Path(kept.path).parent
        temp = day / ".img_222222222222.png.tmp-0a0b"
        orphan = day / "img_333333333333.png"
        temp.write_bytes(b"half an image")
        orphan.write_bytes(png_bytes())
        assert await store.sweep_temp() == 0  # fresh leftovers may belong to a save in progress
        old = datetime.now(UTC).timestamp() - 7200
        for path in (temp, orphan):
            os.utime(path, (old, old))
        assert await store.sweep_temp() == 2
        assert _visible(day) == sorted([Path(kept.path), Path(kept.path).with_suffix(".json")])
        assert await store.get(kept.id) == kept

    async def test_negative_age_is_refused(self, store: ArtifactStore) -> None:
        with pytest.raises(ValueError):
            await store.sweep_temp(-1)


_CHILD = r"""
import asyncio, os, sys
from pathlib import Path
from core.artifacts import ArtifactStore

media, data_file, mode = sys.argv[1:4]
data = Path(data_file).read_bytes()
renames = 0
real_replace = os.replace

def replace(src, dst):
    # Save k renames its image (call 2k-1) and then its sidecar (call 2k). Freeze the 5th save
    # right before one of them and let the parent SIGKILL us there.
    global renames
    renames += 1
    if renames == {"image": 9, "sidecar": 10}.get(mode):
        print("frozen", flush=True)
        sys.stdin.readline()
    real_replace(src, dst)

os.replace = replace

async def main():
    store = ArtifactStore(Path(media))
    while True:
        art = await store.save(data, prompt="crash", model="m", provider="p")
        print("saved", art.id, flush=True)

asyncio.run(main())
"""


async def _run_until_killed(media: Path, data_file: Path, mode: str) -> int:
    """Start a saver, SIGKILL it at the chosen point, return how many saves it reported."""
    env = os.environ | {"PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, str(media), str(data_file), mode,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=REPO, env=env,
    )
    assert proc.stdout is not None
    saved = 0
    try:
        while True:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
            assert line, "the saver exited on its own"
            saved += line.startswith(b"saved")
            if line.startswith(b"frozen") or (mode == "free" and saved == 3):
                break
    finally:
        proc.kill()
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return saved


async def test_sigkill_mid_save_never_leaves_a_visible_partial_artifact(tmp_path: Path) -> None:
    media = tmp_path / "media"
    data = noise_png(600, 600)  # ~1 MB, so a kill can land mid-write
    data_file = tmp_path / "big.png"
    data_file.write_bytes(data)
    modes = ("image", "sidecar", "free")
    counts = await asyncio.gather(*(_run_until_killed(media, data_file, m) for m in modes))
    assert counts[:2] == [4, 4] and counts[2] >= 3

    root = media / "generated"
    everything = [p for p in root.rglob("*") if p.is_file()]
    temps = [p for p in everything if p.name.startswith(".")]
    visible = [p for p in everything if not p.name.startswith(".")]
    assert all(re.fullmatch(r"\.img_[0-9a-f]{12}\.(png|json)\.tmp-[0-9a-f]+", p.name) for p in temps)
    assert any(".png.tmp-" in p.name for p in temps)  # the "image" saver died with its image half-done
    images = {p.stem: p for p in visible if p.suffix == ".png"}
    sidecars = {p.stem: p for p in visible if p.suffix == ".json"}
    assert set(sidecars) <= set(images)  # every sidecar has its image
    for path in images.values():  # no visible partial image: each is the whole provider payload
        assert path.read_bytes() == data
    orphans = set(images) - set(sidecars)
    assert 1 <= len(orphans) <= 2  # the "sidecar" saver's (and maybe the free one's) last image

    store = ArtifactStore(media)
    listed = await store.recent(100)
    assert {a.id for a in listed} == set(sidecars) and len(listed) >= 11
    assert all(validate_image(_bytes(a.path)).width == 600 for a in listed[:2])
    assert await store.sweep_temp(older_than_s=0) == len(temps) + len(orphans)
    after = [p for p in root.rglob("*") if p.is_file()]
    assert not [p for p in after if p.name.startswith(".")]
    assert {p.stem for p in after if p.suffix == ".png"} == {p.stem for p in after if p.suffix == ".json"}
