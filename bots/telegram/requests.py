"""Telegram text → Ask: the prompt with its inline options (``--ar 16:9 --n 2``) and the target images."""

from __future__ import annotations

from bots.chat import Ask
from bots.telegram.inputs import Target
from bots.telegram.parsing import USAGE, parse_args
from core.errors import InvalidRequest
from core.models import Mode

__all__ = ["from_text"]


def from_text(text: str, *, mode: Mode, target: Target | None, usage: str = USAGE) -> Ask:
    """``text`` is the prompt with inline options; an empty prompt gets the usage line."""
    args = parse_args(text)
    if not args.prompt:
        ask = "what to change" if mode == "edit" or target is not None else "what to draw"
        raise InvalidRequest(f"Please say {ask}. {usage}")
    return Ask(args.prompt, mode, target.references if target else (), target.label if target else None,
               aspect_ratio=args.aspect_ratio, size=args.size, count=args.count)
