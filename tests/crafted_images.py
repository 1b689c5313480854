"""Hand-built and damaged image bytes for validation tests (tests only)."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

__all__ = ["animated_gif", "exif_rotated_jpeg", "flip_idat_byte", "header_only_png", "image_bytes"]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def header_only_png(width: int, height: int) -> bytes:
    """A PNG that declares ``width``x``height`` RGB but has no pixel data: nothing big is ever allocated."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b"")


def flip_idat_byte(png: bytes) -> bytes:
    """The same PNG with one compressed pixel byte inverted, so the IDAT checksum no longer matches."""
    at = png.index(b"IDAT") + 4 + 2  # past the chunk type and the zlib header
    return png[:at] + bytes([png[at] ^ 0xFF]) + png[at + 1 :]


def image_bytes(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def animated_gif(size: tuple[int, int] = (24, 16), frames: int = 3) -> bytes:
    images = [Image.new("P", size, i * 40) for i in range(frames)]
    return image_bytes(images[0], "GIF", save_all=True, append_images=images[1:], duration=50, loop=0)


def exif_rotated_jpeg(width: int, height: int, orientation: int) -> bytes:
    """A JPEG stored ``width``x``height`` whose EXIF says to rotate it for display."""
    im = Image.new("RGB", (width, height), (10, 120, 240))
    im.paste((250, 10, 10), (0, 0, width // 4, height))  # a red band on the stored left edge
    exif = Image.Exif()
    exif[0x0112] = orientation
    return image_bytes(im, "JPEG", quality=90, exif=exif.tobytes())
