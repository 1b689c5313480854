"""The Telegram front-end (aiogram 3): chat gestures in, images out. ``run_telegram`` is its entry point."""

from bots.telegram.context import TelegramOptions
from bots.telegram.runner import COMMANDS, build_dispatcher, run_telegram

__all__ = ["COMMANDS", "TelegramOptions", "build_dispatcher", "run_telegram"]
