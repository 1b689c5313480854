"""The words under results and in failure messages, fitted to Telegram's limits (captions 1024, texts
4096, counted in UTF-16 code units as Telegram does). Pure functions; plain text, no parse mode."""

from __future__ import annotations

from collections.abc import Sequence

from core.models import JobResult, SlotError

__all__ = [
    "CAPTION_LIMIT",
    "TEXT_LIMIT",
    "album_buttons_text",
    "edited_label",
    "failure_text",
    "fit_text",
    "result_caption",
    "undelivered_text",
]

CAPTION_LIMIT = 1024
TEXT_LIMIT = 4096


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def fit_text(text: str, limit: int = TEXT_LIMIT) -> str:
    """Cut ``text`` to ``limit`` UTF-16 units, ending in "…" when cut."""
    if _units(text) <= limit:
        return text
    out = text
    while out and _units(out) > limit - 1:
        over = _units(out) - (limit - 1)
        out = out[: len(out) - max(1, over // 2)]
    return out.rstrip() + "…"


_CANCELLED = "Cancelled."  # the service's slot message for a job stopped by /cancel or a shutdown


def _reasons(errors: Sequence[SlotError]) -> list[str]:
    return list(dict.fromkeys("Stopped before it finished." if e.message == _CANCELLED else e.message
                              for e in errors))


def _failed_line(errors: Sequence[SlotError], requested: int) -> str:
    reasons = _reasons(errors)
    return f"⚠️ {len(errors)} of {requested} images failed: " + " ".join(reasons)


def edited_label(result: JobResult) -> str | None:
    """Which image an edit changed: the gesture's own words, or the chat's last image the service picked."""
    label = result.request.origin.get("target")
    if isinstance(label, str) and label:
        return label
    if result.request.mode == "edit" and result.edited:
        return f"the last image in this chat ({result.edited[0]})"
    return None


def result_caption(
    prompt: str,
    *,
    target: str | None = None,
    ignored: str = "",
    errors: Sequence[SlotError] = (),
    requested: int = 0,
    late: bool = False,
) -> str:
    """The prompt first, cut to make room for the lines that must be seen: what was edited, settings
    that were ignored, images that failed, and a note on late delivery."""
    extras: list[str] = []
    if target:
        extras.append(f"✏️ Edited {target}")
    if ignored:
        extras.append(f"ℹ️ {ignored}")
    if errors:
        extras.append(_failed_line(errors, max(requested, len(errors))))
    if late:
        extras.append("⏱ Delivered after the bot restarted.")
    tail = fit_text("\n".join(extras), CAPTION_LIMIT // 2) if extras else ""
    room = CAPTION_LIMIT - _units(tail) - (1 if tail else 0)
    head = fit_text(prompt.strip(), room) if prompt.strip() else ""
    return "\n".join(part for part in (head, tail) if part)


def failure_text(result: JobResult, *, restarting: bool = False) -> str:
    """The message when a job produced nothing: the plain reasons, never a provider's raw text."""
    if not result.errors:
        return "No image came back from the image service. Try again."
    if all(e.message == _CANCELLED for e in result.errors):
        if restarting:
            return "The bot is restarting, so this was stopped before an image was made. Try again in a minute."
        return "Stopped. No image was made."
    return fit_text(" ".join(_reasons(result.errors)))


def undelivered_text(missing: int, total: int, reason: str | None) -> str:
    what = "the image" if total == 1 else f"{missing} of the {total} images"
    why = f" (Telegram said: {reason})" if reason else ""
    return fit_text(f"The image was made, but sending {what} to this chat failed{why}. "
                    "Use /last or /history to get it." if total == 1 else
                    f"The images were made, but sending {what} to this chat failed{why}. "
                    "Use /history to get them.")


def album_buttons_text(count: int) -> str:
    return (f"Images 1–{count}: 🔁 make them again, 📐 try another ratio, ✏️ edit one, "
            "or 📎 get one's original file.")
