"""The fake Telegram's chats and messages: per-chat ids, full reply_to_message, edits and deletes."""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from tests.fakes.telegram_wire import ALICE, Chat, Json, bad_request

__all__ = ["MessageStore", "caption_fields", "checked_text"]

_NOT_MODIFIED = ("message is not modified: specified new message content and reply markup are exactly "
                 "the same as a content and reply markup of the current message")


def checked_text(p: Json) -> str:
    text = p.get("text")
    if not isinstance(text, str) or not text.strip():
        raise bad_request("message text is empty")
    if len(text) > 4096:
        raise bad_request("message is too long")
    return text


def caption_fields(caption: Any, entities: Any = None) -> Json:
    if isinstance(caption, str) and len(caption) > 1024:
        raise bad_request("message caption is too long")
    return {"caption": caption or None, "caption_entities": entities or None}


def _inline_markup(p: Json) -> Json | None:
    """Message.reply_markup is only ever an inline keyboard; force_reply etc. stay in Call.params."""
    markup = p.get("reply_markup")
    return markup if isinstance(markup, dict) and markup.get("inline_keyboard") else None


class MessageStore:
    """Every message of every chat, the bot's and the users', as it is now. Returns copies."""

    def __init__(self) -> None:
        self.chats: dict[int, Json] = {ALICE.id: Chat.private(ALICE).to_dict()}
        self.by_key: dict[tuple[int, int], Json] = {}
        self._last_id: dict[int, int] = defaultdict(int)

    def chat(self, chat_id: Any) -> Json:
        """The chat for a `chat_id` parameter (an id, or "@username"); 400 "chat not found"."""
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            chat = next((c for c in self.chats.values() if c.get("username") == chat_id[1:]), None)
        else:
            chat = self.chats.get(chat_id) if isinstance(chat_id, int) else None
        if chat is None:
            raise bad_request("chat not found")
        return chat

    def add(self, chat: Json, sender: Json, reply_to: Json | None, content: Json) -> Json:
        """Store a message; ids count per chat, shared by the bot and the users, as in Telegram."""
        self.chats.setdefault(chat["id"], chat)
        self._last_id[chat["id"]] += 1
        msg: Json = {"message_id": self._last_id[chat["id"]], "from": sender, "date": int(time.time()),
                     "chat": chat}
        if reply_to is not None:  # the full message, nested one level only
            nested = {k: v for k, v in reply_to.items() if k != "reply_to_message"}
            msg["reply_to_message"] = copy.deepcopy(nested)
        msg.update((k, v) for k, v in copy.deepcopy(content).items() if v is not None)
        self.by_key[(chat["id"], msg["message_id"])] = msg
        return copy.deepcopy(msg)

    def send(self, p: Json, sender: Json, content: Json) -> Json:
        """A message from the bot for method params `p`: resolves the reply, keeps an inline keyboard."""
        chat = self.chat(p.get("chat_id"))
        reply: Json = p.get("reply_parameters") or {}
        target = None
        if (reply_id := reply.get("message_id", p.get("reply_to_message_id"))) is not None:
            target = self.by_key.get((self.chat(reply.get("chat_id", chat["id"]))["id"], reply_id))
            if target is None and not (reply.get("allow_sending_without_reply")
                                       or p.get("allow_sending_without_reply")):
                raise bad_request("message to be replied not found")
        return self.add(chat, sender, target, {**content, "reply_markup": _inline_markup(p)})

    def find(self, p: Json, missing: str) -> Json:
        chat_id = self.chat(p.get("chat_id"))["id"]
        if (found := self.by_key.get((chat_id, p.get("message_id", 0)))) is None:
            raise bad_request(missing)
        return found

    def edit(self, p: Json, changes: Callable[[Json], Json]) -> Json | bool:
        """Apply `changes(message)`; like Telegram, an identical edit is an error, and an edit
        without reply_markup removes the inline keyboard."""
        if "inline_message_id" in p:
            return True  # inline-mode messages are not stored
        msg = self.find(p, "message to edit not found")
        new = {**changes(msg), "reply_markup": _inline_markup(p)}
        if all(msg.get(k) == v for k, v in new.items()):
            raise bad_request(_NOT_MODIFIED)
        for key, value in new.items():
            if value is None:
                msg.pop(key, None)
            else:
                msg[key] = value
        msg["edit_date"] = int(time.time())
        return copy.deepcopy(msg)

    def delete(self, p: Json) -> None:
        msg = self.find(p, "message to delete not found")
        del self.by_key[(msg["chat"]["id"], msg["message_id"])]

    def in_chat(self, chat_id: int, sender_id: int | None = None) -> list[Json]:
        found = [m for (c, _), m in sorted(self.by_key.items()) if c == chat_id]
        return [copy.deepcopy(m) for m in found if sender_id is None or m["from"]["id"] == sender_id]
