"""What every Telegram handler shares: the bot's settings, its timing knobs, the album collector and the
job tracker. Handed to handlers as the workflow-data entry ``tg``; holds no business logic."""

from __future__ import annotations

from dataclasses import dataclass

from bots.chat import ChatFlow
from bots.telegram.albums import AlbumCollector
from core.config import TelegramConfig

__all__ = ["CLOUD_DOCUMENT_LIMIT", "CLOUD_DOWNLOAD_LIMIT", "TelegramContext", "TelegramOptions"]

#: The cloud Bot API hands bots files up to 20 MB (``getFile``) and takes documents up to 50 MB; a
#: self-hosted Bot API server (``apiBase``) lifts both.
CLOUD_DOWNLOAD_LIMIT = 20 * 1024 * 1024
CLOUD_DOCUMENT_LIMIT = 50 * 1024 * 1024
_LOCAL_DOCUMENT_LIMIT = 2000 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TelegramOptions:
    """Timing of the Telegram front-end (docs/telegram.md); tests shorten the waits."""

    #: An album arrives as one update per item; wait this long after the last one before acting.
    album_window: float = 0.6
    #: A job running longer than this gets a status message (edited in place, deleted at the end).
    status_after: float = 10.0
    #: At most one status edit per this many seconds (Telegram rate-limits edits).
    status_edit_interval: float = 3.0
    #: ``upload_photo`` lapses after 5 s on the user's screen; repeat it a little sooner.
    action_interval: float = 4.0
    #: Long-polling ``getUpdates`` timeout; a stop cancels the poll at once, whatever this is.
    polling_timeout: int = 25
    #: On shutdown, how long running jobs may take before they are cancelled (stored images are kept).
    shutdown_grace: float = 7.0
    #: How often one API call is retried after ``429 retry_after`` before it gives up.
    flood_attempts: int = 6
    #: A ``retry_after`` longer than this is not waited out for one call (the call fails instead).
    max_flood_wait: float = 300.0


@dataclass(slots=True)
class TelegramContext:
    settings: TelegramConfig
    options: TelegramOptions
    albums: AlbumCollector
    #: The chat flow every gesture runs through; it also tracks work in flight for the shutdown.
    flow: ChatFlow
    #: The largest user file fetched as a reference, and the largest original sent as a document.
    download_limit: int = CLOUD_DOWNLOAD_LIMIT
    document_limit: int = CLOUD_DOCUMENT_LIMIT
    #: The bot's own username (lower case, no "@"), for mentions; filled in at start-up.
    username: str = ""
    bot_id: int = 0

    @classmethod
    def create(cls, settings: TelegramConfig, options: TelegramOptions, max_reference_bytes: int,
               flow: ChatFlow) -> TelegramContext:
        """Limits follow the Bot API server: the cloud's, or a self-hosted one's (``apiBase``)."""
        local = bool(settings.api_base)
        return cls(settings, options, AlbumCollector(options.album_window), flow,
                   download_limit=max_reference_bytes if local else min(max_reference_bytes, CLOUD_DOWNLOAD_LIMIT),
                   document_limit=_LOCAL_DOCUMENT_LIMIT if local else CLOUD_DOCUMENT_LIMIT)
