"""The storage engine a config names, opened: SQLite in the data dir (the default, one machine), or
PostgreSQL (``storage.databaseUrl``) for several processes sharing one state. Both implement the
protocols of ``core/stores.py`` and pass the same conformance suite. Each comes with its event bus
(``core/events.py``): this process's own on SQLite, ``LISTEN/NOTIFY`` across the processes on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from core.config import AppConfig
from core.coordination import Coordination
from core.db import SCHEMA_VERSION, open_database
from core.events import EventBus, LocalEventBus
from core.jobs import JobLedger
from core.state import ChatState
from core.stores import CoordinationStore, JobStore, StateStore

__all__ = ["Storage", "open_storage", "redact_url"]


@dataclass(frozen=True)
class Storage:
    state: StateStore
    jobs: JobStore
    coordination: CoordinationStore
    engine: Literal["sqlite", "postgresql"]
    #: The database file, or the URL without its password (for logs and ``pixbot doctor``).
    location: str
    schema_version: int
    #: Live events: delivered within this process (SQLite), or to every process on the database (PostgreSQL).
    events: EventBus = field(default_factory=LocalEventBus)


def redact_url(url: str) -> str:
    """``postgresql://user:secret@host/db`` → ``postgresql://user:***@host/db``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@asynccontextmanager
async def open_storage(config: AppConfig) -> AsyncIterator[Storage]:
    """Open (and migrate) the configured engine for the lifetime of the block."""
    url = config.storage.database_url
    if url:
        from core.postgres import SCHEMA_VERSION as POSTGRES_SCHEMA_VERSION
        from core.postgres import open_postgres
        from core.postgres.events import PostgresEventBus

        async with open_postgres(url) as stores:
            events = PostgresEventBus(url)
            await events.start()
            try:
                yield Storage(stores.state, stores.jobs, stores.coordination, "postgresql", redact_url(url),
                              POSTGRES_SCHEMA_VERSION, events)
            finally:
                await events.close()
        return
    async with open_database(config.state_path) as db:
        yield Storage(ChatState(db), JobLedger(db), Coordination(db), "sqlite", str(config.state_path),
                      SCHEMA_VERSION, LocalEventBus())
