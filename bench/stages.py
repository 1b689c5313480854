"""Where one pixbot generation spends time and memory: wraps named steps of the pipeline (diagnostics only).

Used by ``python -m bench.bench_overhead --stages`` and ``python -m bench.bench_rss --stages``. The
steps name pixbot internals; a step that no longer exists is reported as missing, never fatal.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MEMORY_STEPS", "TIME_STEPS", "MemoryProbe", "TimeProbe", "instrument", "reset_peak", "status_kb"]

#: (label, module, attribute): pixbot's one-image path, outermost first; ``·`` marks nesting.
TIME_STEPS: tuple[tuple[str, str, str], ...] = (
    ("ImageService.submit (total)", "core.service", "ImageService.submit"),
    ("· provider HTTP + JSON (send)", "providers.base", "HttpProvider.send"),
    ("· · httpx Response.json()", "httpx", "Response.json"),
    ("· base64 decode (decode_b64, on the loop)", "providers.base", "HttpProvider.decode_b64"),
    ("· ArtifactStore.save (awaited)", "core.artifacts", "ArtifactStore.save"),
    ("· · validate_image (thread)", "core.artifacts", "validate_image"),
    ("· · _write: image + sidecar + fsyncs (thread)", "core.artifacts", "ArtifactStore._write"),
    ("· SQLite Database.run (awaited, all calls)", "core.db", "Database.run"),
)

#: Steps that do not nest, so each can reset the kernel's peak mark on entry.
MEMORY_STEPS: tuple[tuple[str, str, str], ...] = (
    ("provider HTTP + JSON (send)", "providers.base", "HttpProvider.send"),
    ("base64 decode (decode_b64)", "providers.base", "HttpProvider.decode_b64"),
    ("validate_image (thread)", "core.artifacts", "validate_image"),
    ("_write (thread)", "core.artifacts", "ArtifactStore._write"),
)


def status_kb(name: str) -> int:
    """A ``/proc/self/status`` field in kB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {name}")


def reset_peak() -> bool:
    """Set VmHWM back to the current RSS (Linux ≥ 4.0); False where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass
class TimeProbe:
    """Wall seconds and calls per step (threads included)."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self, label: str) -> float:
        return time.perf_counter()

    def exit(self, label: str, token: float) -> None:
        elapsed = time.perf_counter() - token
        with self._lock:
            self.seconds[label] += elapsed
            self.calls[label] += 1


@dataclass
class MemoryProbe:
    """Per step, in bytes over ``baseline``: RSS on entry, peak RSS inside, RSS on exit (last call wins)."""

    baseline: int = 0
    rows: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def enter(self, label: str) -> int:
        reset_peak()
        return status_kb("VmRSS") * 1024

    def exit(self, label: str, token: int) -> None:
        self.rows[label] = (token - self.baseline, status_kb("VmHWM") * 1024 - self.baseline,
                            status_kb("VmRSS") * 1024 - self.baseline)


def _wrap(original: Callable[..., Any], label: str, probe: TimeProbe | MemoryProbe) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(original):
        @functools.wraps(original)
        async def async_step(*args: Any, **kwargs: Any) -> Any:
            token = probe.enter(label)
            try:
                return await original(*args, **kwargs)
            finally:
                probe.exit(label, token)  # type: ignore[arg-type]

        return async_step

    @functools.wraps(original)
    def step(*args: Any, **kwargs: Any) -> Any:
        token = probe.enter(label)
        try:
            return original(*args, **kwargs)
        finally:
            probe.exit(label, token)  # type: ignore[arg-type]

    return step


@contextmanager
def instrument(steps: tuple[tuple[str, str, str], ...], probe: TimeProbe | MemoryProbe) -> Iterator[list[str]]:
    """Wrap each step while inside; yields the labels of steps that could not be found."""
    undo: list[tuple[object, str, Any]] = []
    missing: list[str] = []
    try:
        for label, module_name, attribute in steps:
            owner: object = importlib.import_module(module_name)
            *path, name = attribute.split(".")
            try:
                for part in path:
                    owner = getattr(owner, part)
                original = inspect.getattr_static(owner, name)
            except AttributeError:
                missing.append(label)
                continue
            undo.append((owner, name, original))
            setattr(owner, name, _wrap(getattr(owner, name), label, probe))
        yield missing
    finally:
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)
