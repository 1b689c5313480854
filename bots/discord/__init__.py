"""The Discord front-end (discord.py 2): slash commands, the Edit image… menu, the reply gesture and result
buttons, translated to ImageService calls. Imports the `discord` library absolutely; `bots/` is never on
sys.path, so this package's name does not shadow it."""

from bots.discord.runner import run_discord

__all__ = ["run_discord"]
