"""Telegram's photo rules (Bot API ``sendPhoto``): at most 10 MB, width + height at most 10000, sides at
most 20:1. An image that breaks one goes out as a downscaled JPEG preview, with the original as a file."""

from __future__ import annotations

from typing import Final

from core.images import DEFAULT_MAX_PIXELS, PhotoLimits, fit_photo, fit_photo_async

__all__ = ["TELEGRAM_PHOTO", "photo_fits", "telegram_preview", "telegram_preview_async"]

#: Telegram re-encodes photos to about 2560 px on the long side anyway; larger previews only cost upload time.
TELEGRAM_PHOTO: Final = PhotoLimits(max_bytes=10_000_000, max_sides_sum=10_000, max_ratio=20, preview_max_side=2560)


def photo_fits(width: int, height: int, size: int) -> bool:
    return TELEGRAM_PHOTO.fits(width, height, size)


def telegram_preview(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes | None:
    """None when the original can be a Telegram photo as is; otherwise a preview that can."""
    return fit_photo(data, TELEGRAM_PHOTO, max_pixels=max_pixels)


async def telegram_preview_async(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes | None:
    return await fit_photo_async(data, TELEGRAM_PHOTO, max_pixels=max_pixels)
