"""Request validation and mapping onto a provider/model's capabilities, with a report of what was
applied and what was ignored (and why). Pure functions: no I/O."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from core.config import parse_ratio
from core.errors import InvalidRequest, Unsupported
from core.models import NormalisationReport
from core.provider import Capabilities

__all__ = ["Plan", "Wanted", "plan_for", "validate_count", "validate_prompt", "validate_ratio", "validate_size"]

_SIZE_K = re.compile(r"^(\d{1,2})[kK]$")
_SIZE_WH = re.compile(r"^(\d{1,5})\s*[xX×]\s*(\d{1,5})$")
_PIXELS = re.compile(r"^\d+x\d+$")
_MIN_SIDE, _MAX_SIDE = 64, 8192
_MAX_RATIO = 21
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


@dataclass(frozen=True, slots=True)
class Plan:
    """A request mapped onto one provider/model: what to send, and the report for the user."""

    provider: str
    model: str
    aspect_ratio: str | None
    size: str | None
    references: int
    report: NormalisationReport


def plan_for(provider: str, model: str, caps: Capabilities, wanted: Wanted) -> Plan:
    """Map ``wanted`` onto ``caps``. Raises Unsupported when references cannot be used at all.

    Only settings the user chose explicitly are reported as ignored: a config default a model
    cannot use is dropped quietly.
    """
    applied: dict[str, object] = {"count": wanted.count}
    ignored: dict[str, str] = {}
    notes: list[str] = []

    ratio = wanted.aspect_ratio
    if ratio is not None and caps.ratios is not None and ratio not in caps.ratios:
        if wanted.ratio_explicit:
            ignored["aspect_ratio"] = (f"aspect ratio {ratio} is not supported by {model}; "
                                       f"used {caps.ratio_fallback}")
        ratio = None

    size = wanted.size
    unusable = caps.sizes is not None and size not in caps.sizes
    unusable = unusable or (caps.pixel_sizes_only and not _PIXELS.match(size or ""))
    if size is not None and unusable:
        if wanted.size_explicit:
            ignored["size"] = f"size {size} is not supported by {model}; used {caps.size_fallback}"
        size = None
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
