"""The one chat flow every chat front-end runs on: resolve the target image → submit → show progress →
deliver → record message ids, with the wording, the result actions (Again, Edit, ratios, Original),
settings, history, cancel, restart delivery and shutdown drain written once. A platform supplies a
``ChatSurface`` (how to show things there) and its gesture parsing; see docs/architecture.md."""

from bots.chat.flow import ChatFlow
from bots.chat.surface import Ask, ChatSurface, ResultText, Sent

__all__ = ["Ask", "ChatFlow", "ChatSurface", "ResultText", "Sent"]
