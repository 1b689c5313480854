"""Image bytes: sniffing by magic bytes, bounded validation with Pillow, fitting to platform limits.

Everything here is synchronous and CPU-bound: callers run it with ``asyncio.to_thread`` (the
``*_async`` wrappers do exactly that). Nothing here writes files or talks to the network.
"""

from __future__ import annotations

import asyncio
import io
import math
import struct
import threading
import warnings
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import BadImage

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "EXTENSIONS",
    "IMAGE_SUFFIXES",
    "ImageInfo",
    "PhotoLimits",
    "fit_photo",
    "fit_photo_async",
    "fit_under_bytes",
    "fit_under_bytes_async",
    "inspect_image",
    "sniff_mime",
    "thumbnail_jpeg",
    "thumbnail_jpeg_async",
    "validate_image",
]

EXTENSIONS: dict[str, str] = {
    "image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif",
}
#: File name endings taken as images when a platform does not say (lower case).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".gif")

DEFAULT_MAX_PIXELS = 40_000_000
_PREVIEW_QUALITIES = (90, 80, 70, 60)
_WEBP_MAX_SIDE = 16383
_MAX_SHRINK_STEPS = 12
_MIN_SIDE = 16

_PIL_FORMATS: dict[str, str] = {
    "image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/gif": "GIF",
}
#: Pillow names an MPO (multi-picture JPEG from phones) separately; it is still a JPEG.
_FORMAT_MIMES: dict[str, str] = {"PNG": "image/png", "JPEG": "image/jpeg", "MPO": "image/jpeg",
                                 "WEBP": "image/webp", "GIF": "image/gif"}
_DAMAGED = "That image is damaged or incomplete."
#: Everything Pillow raises for hostile or broken input: bombs, unknown formats, truncated or malformed data.
_BOMBS = (Image.DecompressionBombError, Image.DecompressionBombWarning)
_PIL_FAILURES = (*_BOMBS, UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error,
                 IndexError)
#: ``warnings.catch_warnings`` swaps process-global state; serialise our (header-only) opens.
_OPEN_LOCK = threading.Lock()
_ORIENTATION_TAG = 0x0112
_QUALITY = {"WEBP": 90, "JPEG": 88}
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
#: Colour-space family per Pillow mode: an ICC profile only carries over within a family.
_FAMILY = {"RGB": "rgb", "RGBA": "rgb", "RGBa": "rgb", "RGBX": "rgb", "P": "rgb", "PA": "rgb",
           "L": "grey", "LA": "grey", "La": "grey", "1": "grey", "I": "grey", "I;16": "grey"}


@dataclass(frozen=True)
class ImageInfo:
    mime: str
    width: int
    height: int


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


def validate_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int | None = None, full: bool = True
) -> ImageInfo:
    """Check untrusted bytes fully (headers, checksums, a complete decode) or raise BadImage.

    Only the sniffed format's decoder runs; the pixel budget is checked from the header before
    anything is decoded. Animated GIF/WebP pass: their first frame is decoded and measured.
    ``full=False`` skips the decode for PNG, whose chunk CRCs (checked by ``verify``) already catch
    truncation and corruption in transit: half the CPU of storing a provider's image.
    """
    mime = _require_mime(data)
    if max_bytes is not None and len(data) > max_bytes:
        raise BadImage(f"That image is too large: {_mb(len(data))} MB; the limit is {_mb(max_bytes)} MB.")
    try:
        with _open(data, mime) as im:
            width, height = im.size
            _check_pixels(width, height, max_pixels)
            im.verify()  # PNG chunk CRCs; the image object is unusable afterwards
        if full or mime != "image/png":
            with _open(data, mime) as im:
                im.load()  # the full decode is what finds truncation (and all JPEG damage)
    except _PIL_FAILURES as exc:
        raise _bad_image(exc, data, max_pixels) from exc
    return ImageInfo(mime, width, height)


async def inspect_image(data: bytes, **kw: Any) -> ImageInfo:
    """``validate_image`` in a worker thread."""
    return await asyncio.to_thread(validate_image, data, **kw)


@dataclass(frozen=True, slots=True)
class PhotoLimits:
    """What a chat platform accepts as an inline photo (a front-end states its own)."""

    max_bytes: int
    #: Width + height, at most.
    max_sides_sum: int
    #: Long side / short side, at most.
    max_ratio: int
    #: Previews are made no larger than this on their long side (the platform shrinks them anyway).
    preview_max_side: int

    def fits(self, width: int, height: int, size: int) -> bool:
        """Whether an image of these dimensions and bytes can go out as a photo as is; an image whose
        dimensions are unknown (0) is judged by its bytes alone."""
        if width <= 0 or height <= 0:
            return size <= self.max_bytes
        return (size <= self.max_bytes and width + height <= self.max_sides_sum
                and max(width, height) <= self.max_ratio * min(width, height))


