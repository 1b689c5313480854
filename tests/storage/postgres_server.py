"""A throwaway PostgreSQL server for the tests: Debian's binaries, a temp data directory, a free port.

``postgres_server`` (session scope, so one server per pytest process: each xdist worker has its own)
starts it on first use and stops it when the session ends; ``postgres_url`` gives each test a fresh,
empty database and drops it afterwards. Without the server binaries the tests that need them skip
with one line, unless ``PIXBOT_REQUIRE_POSTGRES=1`` (CI) makes that a failure.

Any module may use the fixtures (``from tests.storage.postgres_server import postgres_server,
postgres_url``): however many modules import them, a process starts one server.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

__all__ = ["PostgresServer", "find_binaries", "postgres_server", "postgres_url", "report_skips", "start_server"]

SKIP_REASON = "PostgreSQL tests skipped: no postgresql server binaries (apt-get install postgresql)"
USER = "pixbot"
_OS_USER = "postgres"  # PostgreSQL refuses to run as root: as root, run it as Debian's postgres user


def find_binaries() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb and pg_ctl (``$PIXBOT_PG_BIN`` first)."""
    candidates = [os.environ["PIXBOT_PG_BIN"]] if os.environ.get("PIXBOT_PG_BIN") else []
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    found.sort(key=lambda path: [int(p) if p.isdigit() else 0 for p in Path(path).parent.parent.name.split(".")])
    candidates += [str(Path(path).parent) for path in reversed(found)]
    for candidate in candidates:
        bin_dir = Path(candidate)
        if (bin_dir / "initdb").is_file() and (bin_dir / "pg_ctl").is_file():
            return bin_dir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path
    port: int
    host: str = "127.0.0.1"
    user: str = USER
    _names: itertools.count[int] | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    async def create_database(self) -> str:
        """A new empty database; returns its name."""
        if self._names is None:
            self._names = itertools.count(1)
        name = f"t_{os.getpid()}_{next(self._names)}"
        admin = await asyncpg.connect(self.url())
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return name

    async def drop_database(self, name: str) -> None:
        admin = await asyncpg.connect(self.url())
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    def stop(self) -> None:
        try:
            _run(self, [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _run(server: PostgresServer, argv: Sequence[str]) -> None:
    command = list(argv)
    if os.geteuid() == 0:
        command = ["runuser", "-u", _OS_USER, "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        log = server.root / "server.log"
        tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n"
                           f"{tail}")


def start_server(bin_dir: Path) -> PostgresServer:
    """initdb into a new temp directory and start a server on a free loopback port (tuned for tests:
    no fsync). The caller stops it (``PostgresServer.stop``)."""
    root = Path(tempfile.mkdtemp(prefix="pixbot-pg-"))
    server = PostgresServer(bin_dir, root, 0)
    try:
        if os.geteuid() == 0:
            shutil.chown(root, _OS_USER, _OS_USER)
        _run(server, [str(bin_dir / "initdb"), "-D", str(server.data), "-A", "trust", "-U", USER, "-E", "UTF8",
                      "--locale=C.UTF-8", "-N"])
        for attempt in range(3):  # another process may take the port between the probe and the start
            server.port = _free_port()
            options = (f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                       "-c full_page_writes=off -c synchronous_commit=off")
            try:
                _run(server, [str(bin_dir / "pg_ctl"), "-D", str(server.data), "-l", str(root / "server.log"),
                              "-o", options, "-w", "-t", "60", "start"])
                break
            except RuntimeError:
                if attempt == 2:
                    raise
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server


_SERVER: dict[str, PostgresServer] = {}


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> PostgresServer:
    """This process's server, started on first use and stopped when the session ends."""
    if "server" in _SERVER:
        return _SERVER["server"]
    bin_dir = find_binaries()
    if bin_dir is None:
        if os.environ.get("PIXBOT_REQUIRE_POSTGRES") == "1":
            pytest.fail(SKIP_REASON.replace("skipped", "required (PIXBOT_REQUIRE_POSTGRES=1)"), pytrace=False)
        pytest.skip(SKIP_REASON)
    server = start_server(bin_dir)
    _SERVER["server"] = server

    def stop() -> None:
        _SERVER.pop("server", None)
        server.stop()

    request.config.add_cleanup(stop)
    return server


def report_skips(terminalreporter: pytest.TerminalReporter) -> None:
    """The skip, once at the end of the run (``-rs`` lists it per test): for a ``pytest_terminal_summary``."""
    skipped = [report for report in terminalreporter.stats.get("skipped", [])
               if isinstance(report.longrepr, tuple) and SKIP_REASON in str(report.longrepr[2])]
    if skipped:
        terminalreporter.write_line(f"{SKIP_REASON} ({len(skipped)} tests)", yellow=True)


@pytest.fixture
async def postgres_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A fresh empty database for one test, dropped after it."""
    name = await postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        await postgres_server.drop_database(name)
