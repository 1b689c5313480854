"""Image bytes: sniffing by magic bytes, bounded validation with Pillow, fitting to platform limits.

Everything here is synchronous and CPU-bound: callers run it with ``asyncio.to_thread``.
"""

from __future__ import annotations

__all__ = ["EXTENSIONS", "sniff_mime"]

EXTENSIONS: dict[str, str] = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}


def sniff_mime(data: bytes) -> str | None:
    """PNG, JPEG, GIF or WebP by magic bytes; None for anything else (SVG, AVIF, HEIC, BMP…)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None
