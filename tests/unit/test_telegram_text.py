"""The Telegram front-end's pure text work: inline options, commands in captions, mentions, captions within
Telegram's limits, and callback data within 64 bytes."""

from __future__ import annotations

import pytest

from bots.chat import ResultText
from bots.chat.wording import file_size
from bots.telegram.captions import CAPTION_LIMIT, fit_text, result_caption
from bots.telegram.keyboards import RATIO_CHOICES, result_keyboard, settings_keyboard
from bots.telegram.parsing import ImagineArgs, parse_args, split_command, strip_mention
from core.errors import InvalidRequest


@pytest.mark.parametrize(("text", "expected"), [
    ("a fox", ImagineArgs("a fox")),
    ("a fox --ar 16:9 --n 2 --size 2K", ImagineArgs("a fox", "16:9", 2, "2K")),
    ("--ar=9:16 a  tall\n tower", ImagineArgs("a tall\ntower", "9:16")),
    ("a fox —ar 4:3 –n 3", ImagineArgs("a fox", "4:3", 3)),  # phones turn "--" into dashes
    ("a cat — sitting on a wall", ImagineArgs("a cat — sitting on a wall")),
    ("well-known a--b", ImagineArgs("well-known a--b")),
])
def test_parse_args_splits_options_from_the_prompt(text: str, expected: ImagineArgs) -> None:
    assert parse_args(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("a fox --style noir", "Unknown option --style"),
    ("a fox --ar", "--ar needs a value"),
    ("a fox --n two", "--n must be a whole number"),
    ("a fox --n --ar 1:1", "--n needs a value"),
])
def test_parse_args_explains_bad_options(text: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_args(text)


def test_split_command_and_strip_mention() -> None:
    assert split_command("/edit@PixBot make it blue") == ("edit", "PixBot", "make it blue")
    assert split_command("/imagine") == ("imagine", None, "")
    assert split_command("make it blue") == (None, None, "make it blue")
    assert strip_mention("@PixBot_test_bot make it blue", "pixbot_test_bot") == "make it blue"
    assert strip_mention("mail me@pixbot_test_bot.example", "pixbot_test_bot") == "mail me@pixbot_test_bot.example"


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def test_captions_keep_the_extras_and_fit_telegrams_limit_in_utf16_units() -> None:
    text = ResultText("🦊" * 2000, edited="your image", ignored="size 4K not supported; used 2K",
                      failed="⚠️ 1 of 2 images failed: The image service is busy right now.")
    caption = result_caption(text)
    assert _units(caption) <= CAPTION_LIMIT
    assert caption.endswith("✏️ Edited your image\nℹ️ size 4K not supported; used 2K\n"
                            "⚠️ 1 of 2 images failed: The image service is busy right now.")
    assert "🦊…\n" in caption
    assert fit_text("short") == "short"


def test_a_huge_tail_is_cut_to_half_the_caption_so_the_prompt_stays_visible() -> None:
    """Eight failed images with long, different reasons: the extras alone would overflow the caption."""
    reasons = " ".join(f"Reason {n}: " + "the provider said no. " * 20 for n in range(8))
    caption = result_caption(ResultText("a lighthouse at dusk", failed=f"⚠️ 8 of 9 images failed: {reasons}",
                                        late=True))
    assert _units(caption) <= CAPTION_LIMIT
    assert caption.startswith("a lighthouse at dusk\n⚠️ 8 of 9 images failed: Reason 0")
    tail = caption.split("\n", 1)[1]
    assert tail.endswith("…") and _units(tail) <= CAPTION_LIMIT // 2


def test_callback_data_fits_in_64_bytes() -> None:
    ids = [f"img_{n:012x}" for n in range(10)]
    keyboards = [result_keyboard(ids), result_keyboard(ids[:1]), settings_keyboard(8)]
    data = [b.callback_data or "" for kb in keyboards for row in kb.inline_keyboard for b in row]
    assert data and all(len(d.encode()) <= 64 for d in data)
    assert {f"ratio:{ids[0]}:{r.replace(':', 'x')}" for r in RATIO_CHOICES} <= set(data)


def test_file_sizes_read_in_one_unit_everywhere() -> None:
    assert [file_size(n) for n in (23_000, 512, 4_404_019, 10 * 1024 * 1024, 11_000_000, 50 * 1024 * 1024)] == [
        "22 KiB", "1 KiB", "4.2 MiB", "10 MiB", "10.5 MiB", "50 MiB"]
