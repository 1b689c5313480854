"""Benchmark ``telegram``: many chats sending ``/imagine`` at once through the real Telegram front-end.

Three processes: the real ``pixbot`` Telegram front-end (``run_telegram`` over ``open_service``: aiogram
polling, the service, SQLite, the artifact store, photo fitting), the fake Bot API
(tests/fakes/fake_telegram.py, in this process: it pushes one ``/imagine`` per private chat, all at
once, and re-encodes every photo like Telegram), and the fake provider (answers at once). Measured:
every photo delivered; time from the update being queued to the ``sendPhoto`` answer (p50/p99); the
bot loop's lag (p99 of how late a 10 ms sleep wakes up) during the burst. All three share this
machine's CPUs, so the times include the fakes' work. No nanobot column: nanobot has no Telegram
front-end of its own to compare.

``python -m bench.bench_telegram --bot CONFIG OUT`` is the bot process (internal).
"""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    BenchError,
    Benchmark,
    FakeServer,
    Row,
    markdown_table,
    pixbot_config,
    progress,
    scratch_dir,
)

__all__ = ["BENCHMARK", "run"]

#: Issue 7: the bot's event loop must stay responsive while hundreds of chats wait.
LAG_GOAL_MS = 50

CHATS = (50, 200)
_PROBE_INTERVAL = 0.010
_DEADLINE_S = 300.0


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _bot_main(config_path: str) -> dict[str, Any]:
    """The bot process: runs until SIGTERM; SIGUSR1 marks the burst's start (lag samples restart)."""
    from bots.app import frozen_startup_heap, open_service
    from bots.telegram import run_telegram
    from core.config_file import load_config

    loop, stop = asyncio.get_running_loop(), asyncio.Event()
    lags: list[float] = []
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lags.clear)

    async def probe() -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(_PROBE_INTERVAL)
            lags.append((time.perf_counter() - started - _PROBE_INTERVAL) * 1000)

    config = load_config(config_path, env_file=None)
    async with open_service(config) as service:
        with frozen_startup_heap():  # as bots.app.run_front_ends does
            probing = asyncio.create_task(probe())
            try:
                await run_telegram(config, service, stop)
            finally:
                probing.cancel()
        pending = len(await service.pending_deliveries("telegram"))
    return {"lags_ms": lags, "pending_after": pending}


async def _measure(api_base: str, root: Path, chats: int) -> dict[str, Any]:
    from tests.fakes.fake_telegram import FakeTelegramServer, User

    server = FakeTelegramServer()
    await server.start()
    raw = pixbot_config(api_base, root)
    raw["bots"] = {"telegram": {"token": server.token, "apiBase": server.base_url}}
    config_path, out_path = root / "config.json", root / "bot-result.json"
    await asyncio.to_thread(config_path.write_text, json.dumps(raw))
    bot = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.bench_telegram", "--bot",
                                               str(config_path), str(out_path), cwd=REPO)
    try:
        await server.wait_until(lambda: server.polls_waiting >= 1 or bot.returncode is not None, 60,
                                "the bot to poll")
        if bot.returncode is not None:
            raise BenchError(f"the bot process exited with status {bot.returncode}")
        bot.send_signal(signal.SIGUSR1)  # start-up (imports, getMe, setMyCommands) is not measured
        queued: dict[int, float] = {}
        for n in range(chats):
            user = User(1_000_000 + n, f"User{n}", f"user{n}")
            queued[user.id] = time.monotonic()
            await server.push_text("/imagine a lighthouse on a cliff at dusk", user=user)

        def photos() -> list[Any]:
            return [c for c in server.calls_of("sendPhoto") if c.ok]

        await server.wait_until(lambda: len(photos()) >= chats, _DEADLINE_S, f"{chats} photos")
        delivered = {c.params["chat_id"]: c.at for c in photos()}
        times = [(delivered[chat] - started) * 1000 for chat, started in queued.items() if chat in delivered]
    finally:
        if bot.returncode is None:
            bot.send_signal(signal.SIGTERM)
        await asyncio.wait_for(bot.wait(), 30)
        await server.stop()
    if bot.returncode != 0:
        raise BenchError(f"the bot process failed (status {bot.returncode})")
    result = json.loads(await asyncio.to_thread(out_path.read_text))
    return {"delivered": len(times), "pending_after": result["pending_after"], "times_ms": times,
            "lags_ms": result["lags_ms"]}


def run() -> list[Row]:
    rows: list[Row] = []
    table: list[list[object]] = []
    with FakeServer() as fake:
        for chats in CHATS:
            progress(f"telegram: {chats} chats")
            with scratch_dir("telegram") as tmp:
                result = asyncio.run(_measure(fake.api_base(), Path(tmp), chats))
            times, lags = result["times_ms"], result["lags_ms"]
            all_delivered = result["delivered"] == chats and result["pending_after"] == 0
            p50, p99 = statistics.median(times), _percentile(times, 0.99)
            lag99 = _percentile(lags, 0.99) if lags else 0.0
            table.append([chats, f"{result['delivered']}/{chats}", p50, p99, max(times), lag99, len(lags)])
            case = f"{chats} chats /imagine at once"
            rows += [
                Row("telegram", f"{case}: delivered", "photos", float(result["delivered"]),
                    goal=f"all {chats}", met=all_delivered),
                Row("telegram", f"{case}: time to photo p50", "ms", p50, extra={"samples": times}),
                Row("telegram", f"{case}: time to photo p99", "ms", p99),
                Row("telegram", f"{case}: event-loop lag p99", "ms", lag99, goal=f"< {LAG_GOAL_MS} ms",
                    met=lag99 is not None and lag99 < LAG_GOAL_MS, extra={"samples": len(lags)}),
            ]
    print("\n### telegram — chats sending /imagine at once (fake Bot API, provider answers at once)\n")
    print(markdown_table(["chats", "delivered", "p50 to photo (ms)", "p99 to photo (ms)", "max (ms)",
                          "loop lag p99 (ms)", "lag samples"], table))
    return rows


BENCHMARK = Benchmark("telegram", "many Telegram chats sending /imagine at once", run)

if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--bot":
        Path(sys.argv[3]).write_text(json.dumps(asyncio.run(_bot_main(sys.argv[2]))))
    else:
        run()
