"""Discord wire shapes for the fake Discord: payload builders, records, limits; no server, no state."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import BodyPartReader, web
from PIL import Image

__all__ = [
    "EPHEMERAL",
    "GUILD_MESSAGES",
    "GUILD_PRESENCES",
    "LOADING",
    "MEMBER_PERMISSIONS",
    "MESSAGE_CONTENT",
    "MIB",
    "ApiError",
    "FakeGuild",
    "FakeInteraction",
    "FakeUser",
    "Json",
    "RestCall",
    "UploadedFile",
    "channel_payload",
    "filesize_limit_for_tier",
    "guild_payload",
    "json_response",
    "member_payload",
    "message_payload",
    "modal_submission",
    "now_iso",
    "probe_image",
    "read_body",
    "reply_fields",
    "role_payload",
    "shard_of",
    "visible_to",
    "walk_components",
]

Json = dict[str, Any]

MIB = 1024 * 1024
EPHEMERAL, LOADING = 1 << 6, 1 << 7  # message flags
GUILD_PRESENCES, GUILD_MESSAGES, MESSAGE_CONTENT = 1 << 8, 1 << 9, 1 << 15  # gateway intents
# add reactions, view channel, send messages, embed links, attach files, read history, use app commands
MEMBER_PERMISSIONS = str(sum(1 << bit for bit in (6, 10, 11, 14, 15, 16, 31)))
_TIER_LIMITS = {0: 10 * MIB, 1: 10 * MIB, 2: 50 * MIB, 3: 100 * MIB}


def filesize_limit_for_tier(premium_tier: int) -> int:
    """Upload limit per message for a guild boost tier, as `discord.Guild.filesize_limit` computes it."""
    return _TIER_LIMITS.get(premium_tier, 10 * MIB)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def json_response(data: Any, status: int = 200) -> web.Response:
    """discord.py decodes a body only if Content-Type is exactly "application/json" (no charset suffix),
    so aiohttp's web.json_response, which adds one, must not be used."""
    return web.Response(status=status, body=json.dumps(data).encode(), content_type="application/json")


def probe_image(data: bytes) -> tuple[str, int, int] | None:
    """Content type, width and height, as Discord fills them in for attachments; None if not an image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return Image.MIME.get(im.format or "", "application/octet-stream"), im.width, im.height
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


class ApiError(Exception):
    """A Discord error answer: HTTP status plus the JSON `{"message", "code"}` body."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.body = status, {"message": message, "code": code}


@dataclass(frozen=True)
class FakeUser:
    """A Discord user; ids are snowflake strings, as on the wire."""

    id: str
    username: str
    bot: bool = False

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def payload(self) -> Json:
        return {"id": self.id, "username": self.username, "discriminator": "0", "avatar": None,
                "global_name": None if self.bot else self.username.title(), "bot": self.bot,
                "public_flags": 0}


def shard_of(guild_id: str, shard_count: int) -> int:
    """Discord's rule: a guild's events go to shard `(guild_id >> 22) % shard_count`."""
    return (int(guild_id) >> 22) % shard_count


@dataclass(frozen=True)
class FakeGuild:
    """A guild with its one text channel."""

    id: str
    channel_id: str
    name: str = "Fake Guild"

    def shard(self, shard_count: int) -> int:
        return shard_of(self.id, shard_count)


@dataclass(frozen=True)
class UploadedFile:
    """One `files[n]` part of a multipart request (`index` is n)."""

    index: int
    filename: str
    data: bytes
    content_type: str


@dataclass(frozen=True)
class RestCall:
    """One request the bot made: path is relative to /api/v10; CDN downloads start with /attachments/."""

    method: str
    path: str
    json: Any
    files: list[UploadedFile]
    query: dict[str, str]
    status: int


@dataclass(eq=False)
class FakeInteraction:
    """An interaction the fake sent and how the bot answered it.

    `original` is the live message dict of the response (edits show up in it); `modal` is the data of a
    type 9 response; `response_type` is the callback type (4, 5, 6, 7 or 9), None until acknowledged.
    `shard` (`[id, count]`) and `session_id` name the gateway session the interaction was sent on: the
    client that answers it (the callback is REST, which any process could send) is the one holding it.
    """

    id: str
    token: str
    type: int
    user: FakeUser
    payload: Json
    attachment_size_limit: int
    response_type: int | None = None
    flags: int = 0
    original: Json | None = None
    followups: list[Json] = field(default_factory=list)
    modal: Json | None = None
    expired: bool = False
    shard: tuple[int, int] | None = None
    session_id: str | None = None

    @property
    def acked(self) -> bool:
        return self.response_type is not None

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)


def member_payload(user: FakeUser | None = None, *, permissions: bool = False,
                   roles: list[str] | None = None) -> Json:
    """A guild member; without `user` it is the partial form messages and resolved data carry."""
    member: Json = {"roles": list(roles or []), "joined_at": now_iso(), "deaf": False, "mute": False, "flags": 0,
                    "nick": None, "avatar": None, "pending": False}
    if user is not None:
        member["user"] = user.payload()
    if permissions:
        member["permissions"] = MEMBER_PERMISSIONS
    return member


def channel_payload(channel_id: str, guild_id: str, name: str = "art") -> Json:
    return {"id": channel_id, "type": 0, "guild_id": guild_id, "name": name, "position": 0,
            "permission_overwrites": [], "nsfw": False, "topic": None, "parent_id": None,
            "rate_limit_per_user": 0, "flags": 0}


