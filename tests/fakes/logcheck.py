"""Fail tests on error logs from chat libraries, whose handler exceptions never reach the test."""

from __future__ import annotations

import logging

import pytest

__all__ = ["assert_no_error_logs", "error_records"]


def error_records(
    caplog: pytest.LogCaptureFixture, *prefixes: str, level: int = logging.ERROR
) -> list[logging.LogRecord]:
    """Records of the test's call phase from loggers named `prefix` or `prefix.*`, at `level` or above.

    Reads `caplog.get_records("call")`: in a fixture's teardown `caplog.records` holds only teardown.
    """
    return [
        r for r in caplog.get_records("call")
        if r.levelno >= level and any(r.name == p or r.name.startswith(p + ".") for p in prefixes)
    ]


def assert_no_error_logs(
    caplog: pytest.LogCaptureFixture, *prefixes: str, level: int = logging.ERROR
) -> None:
    """Fail the test when any of those loggers logged at `level` or above (e.g. "discord", "aiogram")."""
    found = error_records(caplog, *prefixes, level=level)
    if found:
        lines = "\n".join(f"{r.name} {r.levelname}: {r.getMessage()}" + (
            f" ({r.exc_info[1]!r})" if r.exc_info and r.exc_info[1] else "") for r in found)
        pytest.fail(f"error logs from {', '.join(prefixes)}:\n{lines}", pytrace=False)
