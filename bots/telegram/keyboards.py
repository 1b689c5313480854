"""Inline buttons and their callback data. Callback data names artifacts and settings, never memory, so a
button still works after a restart; every packed value stays within Telegram's 64 bytes."""

from __future__ import annotations

from collections.abc import Sequence

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from core.state import DELIVERY_STYLES

__all__ = [
    "RATIO_CHOICES",
    "Again",
    "AgainJob",
    "EditImage",
    "Original",
    "Reratio",
    "Setting",
    "again_keyboard",
    "decode_ratio",
    "encode_ratio",
    "ratio_keyboard",
    "result_keyboard",
    "settings_keyboard",
]

#: The ratio buttons under every result (docs/telegram.md).
RATIO_CHOICES = ("1:1", "16:9", "9:16")
#: ``/ratio`` offers a few more.
_CHAT_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9")


class Again(CallbackData, prefix="again"):
    artifact_id: str


class AgainJob(CallbackData, prefix="rerun"):
    """🔁 Again under a job that made nothing (the bot restarted first): names the job, not an image."""

    job_id: str


class EditImage(CallbackData, prefix="edit"):
    artifact_id: str


class Reratio(CallbackData, prefix="ratio"):
    artifact_id: str
    #: ``16x9``: the callback data separator is ":".
    ratio: str


class Original(CallbackData, prefix="orig"):
    artifact_id: str


class Setting(CallbackData, prefix="set"):
    #: ``ar``, ``n`` or ``style``; the value ``-`` resets to the default.
    name: str
    value: str


def encode_ratio(ratio: str) -> str:
    return ratio.replace(":", "x")


def decode_ratio(value: str) -> str:
    return value.replace("x", ":")


def result_keyboard(artifact_ids: Sequence[str]) -> InlineKeyboardMarkup:
    """One image: 🔁 ✏️ / ratios / 📎. Several: 🔁 and ratios for the request, then ✏️ and 📎 per image.
    Request-level buttons name the first artifact, which leads to the job."""
    first = artifact_ids[0]
    kb = InlineKeyboardBuilder()
    kb.button(text="🔁 Again", callback_data=Again(artifact_id=first))
    if len(artifact_ids) == 1:
        kb.button(text="✏️ Edit", callback_data=EditImage(artifact_id=first))
    for ratio in RATIO_CHOICES:
        kb.button(text=f"📐 {ratio}", callback_data=Reratio(artifact_id=first, ratio=encode_ratio(ratio)))
    if len(artifact_ids) == 1:
        kb.button(text="📎 Original", callback_data=Original(artifact_id=first))
        kb.adjust(2, 3, 1)
        return kb.as_markup()
    for index, artifact_id in enumerate(artifact_ids, start=1):
        kb.button(text=f"✏️ Edit {index}", callback_data=EditImage(artifact_id=artifact_id))
        kb.button(text=f"📎 Original {index}", callback_data=Original(artifact_id=artifact_id))
    kb.adjust(1, 3, *([2] * len(artifact_ids)))
    return kb.as_markup()


def again_keyboard(job_id: str) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text="🔁 Again", callback_data=AgainJob(job_id=job_id))
    return kb.as_markup()


def ratio_keyboard() -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for ratio in _CHAT_RATIOS:
        kb.button(text=ratio, callback_data=Setting(name="ar", value=encode_ratio(ratio)))
    kb.button(text="Default", callback_data=Setting(name="ar", value="-"))
    kb.adjust(4, 4, 1)
    return kb.as_markup()


def settings_keyboard(max_count: int) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for style in DELIVERY_STYLES:
        kb.button(text=f"Send as {style}", callback_data=Setting(name="style", value=style))
    counts = range(1, min(max_count, 4) + 1)
    for n in counts:
        kb.button(text=f"{n} image{'s' if n > 1 else ''}", callback_data=Setting(name="n", value=str(n)))
    for ratio in RATIO_CHOICES:
        kb.button(text=f"📐 {ratio}", callback_data=Setting(name="ar", value=encode_ratio(ratio)))
    kb.button(text="Reset to defaults", callback_data=Setting(name="reset", value="-"))
    kb.adjust(3, len(counts), 3, 1)
    return kb.as_markup()
