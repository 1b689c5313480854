"""Retention: old day folders go, chat state forgets them, the CLI and the running bot apply it."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bots import app
from bots.app import open_service
from core.config_file import load_config
from core.service import ImageService
from core.stores import GalleryQuery
from tests.images import png_bytes

NOW = datetime.now(UTC)


def _config(tmp_path: Path, **storage: object) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"storage": storage}))
    return path


async def _stored(service: ImageService, days_ago: int, chat: str) -> str:
    artifact = await service.store.save(png_bytes(), prompt=f"{days_ago} days ago", model="m", provider="custom",
                                        chat=chat, created=NOW - timedelta(days=days_ago))
    await service.state.record_artifacts(chat, [artifact])
    await service.state.map_messages(chat, [(f"m{days_ago}", artifact.id)])
    return artifact.id


async def test_prune_removes_old_days_only_and_chat_state_forgets_them(tmp_path: Path) -> None:
    async with open_service(load_config(_config(tmp_path), env_file=None)) as service:
        old = await _stored(service, 10, "telegram:1")
        recent = await _stored(service, 1, "telegram:1")
        newest_old = await _stored(service, 9, "telegram:2")  # the last image of chat 2 goes too
        stray = service.store.root / "not-a-day"
        stray.mkdir()
        (stray / "keep.txt").write_text("mine")

        assert await service.prune(0) == 0  # 0 keeps everything
        assert await service.prune(7) == 2

        assert await service.store.get(old) is None and await service.store.get(newest_old) is None
        assert await service.store.get(recent) is not None
        assert [e.artifact_id for e in await service.state.history(None, 10)] == [recent]
        assert await service.state.artifact_for_message("telegram:1", "m10") is None
        assert await service.state.artifact_for_message("telegram:1", "m1") == recent
        assert await service.state.last_artifact("telegram:2") is None
        assert (stray / "keep.txt").read_text() == "mine"
        old_day = (NOW - timedelta(days=10)).strftime("%Y-%m-%d")
        assert not (service.store.root / old_day).exists()


async def test_a_running_bot_applies_the_configured_retention(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, retentionDays=3), env_file=None)
    async with open_service(config) as service:
        old = await _stored(service, 5, "cli:x")
    stop = asyncio.Event()

    async def front_end(config: object, service: ImageService, stop_event: asyncio.Event) -> None:
        stop_event.set()  # stop at once: the retention pass at start still runs before the bot returns

    await asyncio.wait_for(app.run_front_ends(config, {"test": front_end}, stop), 10)
    assert not list(tmp_path.glob("media/generated/*/img_*"))
    async with open_service(config) as service:
        assert await service.store.get(old) is None


async def test_cli_prune_needs_a_number_of_days_and_then_removes(tmp_path: Path) -> None:
    config_path = _config(tmp_path)
    async with open_service(load_config(config_path, env_file=None)) as service:
        await _stored(service, 30, "cli:x")
        kept = await _stored(service, 0, "cli:x")

    async def pixbot(*argv: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bots", *argv, "--config", str(config_path), cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    code, _, err = await pixbot("prune")
    assert code == 2 and err.startswith("error: say how many days to keep")
    code, out, _ = await pixbot("prune", "--days", "7")
    assert code == 0 and out.strip() == "removed 1 image(s) stored more than 7 days ago"
    assert [p.stem for p in tmp_path.glob("media/generated/*/img_*.png")] == [kept]


async def test_prune_drops_the_usage_and_settled_jobs_of_pruned_days(tmp_path: Path) -> None:
    today = NOW.date()
    async with open_service(load_config(_config(tmp_path), env_file=None)) as service:
        for days_ago in (10, 1, 0):
            assert await service.state.try_consume("u", 1, 0, today=today - timedelta(days=days_ago)) == 1
        old_job = await service.jobs.create(chat_key="cli:x", user_key="u", prompt="p", requested=1, request={})
        await service.jobs.advance(old_job.id, "failed", error="internal")
        running = await service.jobs.create(chat_key="cli:x", user_key="u", prompt="p", requested=1, request={})
        recent = await service.jobs.create(chat_key="cli:x", user_key="u", prompt="p", requested=1, request={})
        await service.jobs.advance(recent.id, "failed", error="internal")
        ten_days_ago = (NOW - timedelta(days=10)).isoformat()
        await service.jobs._db.run(lambda conn: conn.execute(
            "UPDATE jobs SET created_at = ? WHERE id IN (?, ?)", (ten_days_ago, old_job.id, running.id)).rowcount)

        await service.prune(7)

        assert await service.state.usage_today("u", today=today - timedelta(days=10)) == 0
        assert await service.state.usage_today("u", today=today - timedelta(days=1)) == 1
        assert await service.state.usage_today("u", today=today) == 1
        assert await service.jobs.get(old_job.id) is None
        assert await service.jobs.get(running.id) is not None  # still queued: never dropped under a worker
        assert await service.jobs.get(recent.id) is not None


async def test_prune_takes_the_thumbnails_with_their_images(tmp_path: Path) -> None:
    async with open_service(load_config(_config(tmp_path), env_file=None)) as service:
        old, recent = await _stored(service, 10, "web:1"), await _stored(service, 1, "web:1")
        for artifact_id in (old, recent):
            artifact = await service.artifact(artifact_id)
            assert artifact is not None and (await service.thumbnail(artifact))[8:12] == b"WEBP"
        assert len(list(service.store.root.glob("*/img_*.thumb.webp"))) == 2
        assert await service.prune(7) == 1
        assert [p.name for p in service.store.root.glob("*/img_*.thumb.webp")] == [f"{recent}.thumb.webp"]
        assert [row.artifact_id for row in (await service.gallery(GalleryQuery())).images] == [recent]
