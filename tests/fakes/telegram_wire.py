"""Bot API wire pieces for the fake Telegram: users/chats, recorded calls, form parsing, photo processing."""

from __future__ import annotations

import io
import json
import re
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
from PIL import Image, ImageOps

__all__ = [
    "ALICE",
    "BOB",
    "CLIENT_MAX_SIZE",
    "DOCUMENT_UPLOAD_LIMIT",
    "DOWNLOAD_LIMIT",
    "GROUP",
    "PHOTO_UPLOAD_LIMIT",
    "ApiError",
    "Call",
    "Chat",
    "Delivery",
    "Json",
    "Upload",
    "User",
    "bad_request",
    "decode_form",
    "entities_for",
    "read_multipart",
    "render_photo",
]

Json = dict[str, Any]
MIB = 1024 * 1024
PHOTO_UPLOAD_LIMIT = 10 * MIB
DOCUMENT_UPLOAD_LIMIT = 50 * MIB
DOWNLOAD_LIMIT = 20 * MIB  # getFile refuses bigger files
CLIENT_MAX_SIZE = 64 * MIB  # aiohttp's default of 1 MiB would reject real photos
_THUMB_SIDES = (90, 320, 800, 1280)
_MAX_PHOTO_SIDE = 2560
# aiogram JSON-encodes every non-string value into a form field; these are decoded back.
_JSON_FIELDS = frozenset(
    "chat_id message_id message_ids from_chat_id message_thread_id reply_to_message_id offset limit "
    "timeout allowed_updates reply_markup reply_parameters media entities caption_entities "
    "link_preview_options disable_notification protect_content allow_sending_without_reply "
    "drop_pending_updates max_connections show_alert cache_time commands scope has_spoiler "
    "show_caption_above_media disable_content_type_detection disable_web_page_preview user_id "
    "reaction is_big allow_paid_broadcast menu_button".split()
)
_COMMAND_RE = re.compile(r"/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]{3,32})?")
_MENTION_RE = re.compile(r"(?<![\w@])@[A-Za-z0-9_]{5,32}\b")


@dataclass(frozen=True)
class User:
    """A Telegram user as it appears in `from`; the default is alice (id 111)."""

    id: int = 111
    first_name: str = "Alice"
    username: str | None = "alice"
    is_bot: bool = False
    language_code: str | None = "en"

    def to_dict(self) -> Json:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Chat:
    """A chat; build with `Chat.private(user)` or `Chat.group()`."""

    id: int
    type: str = "private"
    title: str | None = None
    username: str | None = None
    first_name: str | None = None

    @classmethod
    def private(cls, user: User) -> Chat:
        return cls(user.id, "private", username=user.username, first_name=user.first_name)

    @classmethod
    def group(cls, id: int = -1001234567890, title: str = "Test group", type: str = "supergroup") -> Chat:
        return cls(id, type, title=title)

    def to_dict(self) -> Json:
        return {k: v for k, v in asdict(self).items() if v is not None}


ALICE = User()
BOB = User(222, "Bob", "bob")
GROUP = Chat.group()


@dataclass(frozen=True)
class Upload:
    """One file part of a multipart request, keyed in `Call.uploads` by its part name."""

    name: str
    filename: str | None
    content_type: str
    data: bytes


@dataclass
class Call:
    """One Bot API call as the fake received it; `result` is what it answered (None on error).

    `params` are decoded (ids are ints, reply_markup/media are dicts and lists); a file parameter
    stays `"attach://<part>"`, and that part is `uploads["<part>"]`.
    """

    method: str
    params: Json
    uploads: dict[str, Upload]
    content_type: str
    result: Any = None
    status: int = 200
    description: str | None = None
    retry_after: int | None = None
    source: str = "http"  # or "webhook_reply": the method came back in a webhook's HTTP response
    at: float = 0.0  # time.monotonic() when the answer was ready (benchmarks time deliveries with it)

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class Delivery:
    """One webhook POST: the HTTP status the bot answered (None if unreachable) and the error text."""

    update: Json
    status: int | None
    error: str | None


class ApiError(Exception):
    """An error answer: `{"ok": false, "error_code", "description", "parameters"?}`."""

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status, self.description, self.retry_after = status, description, retry_after

    def body(self) -> Json:
        body: Json = {"ok": False, "error_code": self.status, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def bad_request(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


def _u16(text: str) -> int:
    """Telegram counts entity offsets and lengths in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def entities_for(text: str) -> list[Json]:
    """What Telegram adds to a user's text: bot_command for a leading /cmd[@bot], mention per @username."""
    found: list[Json] = []
    start = 0
    if command := _COMMAND_RE.match(text):
        found.append({"type": "bot_command", "offset": 0, "length": _u16(command.group())})
        start = command.end()
    for m in _MENTION_RE.finditer(text, start):
        found.append({"type": "mention", "offset": _u16(text[: m.start()]), "length": _u16(m.group())})
    return found


def decode_form(fields: dict[str, Any]) -> Json:
    """Undo aiogram's form encoding: JSON-decode the known non-string fields."""
    out: Json = {}
    for key, value in fields.items():
        if key in _JSON_FIELDS and isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                pass  # e.g. chat_id="@channel"
        out[key] = value
    return out


async def read_multipart(reader: aiohttp.MultipartReader, limit: int) -> tuple[Json, dict[str, Upload]]:
    """Text parts become fields, parts with a filename become Uploads; all in memory, no temp files."""
    fields: Json = {}
    uploads: dict[str, Upload] = {}
    total = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, aiohttp.BodyPartReader) or part.name is None:
            continue
        data = bytes(await part.read(decode=False))
        total += len(data)
        if total > limit:
            raise ApiError(413, "Request Entity Too Large")
        if part.filename is not None:
            ctype = part.headers.get(aiohttp.hdrs.CONTENT_TYPE, "application/octet-stream")
            uploads[part.name] = Upload(part.name, part.filename, ctype, data)
        else:
            fields[part.name] = data.decode()
    return fields, uploads


def render_photo(data: bytes) -> list[tuple[int, int, bytes]]:
    """Validate like Telegram, then re-encode as JPEG sizes, smallest first. Blocking: run in a thread."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w + h > 10000 or max(w, h) > 20 * min(w, h):
                    raise bad_request("PHOTO_INVALID_DIMENSIONS")
                im.load()
                img = ImageOps.exif_transpose(im)
    except ApiError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError, Warning) as exc:
        raise bad_request("IMAGE_PROCESS_FAILED") from exc
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        img = Image.new("RGB", rgba.size, "white")
        img.paste(rgba, mask=rgba.getchannel("A"))
    img = img.convert("RGB")
    img.thumbnail((_MAX_PHOTO_SIDE, _MAX_PHOTO_SIDE))
    biggest = max(img.size)
    # Always at least two sizes, so a bot that takes photo[0] instead of photo[-1] shows up in tests.
    sides = [s for s in _THUMB_SIDES if s < biggest] or [max(1, biggest // 2)]
    out = []
    for side in [*sides, biggest]:
        sized = img.copy()
        sized.thumbnail((side, side))
        buf = io.BytesIO()
        sized.save(buf, "JPEG", quality=87)
        out.append((sized.width, sized.height, buf.getvalue()))
    return out
