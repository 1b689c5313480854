"""Every sentence the chat flow says, in one place, platform-neutral (plain text, no markup)."""

from __future__ import annotations

from collections.abc import Sequence

from core.artifacts import is_artifact_id
from core.errors import Cancelled
from core.models import JobResult, SlotError
from core.stores import ChatSettings, HistoryEntry

__all__ = [
    "INTERRUPTED",
    "NO_IMAGE_YET",
    "RESTARTING",
    "cancel_text",
    "edited_label",
    "failed_line",
    "failure_text",
    "file_size",
    "history_text",
    "settings_text",
    "undelivered_text",
]

RESTARTING = "The bot is restarting. Try again in a minute."
INTERRUPTED = ("The bot restarted before this finished. Images that were already made are sent here when it "
               "is back.")
NO_IMAGE_YET = "There is no image in this chat yet. Try /imagine a red fox."
_NOTHING_CAME = "No image came back from the image service. Try again."


def _reasons(errors: Sequence[SlotError]) -> str:
    return " ".join(dict.fromkeys(e.message for e in errors))


def _all_cancelled(errors: Sequence[SlotError]) -> bool:
    return bool(errors) and all(e.category == Cancelled.category for e in errors)


def failure_text(result: JobResult, *, restarting: bool = False) -> str:
    """A job that produced nothing: the plain reasons, never a provider's raw text."""
    errors = result.errors
    if not errors:
        return _NOTHING_CAME
    if _all_cancelled(errors):
        if restarting:
            return "The bot is restarting, so this was stopped before an image was made. Try again in a minute."
        return "Stopped. No image was made."
    if result.requested <= 1:
        return errors[0].message
    return f"None of the {result.requested} images could be made: {_reasons(errors)}"


def failed_line(result: JobResult) -> str | None:
    """Some images of a job failed: how many, and why."""
    if not result.errors:
        return None
    total = max(result.requested, len(result.errors) + len(result.artifacts))
    return f"⚠️ {len(result.errors)} of {total} images failed: {_reasons(result.errors)}"


def edited_label(result: JobResult) -> str | None:
    """Which image an edit changed: the gesture's own words, or the chat's last image the service picked."""
    label = result.request.origin.get("target")
    if isinstance(label, str) and label:
        return label
    if result.request.mode == "edit" and result.edited:
        return f"the last image in this chat ({result.edited[0]})"
    return None


def undelivered_text(missing: int, total: int, reason: str | None) -> str:
    why = f" ({reason})" if reason else ""
    if total == 1:
        return f"The image was made, but sending the image to this chat failed{why}. Use /last or /history to get it."
    return (f"The images were made, but sending {missing} of the {total} images to this chat failed{why}. "
            "Use /history to get them.")


def settings_text(settings: ChatSettings, *, default_ratio: str, model: str, delivery_default: str | None) -> str:
    """This chat's defaults, and how to change them. ``delivery_default`` None: the platform has no styles."""
    lines = [
        "Settings for this chat:",
        f"• aspect ratio (ar): {settings.aspect_ratio or f'default ({default_ratio})'}",
        f"• images per request (n): {settings.count or 'default (1)'}",
    ]
    if delivery_default is not None:
        lines.append(f"• sent as (style): {settings.delivery or f'default ({delivery_default})'}")
    lines.append(f"• model: {model}")
    return "\n".join(lines)


def history_text(entries: Sequence[HistoryEntry], limit_chars: int) -> str:
    """Recent images, newest first, with ids people can use (/edit <id>, /last)."""
    if not entries:
        return NO_IMAGE_YET
    head = "Recent images, newest first (/last shows the newest again):"
    lines = [head]
    for e in entries:
        line = f"{e.artifact_id} · {e.created_at[:16].replace('T', ' ')} · {_short(e.prompt, 80)}"
        if sum(len(x) + 1 for x in lines) + len(line) > limit_chars:
            break
        lines.append(line)
    return "\n".join(lines)


def file_size(size: int) -> str:
    """Bytes as people read them, in the binary units the platforms' limits are set in (Discord's
    10 MiB, Telegram's 20 and 50 MiB): 23 KiB, 4.2 MiB, 10 MiB."""
    if size < 1024 * 1024:
        return f"{max(1, round(size / 1024))} KiB"
    return f"{size / (1024 * 1024):.1f}".removesuffix(".0") + " MiB"


def split_image_id(text: str) -> tuple[str | None, str]:
    """``"img_0123456789ab make it blue"`` → ``("img_0123456789ab", "make it blue")``; other text → (None, text)."""
    first, _, rest = text.strip().partition(" ")
    if is_artifact_id(first):
        return first, rest.strip()
    return None, text


def unknown_image(image_id: str) -> str:
    return f"There is no image {image_id[:40]} in this chat. /history lists this chat's images with their ids."


def interrupted_text(prompt: str) -> str:
    """A job the bot's restart cut short before any image was made."""
    return (f"The bot restarted before this was finished, and no image was made: “{_short(prompt, 120)}”. "
            "🔁 Again asks for it once more.")


def cancel_text(cancelled: int) -> str:
    if not cancelled:
        return "Nothing of yours is running in this chat."
    jobs = "your running job" if cancelled == 1 else f"your {cancelled} running jobs"
    return f"Stopping {jobs}. Images that are already made will still be sent."


def _short(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
