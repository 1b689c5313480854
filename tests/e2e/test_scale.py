"""Several ``pixbot`` processes on one state: real subprocesses sharing a data dir and a database (SQLite in
that dir, or a real PostgreSQL server), against the loopback fakes. Quotas hold across API replicas; one
process polls Telegram while another stands by and takes over when it is killed, and finishes (or answers
for) the killed process's jobs; webhook replicas handle an update Telegram sent twice once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.cli_support import Cli
from tests.e2e.telegram_support import free_port
from tests.fakes.fake_provider import FakeProvider
from tests.fakes.fake_telegram import ALICE, FakeTelegramServer
from tests.fakes.telegram_wire import Chat
from tests.storage.postgres_server import PostgresServer
from tests.storage.postgres_server import postgres_server as postgres_server  # the fixture

_API_LINE = re.compile(r"pixbot API listening on (http://\S+)/v1")


@dataclass
class Replica:
    name: str
    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def wait_for_line(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:  # noqa: ASYNC109
        compiled = re.compile(pattern)
        for _ in range(int(timeout / 0.02)):
            for line in self.lines:
                if match := compiled.search(line):
                    return match
            if self.process.returncode is not None:
                break
            await asyncio.sleep(0.02)
        raise AssertionError(f"{self.name}: no line matching {pattern!r}:\n" + "".join(self.lines[-40:]))

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    if request.param == "sqlite":
        yield None  # SQLite in the shared data dir
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = await server.create_database()
    try:
        yield server.url(name)
    finally:
        await server.drop_database(name)


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as fake:
        yield fake


@pytest.fixture
async def replicas(tmp_path: Path, provider: FakeProvider) -> AsyncIterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    provider.release()
    for replica in started:
        if replica.process.returncode is None:
            replica.process.send_signal(signal.SIGTERM)
    for replica in started:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(replica.process.wait(), 30)
        if replica.process.returncode is None:
            replica.kill()
            await replica.process.wait()
        if replica.reader is not None:
            await replica.reader


async def _stored_images(tmp_path: Path, database_url: str | None, prompt: str) -> int:
    """How many images the ledger records for the job of ``prompt`` (read as another process would)."""
    query = "SELECT artifact_ids FROM jobs WHERE prompt = $1"
    if database_url:
        import asyncpg

        conn = await asyncpg.connect(database_url)
        try:
            rows = [row[0] for row in await conn.fetch(query, prompt)]
        finally:
            await conn.close()
    else:
        def read() -> list[str]:
            with contextlib.closing(sqlite3.connect(tmp_path / "shared" / "pixbot.db")) as db:
                return [row[0] for row in db.execute(query.replace("$1", "?"), (prompt,))]

        rows = await asyncio.to_thread(read)
    return sum(len(json.loads(ids)) for ids in rows)


def _config(tmp_path: Path, provider: FakeProvider, url: str | None, **bots: Any) -> dict[str, Any]:
    storage: dict[str, Any] = {"dataDir": str(tmp_path / "shared")}
    if url:
        storage["databaseUrl"] = url
    return {
        "providers": {"custom": {"apiKey": "sk-test", "apiBase": provider.api_base("custom")}},
        "tools": {"imageGeneration": {"provider": "custom", "model": "flux-dev", "defaultImageSize": ""}},
        "bots": {"web": {"enabled": False}, **bots},
        "storage": storage,
        # Three jobs may run at once in one chat (across all processes), and alice may make three a day.
        "limits": {"perUserDaily": 3, "perChatJobs": 3},
    }


async def _start(replicas: list[Replica], tmp_path: Path, provider: FakeProvider, name: str,
                 config: dict[str, Any], *args: str) -> Replica:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config))
    cli = Cli(tmp_path, provider)
    process = await cli.start(*args, config=path)
    replica = Replica(name, process)

    async def read() -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():
            replica.lines.append(line.decode(errors="replace"))

    replica.reader = asyncio.create_task(read())
    replicas.append(replica)
    return replica


async def test_quotas_hold_across_api_replicas(replicas: list[Replica], tmp_path: Path, provider: FakeProvider,
                                               database_url: str | None) -> None:
    config = _config(tmp_path, provider, database_url, api={"enabled": True, "port": 0})
    first = await _start(replicas, tmp_path, provider, "a", config, "serve", "--port", "0")
    second = await _start(replicas, tmp_path, provider, "b", config, "serve", "--port", "0")
    urls = [(await replica.wait_for_line(_API_LINE.pattern))[1] for replica in (first, second)]
    async with httpx.AsyncClient(timeout=30) as client:
        async def ask(url: str, n: int) -> httpx.Response:
            return await client.post(f"{url}/v1/images/generations",
                                     json={"prompt": "a fox", "n": n, "user": "alice"})

        assert (await ask(urls[0], 2)).status_code == 200
        assert (await ask(urls[1], 1)).status_code == 200
        refused = await ask(urls[1], 1)
        assert refused.status_code == 429, refused.text
        assert (await ask(urls[0], 1)).status_code == 429
    assert len(provider.requests_of("/images/generations")) == 3


async def test_a_standby_takes_over_polling_and_the_killed_pollers_jobs(
        replicas: list[Replica], tmp_path: Path, provider: FakeProvider, database_url: str | None) -> None:
    async with FakeTelegramServer() as telegram:
        config = _config(tmp_path, provider, database_url,
                         telegram={"token": telegram.token, "apiBase": telegram.base_url})
        leader = await _start(replicas, tmp_path, provider, "leader", config, "run")
        await leader.wait_for_line("telegram: logged in")
        await telegram.wait_until(lambda: telegram.polls_waiting >= 1, timeout=30)
        standby = await _start(replicas, tmp_path, provider, "standby", config, "run")
        await standby.wait_for_line("another process polls this bot; standing by")

        # The poller starts a job of two images; one is stored, the other is held by the provider.
        provider.stall_next(1)
        await telegram.push_text("/imagine a slow fox --n 2")
        await provider.wait_for_requests(2, timeout=30, path_suffix="/images/generations")
        for _ in range(1500):  # until the ledger holds the image that was answered
            if await _stored_images(tmp_path, database_url, "a slow fox") == 1:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the poller never stored the first image")
        leader.kill()
        await leader.process.wait()
        provider.release_stalled()

        # The standby takes over: it polls, and the fox the poller stored reaches the chat.
        await standby.wait_for_line("took over 1 job", timeout=40)
        photos = await telegram.wait_for("sendPhoto", timeout=40)
        assert photos[0].params["chat_id"] == ALICE.id
        assert "a slow fox" in photos[0].params["caption"]
        await telegram.wait_until(lambda: telegram.polls_waiting >= 1, timeout=20)
        await telegram.push_text("/imagine a second fox")
        later = await telegram.wait_for("sendPhoto", count=2, timeout=30)
        assert "a second fox" in later[1].params["caption"]


def _update(update_id: int, text: str) -> dict[str, Any]:
    command = text.split()[0]
    return {"update_id": update_id, "message": {
        "message_id": update_id, "date": 1_760_000_000, "chat": Chat.private(ALICE).to_dict(),
        "from": ALICE.to_dict(), "text": text,
        "entities": [{"type": "bot_command", "offset": 0, "length": len(command)}]}}


async def test_webhook_replicas_share_updates_and_quotas_and_a_repeated_update_is_handled_once(
        replicas: list[Replica], tmp_path: Path, provider: FakeProvider, database_url: str | None) -> None:
    async with FakeTelegramServer() as telegram:
        ports = [free_port(), free_port()]
        started = []
        for name, port in zip(("a", "b"), ports, strict=True):
            config = _config(tmp_path, provider, database_url, telegram={
                "token": telegram.token, "apiBase": telegram.base_url, "mode": "webhook",
                # The load balancer's address in front of the replicas: here the first replica (loopback only).
                "webhookUrl": f"http://127.0.0.1:{ports[0]}/tg", "webhookSecret": "shared-secret",
                "listenPort": port})
            started.append(await _start(replicas, tmp_path, provider, name, config, "run"))
        for replica in started:
            await replica.wait_for_line("telegram: webhook listening")
        headers = {"X-Telegram-Bot-Api-Secret-Token": "shared-secret"}
        async with httpx.AsyncClient(timeout=30, headers=headers) as client:
            async def send(port: int, update: dict[str, Any]) -> None:
                answer = await client.post(f"http://127.0.0.1:{port}/tg", json=update)
                assert answer.status_code == 200, answer.text

            # Telegram retries an update it thinks was lost, and the load balancer sends it elsewhere.
            await send(ports[0], _update(9001, "/imagine a lighthouse"))
            await send(ports[1], _update(9001, "/imagine a lighthouse"))
            # Later updates arrive at either replica.
            await send(ports[1], _update(9002, "/imagine a harbour"))
            await send(ports[0], _update(9003, "/imagine a ferry"))
            await telegram.wait_for("sendPhoto", count=3, timeout=30)
            # The three images used alice's daily quota (3), whichever replica made them.
            await send(ports[1], _update(9004, "/imagine one more"))
            (refusal,) = await telegram.wait_for("sendMessage", timeout=30)
            assert refusal.params["text"].startswith("You have used your 3 images for today"), refusal.params
        # The replica that got 9001 second skipped it (the only way it would not answer it).
        for _ in range(500):
            skipped = [r for r in started if any("update 9001 was already handled" in line for line in r.lines)]
            if skipped:
                break
            await asyncio.sleep(0.02)
        assert len(skipped) == 1, [r.lines for r in started]
        captions = sorted(call.params["caption"].split("\n")[0] for call in telegram.calls_of("sendPhoto"))
        assert captions == ["a ferry", "a harbour", "a lighthouse"], captions
