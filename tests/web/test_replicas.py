"""Two studio replicas on one PostgreSQL database and one data dir (in-process servers, each with its own
service and event bus): a page open on one replica follows, live, a job another replica runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from core.postgres.events import PostgresEventBus
from tests.fakes.fake_provider import FakeProvider
from tests.storage.postgres_server import postgres_server as postgres_server  # the fixtures
from tests.storage.postgres_server import postgres_url as postgres_url
from tests.web.conftest import Studio, listen, serve, studio_config

THREAD = "feedc0ffee42"

Replica = Callable[[], AbstractAsyncContextManager[Studio]]


@pytest.fixture
def replica(tmp_path: Path, fake: FakeProvider, postgres_url: str) -> Replica:
    """A studio replica: its own config file, service and server; the database, data dir and token shared."""
    shared = tmp_path / "shared"
    names = iter(range(1, 100))

    def build() -> AbstractAsyncContextManager[Studio]:
        storage = {"dataDir": str(shared), "databaseUrl": postgres_url}
        return serve(tmp_path / f"replica-{next(names)}.json", studio_config(fake, storage=storage), fake)

    return build


async def test_a_page_on_one_replica_sees_the_progress_of_a_job_another_replica_runs(replica: Replica) -> None:
    async with replica() as a, replica() as b:
        assert isinstance(a.service.events, PostgresEventBus) and isinstance(b.service.events, PostgresEventBus)
        assert a.service.events.origin != b.service.events.origin
        client_a, csrf_a = await a.client()
        client_b, _ = await b.client()
        seen_on_a: list[dict[str, Any]] = []
        seen_on_b: list[dict[str, Any]] = []
        ready_a, ready_b = asyncio.Event(), asyncio.Event()
        listeners = [asyncio.create_task(listen(client_a, THREAD, seen_on_a, ready_a)),
                     asyncio.create_task(listen(client_b, THREAD, seen_on_b, ready_b))]
        try:
            await asyncio.wait_for(asyncio.gather(ready_a.wait(), ready_b.wait()), 10)
            answer = await client_a.post(f"/t/{THREAD}/ask",
                                         data={"prompt": "a lighthouse at dusk", "aspect_ratio": "1:1", "count": "2",
                                               "request_id": "req-replica-0001"},
                                         headers={"X-CSRF-Token": csrf_a, "Accept": "application/json"})
            assert answer.status_code == 202, answer.text
            job_id = answer.json()["job"]
            for _ in range(1000):
                if any(e["type"] == "done" and e["job"] == job_id for e in seen_on_b) and \
                        any(e["type"] == "done" and e["job"] == job_id for e in seen_on_a):
                    break
                await asyncio.sleep(0.01)
            kinds = [e["type"] for e in seen_on_b if e.get("job") == job_id]
            assert kinds and kinds[0] == "job" and kinds[-1] == "done", seen_on_b  # live on B, run by A
            assert kinds.count("job") >= 3, kinds  # accepted, then one per image
            assert all(e["request"] == "req-replica-0001" for e in seen_on_b)
            # Both pages hear the same events, in the same order, each once (A's own echo is ignored).
            assert seen_on_a == seen_on_b
            assert len(a.fake.requests_of("/images/generations")) == 2
            # What B's page fetches on each event is rendered from the shared database and data dir.
            fragment = await client_b.get(f"/t/{THREAD}/jobs/{job_id}")
            assert fragment.status_code == 200 and fragment.text.count('alt="a lighthouse at dusk"') == 2
            for _ in range(500):
                record = await b.service.job(job_id)
                if record is not None and record.status == "delivered":
                    break
                await asyncio.sleep(0.01)
            assert record is not None and record.status == "delivered", record
            image = await client_b.get(f"/images/{record.artifact_ids[0]}/file")
            assert image.status_code == 200 and image.content
        finally:
            for listener in listeners:
                listener.cancel()
            await asyncio.gather(*listeners, return_exceptions=True)