def fit_photo(data: bytes, limits: PhotoLimits, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes | None:
    """None when the original can go out as a photo as is (a PNG or JPEG within ``limits``, upright);
    otherwise a JPEG preview that can.

    The preview is upright (EXIF orientation applied, metadata dropped), at most
    ``limits.preview_max_side`` on its long side, alpha flattened onto white; images longer than the
    ratio limit are letterboxed onto a canvas of that ratio.
    """
    mime = _require_mime(data)
    try:
        with _open(data, mime) as im:
            width, height = im.size
            _check_pixels(width, height, max_pixels)
            upright = _orientation(im, mime) in (0, 1)
    except _PIL_FAILURES as exc:
        raise _bad_image(exc, data, max_pixels) from exc
    if mime in ("image/png", "image/jpeg") and upright and limits.fits(width, height, len(data)):
        return None
    im = _flatten(_decode(data, mime, max_pixels))
    scale = min(1.0, limits.preview_max_side / max(im.size), (limits.max_sides_sum - 1) / sum(im.size))
    im = _letterboxed(_resized(im, scale), limits.max_ratio)
    out = b""
    for quality in _PREVIEW_QUALITIES:
        out = _encode(im, "JPEG", quality)
        if len(out) <= limits.max_bytes:
            return out
    raise BadImage("That image could not be made small enough to send as a photo.",
                   detail=f"preview still {len(out)} bytes at quality {_PREVIEW_QUALITIES[-1]}")


async def fit_photo_async(data: bytes, limits: PhotoLimits, **kw: Any) -> bytes | None:
    return await asyncio.to_thread(fit_photo, data, limits, **kw)


def fit_under_bytes(
    data: bytes, limit: int, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[bytes, str, bool]:
    """``(data, mime, changed)`` no larger than ``limit`` (Discord's attachment cap).

    The original when it fits; else WebP q90 or JPEG q88 at full size; else whichever of the two
    came out smaller, shrunk step by step (each step ×0.75 or less when far off). BadImage when even
    a small version does not fit.
    """
    mime = _require_mime(data)
    if len(data) <= limit:
        return data, mime, False
    im = _decode(data, mime, max_pixels)
    sources: dict[str, Image.Image] = {}
    if max(im.size) <= _WEBP_MAX_SIDE:
        sources["WEBP"] = _webp_ready(im)
    sources["JPEG"] = _flatten(im)
    sizes: dict[str, int] = {}
    for fmt, source in sources.items():
        out = _encode(source, fmt, _QUALITY[fmt])
        if len(out) <= limit:
            return out, _FORMAT_MIMES[fmt], True
        sizes[fmt] = len(out)
    fmt = min(sizes, key=sizes.__getitem__)
    source, size, scale = sources[fmt], sizes[fmt], 1.0
    for _ in range(_MAX_SHRINK_STEPS):
        scale *= min(0.75, math.sqrt(limit / size) * 0.95)
        if min(source.size) * scale < _MIN_SIDE:
            break
        out = _encode(_resized(source, scale), fmt, _QUALITY[fmt])
        size = len(out)
        if size <= limit:
            return out, _FORMAT_MIMES[fmt], True
    raise BadImage("That image cannot be made small enough for this chat's upload limit.",
                   detail=f"limit {limit} bytes, smallest attempt {size} bytes")


async def fit_under_bytes_async(data: bytes, limit: int, **kw: Any) -> tuple[bytes, str, bool]:
    return await asyncio.to_thread(fit_under_bytes, data, limit, **kw)


def thumbnail_jpeg(data: bytes, max_side: int, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """An upright JPEG at most ``max_side`` on either side, alpha on white (for previews and lists)."""
    if max_side < 1:
        raise ValueError("max_side must be positive")
    mime = _require_mime(data)
    im = _flatten(_decode(data, mime, max_pixels, draft=(max_side, max_side)))
    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return _encode(im, "JPEG", 85)


async def thumbnail_jpeg_async(data: bytes, max_side: int, **kw: Any) -> bytes:
    return await asyncio.to_thread(thumbnail_jpeg, data, max_side, **kw)


def _require_mime(data: bytes) -> str:
    mime = sniff_mime(data)
    if mime is None:
        raise BadImage(detail=f"unrecognised magic bytes {data[:12]!r}")
    return mime


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1:
        raise BadImage(_DAMAGED, detail=f"header declares {width}x{height}")
    if width * height > max_pixels:
        limit = _budget(max_pixels)
        raise BadImage(f"That image is too large: {width}x{height} pixels; the limit is {limit}.")


def _bad_image(exc: BaseException, data: bytes, max_pixels: int) -> BadImage:
    """The plain-language BadImage for whatever Pillow raised; Pillow's text goes to ``detail``."""
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, _BOMBS):  # Pillow refused at the header, before our own budget check ran
        dims = _header_size(data)
        said = f": {dims[0]}x{dims[1]} pixels" if dims else ""
        return BadImage(f"That image is too large{said}; the limit is {_budget(max_pixels)}.", detail=detail)
    return BadImage(_DAMAGED, detail=detail)


def _open(data: bytes, mime: str) -> Image.Image:
    """Open (header only) with just the sniffed format's decoder; Pillow's bomb warning is an error."""
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        im = Image.open(io.BytesIO(data), formats=(_PIL_FORMATS[mime],))
    if _FORMAT_MIMES.get(im.format or "") != mime:
        im.close()
        raise BadImage(_DAMAGED, detail=f"sniffed {mime}, Pillow read {im.format}")
    return im


def _orientation(im: Image.Image, mime: str) -> int:
    """EXIF orientation without decoding: PNG's ``getexif`` would load the whole image for nothing."""
    if mime != "image/jpeg" and "exif" not in im.info:
        return 1
    value = im.getexif().get(_ORIENTATION_TAG, 1)
    return value if isinstance(value, int) else 1


def _decode(data: bytes, mime: str, max_pixels: int, draft: tuple[int, int] | None = None) -> Image.Image:
    """The first frame, fully decoded and upright, within the pixel budget."""
    try:
        with _open(data, mime) as im:
            _check_pixels(*im.size, max_pixels)
            if draft is not None and mime == "image/jpeg":
                im.draft("RGB", draft)  # libjpeg decodes at 1/2, 1/4 or 1/8 scale: far less work
            im.load()
            return ImageOps.exif_transpose(im)
    except _PIL_FAILURES as exc:
        raise _bad_image(exc, data, max_pixels) from exc


def _convert(im: Image.Image, mode: str) -> Image.Image:
    """``convert`` that keeps ``info``, minus an ICC profile that no longer matches the colour space."""
    out = im.convert(mode)
    out.info = dict(im.info)
    if _FAMILY.get(im.mode) != _FAMILY.get(mode):
        out.info.pop("icc_profile", None)
    return out


def _flatten(im: Image.Image) -> Image.Image:
    """RGB or L for JPEG: alpha composited onto white, 16-bit grey scaled down rather than clipped."""
    if im.mode.startswith("I"):
        scaled = im.convert("I").point(lambda v: v * (255 / 65535))
        scaled.info = dict(im.info)
        return _convert(scaled, "L")
    if (im.mode == "P" and "transparency" in im.info) or im.mode in ("PA", "LA", "La", "RGBa"):
        im = _convert(im, "RGBA")
    if im.mode == "RGBA":
        canvas = Image.new("RGB", im.size, (255, 255, 255))
        canvas.paste(im, mask=im.getchannel("A"))
        canvas.info = dict(im.info)
        return canvas
    return im if im.mode in ("RGB", "L") else _convert(im, "RGB")


def _webp_ready(im: Image.Image) -> Image.Image:
    """WebP keeps alpha; everything else becomes RGB."""
    if im.mode in ("RGB", "RGBA"):
        return im
    if im.mode in ("PA", "LA", "La", "RGBa") or "transparency" in im.info:
        return _convert(im, "RGBA")
    return _convert(_flatten(im), "RGB")


def _resized(im: Image.Image, scale: float) -> Image.Image:
    if scale >= 1.0:
        return im
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    out = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    out.info = dict(im.info)
    return out


def _letterboxed(im: Image.Image, max_ratio: int) -> Image.Image:
    """Pad onto a white canvas so the long side is at most ``max_ratio`` times the short one."""
    w, h = im.size
    if max(w, h) <= max_ratio * min(w, h):
        return im
    cw, ch = (w, math.ceil(w / max_ratio)) if w > h else (math.ceil(h / max_ratio), h)
    canvas = Image.new(im.mode, (cw, ch), 255 if im.mode == "L" else (255, 255, 255))
    canvas.paste(im, ((cw - w) // 2, (ch - h) // 2))
    canvas.info = dict(im.info)
    return canvas


def _encode(im: Image.Image, fmt: str, quality: int) -> bytes:
    """Re-encode without EXIF (drops location data) but with the ICC profile, so colours stay right."""
    buf = io.BytesIO()
    icc = im.info.get("icc_profile")
    extra: dict[str, Any] = {"icc_profile": icc} if isinstance(icc, bytes) and icc else {}
    if fmt == "JPEG":
        extra["optimize"] = True
    im.save(buf, fmt, quality=quality, **extra)
    return buf.getvalue()


def _header_size(data: bytes) -> tuple[int, int] | None:
    """Declared dimensions read straight from the header, for the message when Pillow refuses to open."""
    try:
        if data.startswith(b"\x89PNG") and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
        elif data[:3] == b"GIF":
            w, h = struct.unpack("<HH", data[6:10])
        elif data[:4] == b"RIFF" and data[12:16] == b"VP8X":
            w, h = int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
        elif data.startswith(b"\xff\xd8"):
            return _jpeg_size(data)
        else:
            return None
    except struct.error:
        return None
    return int(w), int(h)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 9 <= len(data) and data[pos] == 0xFF:
        marker, length = data[pos + 1], int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _JPEG_SOF:
            h, w = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return int(w), int(h)
        pos += 2 + length
    return None


def _budget(max_pixels: int) -> str:
    return f"{max_pixels / 1_000_000:g} megapixels" if max_pixels >= 100_000 else f"{max_pixels} pixels"


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f}".removesuffix(".0")
