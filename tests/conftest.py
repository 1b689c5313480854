"""Shared fixtures. Everything talks to 127.0.0.1 only."""

from __future__ import annotations

import pytest

from tests.images import png_bytes


@pytest.fixture
def png() -> bytes:
    return png_bytes()
