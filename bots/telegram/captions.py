"""The words under results and in failure messages, fitted to Telegram's limits (captions 1024, texts
4096, counted in UTF-16 code units as Telegram does). Pure functions; plain text, no parse mode."""

from __future__ import annotations

from bots.chat import ResultText

__all__ = ["CAPTION_LIMIT", "TEXT_LIMIT", "album_buttons_text", "fit_text", "result_caption"]

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


def result_caption(text: ResultText) -> str:
    """The prompt first, cut to make room for the lines that must be seen: what was edited, settings
    that were ignored, images that failed, and a note on late delivery (at most half the caption)."""
    extras = text.lines()
    tail = fit_text("\n".join(extras), CAPTION_LIMIT // 2) if extras else ""
    room = CAPTION_LIMIT - _units(tail) - (1 if tail else 0)
    head = fit_text(text.prompt.strip(), room) if text.prompt.strip() else ""
    return "\n".join(part for part in (head, tail) if part)


def album_buttons_text(count: int) -> str:
    return (f"Images 1–{count}: 🔁 make them again, 📐 try another ratio, ✏️ edit one, "
            "or 📎 get one's original file.")
