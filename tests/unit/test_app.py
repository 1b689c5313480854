"""The composition root's run loop: what it does around the front-ends."""

from __future__ import annotations

import asyncio
import gc
import json
from pathlib import Path

from bots import app
from core.config_file import load_config
from core.service import ImageService


async def test_the_start_up_heap_is_frozen_while_front_ends_run_and_released_after(tmp_path: Path) -> None:
    """Full collections then skip what start-up built (they stalled the loop ~170 ms each otherwise)."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"storage": {"dataDir": str(tmp_path / "data")}}))
    seen: list[int] = []

    async def front_end(config: object, service: ImageService, stop: asyncio.Event) -> None:
        seen.append(gc.get_freeze_count())
        stop.set()

    assert gc.get_freeze_count() == 0
    await asyncio.wait_for(app.run_front_ends(load_config(path, env_file=None), {"probe": front_end}), 10)
    assert seen and seen[0] > 0
    assert gc.get_freeze_count() == 0
