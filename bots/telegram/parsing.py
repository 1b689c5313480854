"""Text → prompt and inline options (``--ar 16:9 --n 2 --size 2K``), as typed in Telegram. Pure functions.

Values are checked by the service (ratio, size, count limits); this only splits them out. Telegram
clients turn ``--`` into an em dash, so ``—ar`` is read as ``--ar`` too."""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import InvalidRequest

__all__ = ["USAGE", "ImagineArgs", "parse_args", "split_command", "strip_mention"]

USAGE = "Usage: /imagine a fox in the snow --ar 16:9 --n 2 --size 2K"
_NAMES = {"ar": "aspect_ratio", "ratio": "aspect_ratio", "aspect": "aspect_ratio", "n": "count",
          "count": "count", "size": "size"}
# An option starts a word: "--ar 16:9", "--ar=16:9", "—ar 16:9" (not the dash in "a cat — sitting").
_OPTION = re.compile(r"(?<!\S)(?:--|[—–])([A-Za-z][A-Za-z_-]*)(?:=(\S*)|[ \t]+(?!--|[—–])(\S+))?")
_COMMAND = re.compile(r"^/([A-Za-z0-9_]{1,32})(?:@([A-Za-z0-9_]{3,32}))?(?:\s+|$)")


@dataclass(frozen=True, slots=True)
class ImagineArgs:
    prompt: str
    aspect_ratio: str | None = None
    count: int | None = None
    size: str | None = None


def parse_args(text: str) -> ImagineArgs:
    """Split options out of ``text``; the rest, whitespace tidied, is the prompt."""
    values: dict[str, str] = {}
    for match in _OPTION.finditer(text):
        name = match[1].lower()
        field = _NAMES.get(name)
        if field is None:
            raise InvalidRequest(f"Unknown option --{name}. Options are --ar 16:9, --n 2 and --size 2K.")
        value = match[2] if match[2] is not None else match[3]
        if not value:
            raise InvalidRequest(f"The option --{name} needs a value, e.g. " + _EXAMPLES[field] + ".")
        values[field] = value
    prompt = "\n".join(" ".join(line.split()) for line in _OPTION.sub(" ", text).splitlines()).strip()
    count: int | None = None
    if "count" in values:
        try:
            count = int(values["count"])
        except ValueError:
            raise InvalidRequest(f"--n must be a whole number, not {values['count']!r}.") from None
    return ImagineArgs(prompt, values.get("aspect_ratio"), count, values.get("size"))


_EXAMPLES = {"aspect_ratio": "--ar 16:9", "count": "--n 2", "size": "--size 2K"}


def split_command(text: str) -> tuple[str | None, str | None, str]:
    """``"/edit@bot make it blue"`` → ``("edit", "bot", "make it blue")``; text without a command →
    ``(None, None, text)``. For album captions, which reach no Command filter."""
    match = _COMMAND.match(text)
    if match is None:
        return None, None, text
    return match[1].lower(), match[2], text[match.end():]


def strip_mention(text: str, username: str) -> str:
    """Drop ``@this_bot`` from a prompt written to the bot in a group."""
    if not username:
        return text.strip()
    return re.sub(rf"(?<!\w)@{re.escape(username)}\b", " ", text, flags=re.IGNORECASE).strip()
