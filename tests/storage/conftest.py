"""The store protocols' engines, as one fixture: every test in this folder runs once per engine.

An engine is a ``Stores`` pair (``StateStore``, ``JobStore``) on a fresh database. SQLite is the
embedded default; a second engine is added here as another parameter and must pass the same tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.jobs import JobLedger
from core.state import ChatState, open_database
from core.stores import JobStore, StateStore

__all__ = ["Stores"]


@dataclass(frozen=True)
class Stores:
    state: StateStore
    jobs: JobStore


@pytest.fixture(params=["sqlite"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    assert request.param == "sqlite"
    async with open_database(tmp_path / "pixbot.db") as db:
        yield Stores(ChatState(db), JobLedger(db))
