"""Request validation and mapping onto a provider/model's capabilities, with a report of what was
applied and what was ignored (and why). Pure functions: no I/O."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from core.config import parse_ratio
from core.errors import InvalidRequest, Unsupported
from core.models import NormalisationReport
from core.provider import Capabilities

__all__ = ["Plan", "Wanted", "nearest_ratio", "plan_for", "ratio_of", "validate_count", "validate_prompt",
           "validate_ratio", "validate_size"]

_SIZE_K = re.compile(r"^(\d{1,2})[kK]$")
_SIZE_WH = re.compile(r"^(\d{1,5})\s*[xX×]\s*(\d{1,5})$")
_PIXELS = re.compile(r"^\d+x\d+$")
_MIN_SIDE, _MAX_SIDE = 64, 8192
_MAX_RATIO = 21
_SIMPLE_RATIOS = ("1:1", "5:4", "4:3", "3:2", "16:10", "16:9", "2:1", "21:9", "4:5", "3:4", "2:3", "10:16", "9:16",
                  "1:2", "9:21")
#: C0 and C1 controls except tab, newline and carriage return.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def validate_prompt(prompt: str, max_chars: int) -> str:
    """Strip, drop control characters (keep newlines and tabs), and bound the length. A prompt with
    nothing visible (only spaces, zero-width or bidi marks) is empty, not something to pay a provider for."""
    cleaned = _CONTROL.sub("", prompt or "").strip()
    if not any(unicodedata.category(c)[0] in "LNPS" for c in cleaned):
        raise InvalidRequest("Please describe the image you want: the prompt is empty.")
    if len(cleaned) > max_chars:
        raise InvalidRequest(f"The prompt is too long: {len(cleaned)} characters; the limit is {max_chars}.")
    return cleaned


def validate_count(count: int, max_count: int) -> int:
    if not 1 <= count <= max_count:
        raise InvalidRequest(f"You can ask for 1 to {max_count} images at a time (you asked for {count}).")
    return count


def validate_ratio(value: str) -> str:
    parsed = parse_ratio(value)
    if parsed is None:
        raise InvalidRequest(f"Aspect ratio {value.strip()!r} is not valid: use two positive numbers such as "
                             "16:9, 1:1 or 9:16.")
    w, h = parsed
    if max(w, h) / min(w, h) > _MAX_RATIO:
        raise InvalidRequest(f"Aspect ratio {w}:{h} is too extreme: keep it between 1:{_MAX_RATIO} and "
                             f"{_MAX_RATIO}:1.")
    return f"{w}:{h}"


def validate_size(value: str) -> str:
    """``1K``…``8K``, a bare pixel count such as ``512``, ``WxH`` within bounds, or ``auto``."""
    size = value.strip()
    if size.lower() == "auto":
        return "auto"
    if (match := _SIZE_K.match(size)) and 1 <= int(match[1]) <= 8:
        return f"{int(match[1])}K"
    if size.isdigit() and _MIN_SIDE <= int(size) <= _MAX_SIDE:
        return size
    if match := _SIZE_WH.match(size):
        w, h = int(match[1]), int(match[2])
        if _MIN_SIDE <= w <= _MAX_SIDE and _MIN_SIDE <= h <= _MAX_SIDE:
            return f"{w}x{h}"
        raise InvalidRequest(f"Size {size} is out of range: each side must be {_MIN_SIDE} to {_MAX_SIDE} pixels.")
    raise InvalidRequest(f"Size {size!r} is not valid: use 1K, 2K, 4K, or pixels such as 1024x1024.")


@dataclass(frozen=True, slots=True)
class Wanted:
    """The settings a request resolved to, and whether the user asked for each explicitly."""

    aspect_ratio: str | None
    size: str | None
    count: int
    references: int
    ratio_explicit: bool = False
    size_explicit: bool = False
    #: The ratio is the edited image's own shape, not the user's choice: a model that cannot make it
    #: gets the nearest ratio it can, said in a note (never "ignored").
    ratio_from_source: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    """A request mapped onto one provider/model: what to send, and the report for the user."""

    provider: str
    model: str
    aspect_ratio: str | None
    size: str | None
    references: int
    report: NormalisationReport


def ratio_of(width: int, height: int) -> str:
    """An image's shape as a reduced ``w:h`` (1536x1024 → 3:2), kept within the allowed extremes."""
    divisor = math.gcd(width, height) or 1
    w, h = width // divisor, height // divisor
    if max(w, h) > 100 or max(w, h) > _MAX_RATIO * min(w, h):  # odd (1001x667) or extreme: the nearest simple one
        return nearest_ratio(f"{w}:{h}", _SIMPLE_RATIOS)
    return f"{w}:{h}"