def guild_payload(guild_id: str, channels: list[Json], members: list[FakeUser], *, owner_id: str,
                  premium_tier: int, member_count: int, roles: dict[str, str] | None = None,
                  member_roles: dict[str, list[str]] | None = None, name: str = "Fake Guild") -> Json:
    """A full GUILD_CREATE guild: @everyone may use the bot, `premium_tier` sets the upload limit;
    `roles` (id -> name) are extra roles and `member_roles` (user id -> role ids) who holds them."""
    everyone = role_payload(guild_id, "@everyone", 0)
    extra = [role_payload(rid, name, i + 1) for i, (rid, name) in enumerate((roles or {}).items())]
    held = member_roles or {}
    return {
        "id": guild_id, "name": name, "icon": None, "owner_id": owner_id, "features": [],
        "premium_tier": premium_tier, "premium_subscription_count": 0, "roles": [everyone, *extra],
        "channels": channels,
        "members": [member_payload(u, roles=held.get(u.id)) for u in members], "member_count": member_count,
        "emojis": [],
        "stickers": [], "large": False, "unavailable": False, "joined_at": now_iso(), "threads": [],
        "voice_states": [], "presences": [], "preferred_locale": "en-US", "verification_level": 0,
        "mfa_level": 0, "default_message_notifications": 0, "explicit_content_filter": 0, "nsfw_level": 0,
        "afk_timeout": 300, "system_channel_flags": 0, "stage_instances": [], "guild_scheduled_events": [],
    }


def role_payload(role_id: str, name: str, position: int) -> Json:
    return {"id": role_id, "name": name, "permissions": MEMBER_PERMISSIONS, "position": position, "color": 0,
            "hoist": False, "managed": False, "mentionable": False, "flags": 0}


def message_payload(message_id: str, channel_id: str, guild_id: str, author: FakeUser, body: Json,
                    attachments: list[Json], mentions: list[FakeUser]) -> Json:
    """A guild message built from a create body (`content`, `embeds`, `components`, `flags`, `tts`)."""
    return {
        "id": message_id, "channel_id": channel_id, "guild_id": guild_id, "author": author.payload(),
        "member": member_payload(), "content": body.get("content") or "", "timestamp": now_iso(),
        "edited_timestamp": None, "tts": bool(body.get("tts")), "mention_everyone": False,
        "mentions": [u.payload() for u in mentions], "mention_roles": [], "attachments": attachments,
        "embeds": body.get("embeds") or [], "components": body.get("components") or [], "pinned": False,
        "type": 0, "flags": int(body.get("flags") or 0),
    }


def reply_fields(referenced: Json, guild_id: str) -> Json:
    """What turns a message into a reply (type 19); `referenced_message` nests one level only."""
    nested = {k: v for k, v in referenced.items() if k != "referenced_message"}
    return {"type": 19, "referenced_message": nested,
            "message_reference": {"type": 0, "message_id": referenced["id"],
                                  "channel_id": referenced["channel_id"], "guild_id": guild_id}}


def visible_to(msg: Json, intents: int, bot_id: str) -> Json:
    """Without the Message Content intent, content is blanked unless the bot wrote the message or is
    mentioned in it (Discord does this for gateway events and REST reads alike). A nested
    `referenced_message` is a message of its own and is judged by itself."""
    if intents & MESSAGE_CONTENT or "author" not in msg:
        return msg
    if isinstance(msg.get("referenced_message"), dict):
        msg = msg | {"referenced_message": visible_to(msg["referenced_message"], intents, bot_id)}
    if msg["author"]["id"] == bot_id or any(u["id"] == bot_id for u in msg.get("mentions", [])):
        return msg
    return msg | {"content": "", "attachments": [], "embeds": [], "components": []}


def walk_components(components: list[Json]) -> Iterator[Json]:
    """Every component, depth first (action rows and labels hold others)."""
    for component in components:
        yield component
        yield from walk_components(component.get("components") or [])
        if isinstance(component.get("component"), dict):
            yield from walk_components([component["component"]])


def modal_submission(component: Json, values: dict[str, Any]) -> Json:
    """The modal-submit form of one component of the modal the bot sent: same nesting, user's values."""
    kind, custom_id = component["type"], component.get("custom_id")
    if kind == 1:
        return {"type": 1, "components": [modal_submission(c, values) for c in component["components"]]}
    if kind == 18:  # label around one input
        inner = modal_submission(component["component"], values)
        return {"type": 18, "id": component.get("id"), "component": inner}
    if kind == 4:
        return {"type": 4, "custom_id": custom_id, "value": values.get(custom_id or "", "")}
    if custom_id is not None:  # selects
        return {"type": kind, "custom_id": custom_id, "values": values.get(custom_id, [])}
    return {"type": kind, "id": component.get("id")}


async def read_body(request: web.Request) -> tuple[Any, list[UploadedFile]]:
    """JSON body, or multipart `payload_json` plus `files[n]` parts, as discord.py sends them."""
    if request.content_type != "multipart/form-data":
        raw = await request.read()
        return (json.loads(raw) if raw else None), []
    payload: Any = None
    files: list[UploadedFile] = []
    async for part in await request.multipart():
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "payload_json":
            payload = json.loads(await part.text())
        elif part.name and (match := re.fullmatch(r"files\[(\d+)\]", part.name)):
            ctype = part.headers.get("Content-Type", "application/octet-stream")
            files.append(UploadedFile(int(match[1]), part.filename or "", bytes(await part.read()), ctype))
    return payload, files
