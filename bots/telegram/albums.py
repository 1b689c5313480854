"""Albums arrive as one update per item sharing a ``media_group_id``; gather them into one request.

The first item's handler waits until no new item has arrived for ``window`` seconds and then acts for
the whole album; the other items' handlers only add themselves."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiogram.types import Message

__all__ = ["AlbumCollector"]


@dataclass
class _Album:
    messages: list[Message]
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class AlbumCollector:
    def __init__(self, window: float) -> None:
        self.window = window
        self._albums: dict[tuple[int, str], _Album] = {}

    async def collect(self, message: Message) -> list[Message] | None:
        """All items of the message's album, in order, for the first item's caller; None for the others."""
        assert message.media_group_id is not None
        key = (message.chat.id, message.media_group_id)
        album = self._albums.get(key)
        if album is not None:
            album.messages.append(message)
            album.arrived.set()
            return None
        album = self._albums[key] = _Album([message])
        try:
            while True:
                album.arrived.clear()
                try:
                    await asyncio.wait_for(album.arrived.wait(), self.window)
                except TimeoutError:
                    break
        finally:
            del self._albums[key]
        return sorted(album.messages, key=lambda m: m.message_id)