def nearest_ratio(ratio: str, choices: Iterable[str]) -> str:
    """The choice closest in shape (compared on a log scale, so 2:1 and 1:2 are equally far from 1:1)."""
    def shape(value: str) -> float:
        parsed = parse_ratio(value)
        return math.log(parsed[0] / parsed[1]) if parsed else math.inf

    target = shape(ratio)
    return min(sorted(c for c in choices if parse_ratio(c)), key=lambda c: abs(shape(c) - target))


def _dimensions(size: str, ratio: str) -> str | None:
    """``2K`` at ``16:9`` → ``2048x1152``: the long side is the hint's, the other follows the ratio,
    both multiples of 16 (what dimension-taking models accept). None for a hint that is not ``nK``."""
    match = _SIZE_K.match(size)
    parsed = parse_ratio(ratio)
    if match is None or parsed is None:
        return None
    long_side = int(match[1]) * 1024
    w, h = parsed
    short_side = max(16, round(long_side * min(w, h) / max(w, h) / 16) * 16)
    return f"{long_side}x{short_side}" if w >= h else f"{short_side}x{long_side}"


def plan_for(provider: str, model: str, caps: Capabilities, wanted: Wanted) -> Plan:
    """Map ``wanted`` onto ``caps``. Raises Unsupported when references cannot be used at all.

    Only settings the user chose explicitly are reported as ignored: a config default a model
    cannot use is dropped quietly.
    """
    applied: dict[str, object] = {"count": wanted.count}
    ignored: dict[str, str] = {}
    notes: list[str] = []

    ratio = wanted.aspect_ratio
    if ratio is not None and wanted.ratio_from_source and caps.ratios:
        if ratio not in caps.ratios:
            nearest = nearest_ratio(ratio, caps.ratios)
            notes.append(f"kept the edited image's shape as closely as {model} allows: {nearest} for its {ratio}")
            ratio = nearest
    if ratio is not None and caps.ratios and ratio not in caps.ratios and wanted.ratio_explicit:
        nearest = nearest_ratio(ratio, caps.ratios)  # a 21:9 ask gets 16:9, not the model's square default
        ignored["aspect_ratio"] = (f"aspect ratio {ratio} is not supported by {model}; used {nearest}, "
                                   "the nearest it makes")
        ratio = nearest
    if ratio is not None and caps.ratios is not None and ratio not in caps.ratios:
        if wanted.ratio_explicit:
            ignored["aspect_ratio"] = (f"aspect ratio {ratio} is not supported by {model}; "
                                       f"used {caps.ratio_fallback}")
        ratio = None

    size = wanted.size
    hint = size
    dimensions = (_dimensions(size, ratio) if size is not None and ratio is not None and caps.size_overrides_ratio
                  and wanted.size_explicit and wanted.ratio_explicit else None)
    if dimensions is not None:  # "2K" alone would override the ratio: ask for 2K-sized pixels of that ratio
        size = dimensions
    unusable = caps.sizes is not None and size not in caps.sizes
    unusable = unusable or (caps.pixel_sizes_only and not _PIXELS.match(size or ""))
    if size is not None and unusable:
        if dimensions is not None:
            ignored["size"] = (f"size {hint} cannot be made at aspect ratio {ratio} by {model}; used the size "
                               f"for {ratio}")
        elif wanted.size_explicit:
            ignored["size"] = f"size {size} is not supported by {model}; used {caps.size_fallback}"
        size = None
    elif dimensions is not None:
        notes.append(f"size {hint} at {ratio} sent as {dimensions}")
    if size is not None and caps.size_overrides_ratio and wanted.ratio_explicit and not wanted.size_explicit:
        notes.append(f"default size {size} dropped so the aspect ratio {ratio} applies")
        size = None

    references = wanted.references
    if references:
        if caps.max_references == 0:
            raise Unsupported(f"{provider}/{model} cannot edit images or use reference images. Ask the "
                              "operator to configure a model that can (or a fallback), or send a prompt alone.",
                              provider=provider)
        if references > caps.max_references:
            ignored["references"] = (f"{model} uses at most {caps.max_references} reference images; "
                                     f"used the first {caps.max_references}")
            references = caps.max_references
        applied["references"] = references

    if ratio is not None:
        applied["aspect_ratio"] = ratio
    if size is not None:
        applied["size"] = size
    report = NormalisationReport(provider=provider, model=model, applied=applied, ignored=ignored,
                                 notes=tuple(notes))
    return Plan(provider, model, ratio, size, references, report)
