"""Which process runs a job (``this_owner``), and whether an owner is known to be gone.

An owner is ``host/pid/start/scope``. ``start`` (the process's start time) tells a reused pid apart;
``scope`` names the boot and the pid namespace, because two containers sharing a volume can share a
host name too (host networking) while each numbers its own processes: a pid is only looked up here
when it was numbered here. Where /proc is missing, ``start`` is a random token starting with "x" and
nothing about that owner can be told from outside: only its lease says whether it still runs.
"""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path

__all__ = ["Holders", "owner_is_dead", "this_owner"]


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux); None when no such process runs.
    A zombie counts as gone: it has exited and only waits for its parent to collect the status."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the name, in parentheses, may hold spaces
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]  # field 22 of proc_pid_stat(5); fields[0] is field 3


@functools.cache
def _scope() -> str | None:
    """This boot and pid namespace, shortened; None where /proc cannot tell."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return hashlib.sha256(f"{boot} {namespace}".encode()).hexdigest()[:8]


@functools.cache
def this_owner() -> str:
    """This process as a job owner: computed once, so every job it creates names it the same way."""
    pid = os.getpid()
    start, scope = _start_time(pid), _scope()
    if start is None or scope is None:
        return f"{socket.gethostname()}/{pid}/x{secrets.token_hex(4)}"
    return f"{socket.gethostname()}/{pid}/{start}/{scope}"


def owner_is_dead(owner: str) -> bool:
    """True only when ``owner`` ran on this host, in this boot and pid namespace, and its process is
    gone (or its pid now belongs to another process). Anything this process cannot tell is False:
    the lease decides."""
    parts = owner.split("/")
    if len(parts) != 4:  # a random-token owner, or not one of ours
        return False
    host, pid_text, start, scope = parts
    if host != socket.gethostname() or scope != _scope() or not pid_text.isdigit():
        return False
    return _start_time(int(pid_text)) != start


class Holders:
    """Whether claims (an owner and the end of its lease) still hold at ``now``, for both storage engines:
    a live lease whose owner ``is_dead`` does not call gone. Each owner is checked once (the check reads
    /proc, and a database transaction may be waiting on it)."""

    def __init__(self, is_dead: Callable[[str], bool], now: str) -> None:
        self.is_dead, self.now = is_dead, now
        self._dead: dict[str, bool] = {}

    def hold(self, owner: str | None, lease_until: str | None) -> bool:
        """A live lease without an owner holds too: nobody can be known to be gone."""
        if lease_until is None or lease_until < self.now:
            return False
        if owner is None:
            return True
        if owner not in self._dead:
            self._dead[owner] = self.is_dead(owner)
        return not self._dead[owner]
