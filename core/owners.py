"""Which process runs a job (``this_owner``), and whether an owner is known to be gone."""

from __future__ import annotations

import functools
import os
import secrets
import socket
from pathlib import Path

__all__ = ["owner_is_dead", "this_owner"]


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), which tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


@functools.cache
def this_owner() -> str:
    """``host/pid/start``: the start time (or a random token where /proc is missing) makes it unique."""
    pid = os.getpid()
    return f"{socket.gethostname()}/{pid}/{_start_time(pid) or 'x' + secrets.token_hex(4)}"


def owner_is_dead(owner: str) -> bool:
    """True only when ``owner`` ran on this host and its process is gone (or its pid now belongs to
    another process). Anything this host cannot tell is False: the lease decides."""
    host, _, rest = owner.partition("/")
    pid_text, _, start = rest.partition("/")
    if host != socket.gethostname() or not pid_text.isdigit() or start.startswith("x"):
        return False
    current = _start_time(int(pid_text))
    if current is None:
        return Path("/proc/self/stat").exists()  # /proc works and has no such process: it is gone
    return current != start
