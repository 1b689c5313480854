"""The store protocols' engines, as fixtures: every test in this folder runs once per engine.

An engine gives ``connect()``, which opens a ``Stores`` pair (``StateStore``, ``JobStore``) on one
fresh database per test; ``stores`` is one connection and ``peer`` a second one to the same database,
as another process would hold, so the "atomic across processes" promises are tested, not assumed.
A new engine is one more ``connect`` parameter (create its database on setup, drop it on teardown)
and must pass the same tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.jobs import JobLedger
from core.state import ChatState, open_database
from core.stores import JobStore, StateStore

__all__ = ["ENGINES", "Connect", "Stores"]

#: Engines under test; a PostgreSQL one is added here (and in ``connect``) when it exists.
ENGINES = ["sqlite"]


@dataclass(frozen=True)
class Stores:
    state: StateStore
    jobs: JobStore


Connect = Callable[[], AbstractAsyncContextManager[Stores]]


@asynccontextmanager
async def _sqlite(path: Path) -> AsyncIterator[Stores]:
    async with open_database(path) as db:
        yield Stores(ChatState(db), JobLedger(db))


@pytest.fixture(params=ENGINES)
async def connect(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Connect]:
    if request.param == "sqlite":
        path = tmp_path / "pixbot.db"
        yield lambda: _sqlite(path)
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
