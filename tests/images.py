"""Test images made with Pillow (tests only)."""

from __future__ import annotations

import io

from PIL import Image


def png_bytes(width: int = 64, height: int = 64, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(width: int = 64, height: int = 64, color: tuple[int, int, int] = (30, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def noise_png(width: int, height: int) -> bytes:
    """An incompressible PNG: its size is about width*height*3 bytes."""
    import os

    buf = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buf, "PNG", compress_level=1)
    return buf.getvalue()
