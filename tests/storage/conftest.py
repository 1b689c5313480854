"""The store protocols' engines, as fixtures: every test in this folder runs once per engine.

An engine gives ``connect()``, which opens a ``Stores`` pair (``StateStore``, ``JobStore``) on one
fresh database per test; ``stores`` is one connection and ``peer`` a second one to the same database,
as another process would hold, so the "atomic across processes" promises are tested, not assumed.
A new engine is one more ``connect`` parameter (create its database on setup, drop it on teardown)
and must pass the same tests.

"postgres" runs against a throwaway server (``tests/storage/postgres_server.py``): one per pytest process,
a fresh database per test. Without Debian's server binaries those tests skip (fail under
``PIXBOT_REQUIRE_POSTGRES=1``). A test about one engine only says so: ``@pytest.mark.engines("sqlite")``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.coordination import Coordination
from core.jobs import JobLedger
from core.postgres import open_postgres
from core.state import ChatState, open_database
from core.stores import CoordinationStore, JobStore, StateStore
from tests.storage.postgres_server import PostgresServer, report_skips
from tests.storage.postgres_server import postgres_server as postgres_server  # the fixture, for this folder

__all__ = ["ENGINES", "Connect", "Stores"]

#: Engines under test.
ENGINES = ["sqlite", "postgres"]


@dataclass(frozen=True)
class Stores:
    state: StateStore
    jobs: JobStore
    coordination: CoordinationStore


Connect = Callable[[], AbstractAsyncContextManager[Stores]]


@asynccontextmanager
async def _sqlite(path: Path) -> AsyncIterator[Stores]:
    async with open_database(path) as db:
        yield Stores(ChatState(db), JobLedger(db), Coordination(db))


@asynccontextmanager
async def _postgres(url: str) -> AsyncIterator[Stores]:
    async with open_postgres(url) as stores:
        yield Stores(stores.state, stores.jobs, stores.coordination)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "engines(*names): run this test on these engines only (the reason in the "
                                       "test's docstring)")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    report_skips(terminalreporter)


@pytest.fixture(params=ENGINES)
async def connect(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Connect]:
    marker = request.node.get_closest_marker("engines")
    if marker is not None and request.param not in marker.args:
        pytest.skip(f"a test of {', '.join(marker.args)} only")
    if request.param == "sqlite":
        path = tmp_path / "pixbot.db"
        yield lambda: _sqlite(path)
    elif request.param == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        name = await server.create_database()
        try:
            url = server.url(name)
            yield lambda: _postgres(url)
        finally:
            await server.drop_database(name)
    else:
        raise AssertionError(f"no fixture for engine {request.param!r}")


@pytest.fixture
async def stores(connect: Connect) -> AsyncIterator[Stores]:
    async with connect() as opened:
        yield opened


@pytest.fixture
async def peer(connect: Connect, stores: Stores) -> AsyncIterator[Stores]:
    """A second connection to ``stores``' database (opened after it, so the schema exists)."""
    async with connect() as opened:
        yield opened
