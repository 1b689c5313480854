"""Fake Telegram Bot API on 127.0.0.1: the real aiogram talks HTTP to it; tests push updates, read calls.

Faithful where the bot can trip: long polling, multipart uploads with `attach://`,
photos re-encoded to several JPEG sizes, Telegram's size limits and error texts, webhook pushes with
the secret header, method calls returned in a webhook reply. Error texts are close, not exact.
Known differences: parse_mode is not interpreted (text is stored as sent); http:// webhooks are
allowed; a failed webhook delivery is recorded and dropped, not retried; the bot can only write to
chats it has seen (alice's private chat, or any chat a push used), like Telegram's "chat not found".
Inspect state through `calls`, `messages` (MessageStore), `files` (FileStore), `webhook_deliveries`.

    async with FakeTelegramServer() as server:
        bot = Bot(server.token, session=AiohttpSession(api=TelegramAPIServer.from_base(server.base_url)))
        sent = await server.push_text("/imagine a fox")          # the user's message dict
        (call,) = await server.wait_for("sendPhoto")             # Call(method, params, uploads, ...)
        await server.push_photo(png, caption="grey", reply_to=call.result)
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import re
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes.telegram_files import FileStore
from tests.fakes.telegram_messages import MessageStore, caption_fields, checked_text
from tests.fakes.telegram_wire import (
    ALICE,
    BOB,
    CLIENT_MAX_SIZE,
    DOCUMENT_UPLOAD_LIMIT,
    DOWNLOAD_LIMIT,
    GROUP,
    PHOTO_UPLOAD_LIMIT,
    ApiError,
    Call,
    Chat,
    Delivery,
    Json,
    Upload,
    User,
    bad_request,
    decode_form,
    entities_for,
    read_multipart,
)

__all__ = [
    "ALICE",
    "BOB",
    "DOCUMENT_UPLOAD_LIMIT",
    "DOWNLOAD_LIMIT",
    "GROUP",
    "PHOTO_UPLOAD_LIMIT",
    "Call",
    "Chat",
    "Delivery",
    "FakeTelegramServer",
    "Upload",
    "User",
]

_log = logging.getLogger(__name__)
Uploads = dict[str, Upload]
_Handler = Callable[[Json, Uploads], Awaitable[Any]]
_TRUE_METHODS = frozenset(
    "setMyDescription setMyShortDescription setMyName setChatMenuButton setMessageReaction "
    "pinChatMessage unpinChatMessage logOut close".split()
)
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_CHAT_ACTIONS = frozenset(
    "typing upload_photo record_video upload_video record_voice upload_voice upload_document "
    "choose_sticker find_location record_video_note upload_video_note".split()
)
_BOT_COMMAND_RE = re.compile(r"[a-z0-9_]{1,32}")
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")


def _user_caption(caption: str | None) -> Json:
    return caption_fields(caption, entities_for(caption or ""))


@dataclass
class _Webhook:
    url: str
    secret_token: str | None
    max_connections: int
    allowed_updates: list[str] | None


class FakeTelegramServer:
    """One bot's Bot API. Public state: `calls`, `webhook_deliveries`, `dropped_updates`, `me`."""

    def __init__(self, *, token: str = "123456:TEST-token", bot_username: str = "pixbot_test_bot",
                 bot_name: str = "PixBot") -> None:
        self.token = token  # aiogram insists on the "<digits>:<secret>" shape
        self.me: Json = {"id": int(token.split(":", 1)[0]), "is_bot": True, "first_name": bot_name,
                         "username": bot_username, "can_join_groups": True,
                         "can_read_all_group_messages": False, "supports_inline_queries": False}
        self.calls: list[Call] = []
        self.webhook_deliveries: list[Delivery] = []
        self.dropped_updates: list[Json] = []  # not in allowed_updates: Telegram discards them
        self._cond = asyncio.Condition()  # guards updates; notified on every update, call and delivery
        self._pending: list[Json] = []
        self._update_id = 1000
        self._allowed: set[str] | None = None
        self._webhook: _Webhook | None = None
        self._webhook_error: tuple[int, str] | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._closing = False
        self._polls_waiting = 0
        self._faults: dict[str, deque[ApiError]] = defaultdict(deque)
        self.messages = MessageStore()
        self.files = FileStore()
        self._callbacks: set[str] = set()
        self._commands: dict[tuple[str, str], list[Json]] = {}
        self._counter = 0
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._port = 0
        self._handlers: dict[str, _Handler] = {
            "getMe": self._get_me, "getUpdates": self._get_updates, "sendMessage": self._send_message,
            "sendPhoto": self._send_photo, "sendDocument": self._send_document,
            "sendMediaGroup": self._send_media_group, "sendChatAction": self._send_chat_action,
            "getFile": self._get_file, "editMessageText": self._edit_text,
            "editMessageCaption": self._edit_caption, "editMessageReplyMarkup": self._edit_markup,
            "deleteMessage": self._delete_message, "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook, "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_commands, "getMyCommands": self._get_commands,
            "deleteMyCommands": self._delete_commands, "answerCallbackQuery": self._answer_callback,
        }
        # Bot API method names are case-insensitive.
        self._canonical = {name.lower(): name for name in [*self._handlers, *_TRUE_METHODS]}

    async def start(self) -> None:
        """Serve on 127.0.0.1, on a free port."""
        app = web.Application(client_max_size=CLIENT_MAX_SIZE)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        # handler_cancellation: a long poll ends when its client goes away (aiogram's stop_polling), so
        # `polls_waiting` drops to 0 then, as a test can observe.
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = self._runner.addresses[0][1]
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def stop(self) -> None:
        """Wake pending long polls first: aiohttp's cleanup would otherwise wait for them."""
        async with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            await asyncio.gather(self._webhook_task, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._webhook_task, self._http, self._runner = None, None, None  # stop() may be called twice

    async def __aenter__(self) -> FakeTelegramServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """For `TelegramAPIServer.from_base(server.base_url)` (do not set is_local)."""
        return f"http://127.0.0.1:{self._port}"

    def fail_next(self, method: str, status: int, description: str, retry_after: int | None = None,
                  times: int = 1) -> None:
        """Answer the next `times` calls of `method` with this error.

        429 with `retry_after` makes aiogram raise TelegramRetryAfter; 413 TelegramEntityTooLarge."""
        name = self._canonical.get(method.lower(), method)
        self._faults[name].extend(ApiError(status, description, retry_after) for _ in range(times))

    async def push_update(self, update_type: str, payload: Json) -> Json:
        """Queue any update; getUpdates or the webhook delivers it. Returns the update."""
        async with self._cond:
            self._update_id += 1
            update = {"update_id": self._update_id, update_type: payload}
            self._pending.append(update)
            self._cond.notify_all()
        return update

    async def push_text(self, text: str, *, chat: Chat | None = None, user: User = ALICE,
                        reply_to: Json | None = None, chat_type: str = "private") -> Json:
        """A user sends text (with bot_command/mention entities). Returns the message dict.

        `reply_to` is any message dict the fake handed out (`call.result` of the bot's send, or a
        push's return value); without `chat`, `chat_type` "group"/"supergroup" means the test group."""
        content = {"text": text, "entities": entities_for(text) or None}
        return await self._push_message(chat, user, chat_type, reply_to, content)

    async def push_photo(self, data: bytes, caption: str | None = None, *, reply_to: Json | None = None,
                         media_group_id: str | None = None, chat: Chat | None = None, user: User = ALICE,
                         chat_type: str = "private") -> Json:
        """A user sends a photo, stored like an upload (JPEG sizes). ValueError if Pillow can't read it.

        For an album, push each photo with the same `media_group_id` (Telegram sends one update each)."""
        try:
            sizes = await self.files.add_photo(data)
        except ApiError as exc:
            raise ValueError(f"push_photo: {exc.description}") from exc
        content = {"photo": sizes, "media_group_id": media_group_id, **_user_caption(caption)}
        return await self._push_message(chat, user, chat_type, reply_to, content)

    async def push_document(self, data: bytes, file_name: str, mime_type: str | None = None,
                            caption: str | None = None, *, reply_to: Json | None = None,
                            media_group_id: str | None = None, chat: Chat | None = None,
                            user: User = ALICE, chat_type: str = "private") -> Json:
        """A user sends a file; bytes, name and mime type (guessed from the name if None) are kept."""
        content = {"document": self.files.add_document(data, file_name, mime_type),
                   "media_group_id": media_group_id, **_user_caption(caption)}
        return await self._push_message(chat, user, chat_type, reply_to, content)

    async def push_callback(self, message: Json, data: str, *, user: User = ALICE) -> Json:
        """A user presses an inline button under `message`. Returns the callback_query dict."""
        self._counter += 1
        chat_id = message["chat"]["id"]
        current = self.messages.by_key.get((chat_id, message["message_id"]), message)  # edits applied
        query: Json = {"id": f"cbq{self._counter}", "from": user.to_dict(), "message": copy.deepcopy(current),
                       "chat_instance": str(abs(chat_id) * 7919), "data": data}
        self._callbacks.add(query["id"])
        await self.push_update("callback_query", query)
        return query

    def calls_of(self, method: str) -> list[Call]:
        """Every call of `method` so far, failed ones included (see `Call.ok`)."""
        return [c for c in self.calls if c.method == method]

    async def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:  # noqa: ASYNC109
        """Wait on a Condition until `method` was called `count` times; return the first `count` calls.

        On timeout raise AssertionError listing the calls that were made."""
        await self.wait_until(lambda: len(self.calls_of(method)) >= count, timeout, f"{count}x {method}")
        return self.calls_of(method)[:count]

    async def wait_for_deliveries(self, count: int = 1, timeout: float = 5.0) -> list[Delivery]:  # noqa: ASYNC109
        """Wait until `count` webhook POSTs have finished, whatever their outcome."""
        await self.wait_until(lambda: len(self.webhook_deliveries) >= count, timeout, f"{count} deliveries")
        return self.webhook_deliveries[:count]

    def sent_messages(self, chat_id: int) -> list[Json]:
        """The bot's messages in a chat as they are now (edits applied, deleted ones gone)."""
        return self.messages.in_chat(chat_id, sender_id=self.me["id"])

    def message(self, chat_id: int, message_id: int) -> Json | None:
        """Any stored message (the bot's or a user's) as it is now."""
        return copy.deepcopy(self.messages.by_key.get((chat_id, message_id)))

    def file_bytes(self, file_id: str) -> bytes:
        """What downloading `file_id` returns (for a photo size: the fake's re-encoded JPEG)."""
        return self.files.by_id[file_id].data

    @property
    def pending_updates(self) -> list[Json]:
        """Updates not yet confirmed (getUpdates offset) or delivered (webhook)."""
        return copy.deepcopy(self._pending)

    @property
    def polls_waiting(self) -> int:
        """getUpdates requests blocked in a long poll right now."""
        return self._polls_waiting

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0,  # noqa: ASYNC109
                         what: str = "a condition") -> None:
        """Wait until `predicate()` holds; it is re-checked whenever the fake's state changes
        (update pushed, call recorded, webhook delivered, long poll started)."""
        try:
            async with asyncio.timeout(timeout), self._cond:
                await self._cond.wait_for(predicate)
        except TimeoutError:
            seen = [f"{c.method}:{c.status}" for c in self.calls]
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; calls: {seen}") from None

    async def _handle_api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(ApiError(401, "Unauthorized").body(), status=401)
        try:
            params, uploads = await self._read_body(request)
        except ApiError as exc:
            return web.json_response(exc.body(), status=exc.status)
        call = await self._execute(request.match_info["method"], params, uploads, request.content_type)
        if call.ok:
            return web.json_response({"ok": True, "result": call.result})
        error = ApiError(call.status, call.description or "", call.retry_after)
        return web.json_response(error.body(), status=call.status)

    async def _handle_file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(ApiError(401, "Unauthorized").body(), status=401)
        if (stored := self.files.by_path.get(request.match_info["path"])) is None:
            return await self._handle_unknown(request)
        return web.Response(body=stored.data, content_type=stored.mime_type or "application/octet-stream")

    async def _handle_unknown(self, request: web.Request) -> web.Response:
        return web.json_response(ApiError(404, "Not Found").body(), status=404)

    async def _read_body(self, request: web.Request) -> tuple[Json, Uploads]:
        """aiogram posts form-urlencoded (no files) or multipart; raw clients may post JSON or GET."""
        params: Json = dict(request.query)
        if request.content_type == "multipart/form-data":
            fields, uploads = await read_multipart(await request.multipart(), CLIENT_MAX_SIZE)
            return decode_form(params | fields), uploads
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise bad_request("can't parse JSON object") from None
            if not isinstance(body, dict):
                raise bad_request("the JSON body must be an object")
            return params | body, {}
        if request.can_read_body:
            try:
                form = await request.post()
            except web.HTTPRequestEntityTooLarge:
                raise ApiError(413, "Request Entity Too Large") from None
            params.update((k, v) for k, v in form.items() if isinstance(v, str))
        return decode_form(params), {}

    async def _execute(self, method: str, params: Json, uploads: Uploads, content_type: str,
                       source: str = "http") -> Call:
        """Run one method (from HTTP or from a webhook reply), record it, wake waiters."""
        name = self._canonical.get(method.lower(), method)
        call = Call(name, params, uploads, content_type, source=source)
        try:
            if self._faults[call.method]:
                raise self._faults[call.method].popleft()
            if call.method in self._handlers:
                call.result = await self._handlers[call.method](params, uploads)
            elif call.method in _TRUE_METHODS:
                call.result = True
            else:
                raise ApiError(404, "Not Found")
        except ApiError as exc:
            call.status, call.description, call.retry_after = exc.status, exc.description, exc.retry_after
        except Exception as exc:  # a bug in the fake: answer and record a 500 rather than hang the test
            _log.exception("fake Telegram failed in %s", call.method)
            call.status, call.description = 500, f"Internal Server Error: fake Telegram bug: {exc!r}"
        call.at = time.monotonic()
        async with self._cond:
            self.calls.append(call)
            self._cond.notify_all()
        return call

    def _deliverable(self) -> list[Json]:
        """Pending updates of the types the bot asked for; the others are dropped, as Telegram does."""
        hook_types = self._webhook.allowed_updates if self._webhook else None
        wanted = set(hook_types) if hook_types else self._allowed
        keep: list[Json] = []
        for update in self._pending:
            kind = next(k for k in update if k != "update_id")
            wanted_here = kind in wanted if wanted else kind not in _OPT_IN_UPDATES
            (keep if wanted_here else self.dropped_updates).append(update)
        self._pending = keep
        return keep

    async def _get_updates(self, p: Json, _: Uploads) -> list[Json]:
        if self._webhook is not None:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                "use deleteWebhook to delete the webhook first")
        if (allowed := p.get("allowed_updates")) is not None:
            self._allowed = set(allowed) or None  # remembered, like Telegram; [] means the default set
        offset = p.get("offset")
        if isinstance(offset, int) and offset < 0:  # keep only the last -offset updates
            self._pending = self._pending[offset:]
        elif isinstance(offset, int):  # confirms every update below it
            self._pending = [u for u in self._pending if u["update_id"] >= offset]
        limit = min(max(int(p.get("limit") or 100), 1), 100)
        async with self._cond:
            if timeout := max(int(p.get("timeout") or 0), 0):
                self._polls_waiting += 1
                self._cond.notify_all()
                try:
                    async with asyncio.timeout(timeout):
                        await self._cond.wait_for(
                            lambda: bool(self._deliverable()) or self._closing or self._webhook is not None)
                except TimeoutError:
                    pass
                finally:
                    self._polls_waiting -= 1
                    self._cond.notify_all()
            return copy.deepcopy(self._deliverable()[:limit])

    async def _deliver_webhook(self) -> None:
        """POST pending updates one at a time, in order; execute a method found in the reply.

        Unlike Telegram, a failed delivery is not retried: it is recorded and the update dropped."""
        assert self._http is not None
        while True:
            async with self._cond:
                await self._cond.wait_for(
                    lambda: self._closing or self._webhook is None or bool(self._deliverable()))
                if self._closing or self._webhook is None:
                    return
                hook, update = self._webhook, self._deliverable()[0]
            headers = {"X-Telegram-Bot-Api-Secret-Token": hook.secret_token} if hook.secret_token else {}
            status: int | None = None
            error: str | None = None
            try:
                async with self._http.post(hook.url, json=update, headers=headers) as resp:
                    status = resp.status
                    if 200 <= status < 300:
                        await self._run_webhook_reply(resp)
                    else:
                        error = f"Wrong response from the webhook: {status} {resp.reason}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"Connection failed: {type(exc).__name__}: {exc}"
            async with self._cond:
                self._pending = [u for u in self._pending if u is not update]
                if error:
                    self._webhook_error = (int(time.time()), error)
                self.webhook_deliveries.append(Delivery(update, status, error))
                self._cond.notify_all()

    async def _run_webhook_reply(self, resp: aiohttp.ClientResponse) -> None:
        """aiogram's webhook may answer with a method (multipart `method=...`, or JSON); run it."""
        uploads: Uploads = {}
        if resp.content_type == "multipart/form-data":
            reader = aiohttp.MultipartReader(resp.headers, resp.content)
            fields, uploads = await read_multipart(reader, CLIENT_MAX_SIZE)
            params = decode_form(fields)
        elif resp.content_type == "application/json":
            body = await resp.json()
            params = body if isinstance(body, dict) else {}
        else:
            return
        if isinstance(method := params.pop("method", None), str):
            await self._execute(method, params, uploads, resp.content_type, source="webhook_reply")

    async def _push_message(self, chat: Chat | None, user: User, chat_type: str, reply_to: Json | None,
                            content: Json) -> Json:
        if chat is None:
            chat = Chat.private(user) if chat_type == "private" else Chat.group(type=chat_type)
        if reply_to is not None and reply_to["chat"]["id"] != chat.id:
            raise ValueError("reply_to is a message from another chat")
        self.messages.chats[chat.id] = chat.to_dict()
        msg = self.messages.add(chat.to_dict(), user.to_dict(), reply_to, content)
        await self.push_update("message", copy.deepcopy(msg))
        return msg

    def _send(self, p: Json, content: Json) -> Json:
        bot = {k: self.me[k] for k in ("id", "is_bot", "first_name", "username")}
        return self.messages.send(p, bot, content)

    async def _get_me(self, p: Json, _: Uploads) -> Json:
        return dict(self.me)

    async def _send_message(self, p: Json, _: Uploads) -> Json:
        return self._send(p, {"text": checked_text(p), "entities": p.get("entities")})

    async def _send_photo(self, p: Json, uploads: Uploads) -> Json:
        caption = caption_fields(p.get("caption"), p.get("caption_entities"))
        self.messages.chat(p.get("chat_id"))  # fail before storing the file
        photo = await self.files.photo_input(p.get("photo"), uploads, "photo")
        return self._send(p, {"photo": photo, **caption})

    async def _send_document(self, p: Json, uploads: Uploads) -> Json:
        caption = caption_fields(p.get("caption"), p.get("caption_entities"))
        self.messages.chat(p.get("chat_id"))
        return self._send(p, {"document": self.files.document_input(p.get("document"), uploads, "document"),
                              **caption})

    async def _send_media_group(self, p: Json, uploads: Uploads) -> list[Json]:
        media = p.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise bad_request("wrong number of media in the group: send 2-10 items")
        kinds = {item.get("type") if isinstance(item, dict) else None for item in media}
        if kinds not in ({"photo"}, {"document"}):
            raise bad_request("the fake supports albums of only photos or only documents")
        self.messages.chat(p.get("chat_id"))
        contents = []
        for item in media:  # `media` inside each item is attach://<part> or a file_id
            content = caption_fields(item.get("caption"), item.get("caption_entities"))
            if item["type"] == "photo":
                content["photo"] = await self.files.photo_input(item.get("media"), uploads, "media")
            else:
                content["document"] = self.files.document_input(item.get("media"), uploads, "media")
            contents.append(content)
        self._counter += 1
        group = str(13_000_000_000 + self._counter)
        return [self._send(p, {**c, "media_group_id": group}) for c in contents]

    async def _send_chat_action(self, p: Json, _: Uploads) -> bool:
        self.messages.chat(p.get("chat_id"))
        if p.get("action") not in _CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        return True

    async def _get_file(self, p: Json, _: Uploads) -> Json:
        if (stored := self.files.by_id.get(str(p.get("file_id")))) is None:
            raise bad_request("invalid file_id")
        if len(stored.data) > DOWNLOAD_LIMIT:
            raise bad_request("file is too big")
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                "file_size": len(stored.data), "file_path": stored.file_path}

    async def _edit_text(self, p: Json, _: Uploads) -> Json | bool:
        def changes(msg: Json) -> Json:
            if "text" not in msg:
                raise bad_request("there is no text in the message to edit")
            return {"text": checked_text(p), "entities": p.get("entities")}

        return self.messages.edit(p, changes)

    async def _edit_caption(self, p: Json, _: Uploads) -> Json | bool:
        def changes(msg: Json) -> Json:
            if "text" in msg:
                raise bad_request("there is no caption in the message to edit")
            return caption_fields(p.get("caption"), p.get("caption_entities"))

        return self.messages.edit(p, changes)

    async def _edit_markup(self, p: Json, _: Uploads) -> Json | bool:
        return self.messages.edit(p, lambda msg: {})

    async def _delete_message(self, p: Json, _: Uploads) -> bool:
        self.messages.delete(p)
        return True

    async def _set_webhook(self, p: Json, _: Uploads) -> bool:
        if not (url := p.get("url") or ""):
            return await self._delete_webhook(p, _)
        if not url.startswith(("http://", "https://")):  # Telegram wants https; loopback tests use http
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        if (secret := p.get("secret_token")) is not None and not _SECRET_RE.fullmatch(secret):
            raise bad_request("secret token contains unallowed characters")
        async with self._cond:
            if p.get("drop_pending_updates"):
                self._pending.clear()
            hook_types = p.get("allowed_updates")
            self._webhook = _Webhook(url, secret, int(p.get("max_connections") or 40), hook_types)
            self._webhook_error = None
            if self._webhook_task is None or self._webhook_task.done():
                self._webhook_task = asyncio.create_task(self._deliver_webhook())
            self._cond.notify_all()
        return True

    async def _delete_webhook(self, p: Json, _: Uploads) -> bool:
        async with self._cond:
            if p.get("drop_pending_updates"):
                self._pending.clear()
            self._webhook = None
            self._cond.notify_all()
        return True

    async def _get_webhook_info(self, p: Json, _: Uploads) -> Json:
        info: Json = {"url": "", "has_custom_certificate": False, "pending_update_count": len(self._pending)}
        if self._webhook is not None:
            info.update(url=self._webhook.url, max_connections=self._webhook.max_connections)
            if self._webhook.allowed_updates:
                info["allowed_updates"] = self._webhook.allowed_updates
        if self._webhook_error is not None:
            info.update(last_error_date=self._webhook_error[0], last_error_message=self._webhook_error[1])
        return info

    @staticmethod
    def _commands_key(p: Json) -> tuple[str, str]:
        return json.dumps(p.get("scope") or {"type": "default"}, sort_keys=True), p.get("language_code") or ""

    async def _set_commands(self, p: Json, _: Uploads) -> bool:
        commands = p.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise bad_request("commands must be a list of at most 100 items")
        for c in commands:
            valid_name = _BOT_COMMAND_RE.fullmatch(str(c.get("command")))
            if not valid_name or not 1 <= len(c.get("description", "")) <= 256:
                raise bad_request("BOT_COMMAND_INVALID")
        self._commands[self._commands_key(p)] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    async def _get_commands(self, p: Json, _: Uploads) -> list[Json]:
        return copy.deepcopy(self._commands.get(self._commands_key(p), []))

    async def _delete_commands(self, p: Json, _: Uploads) -> bool:
        self._commands.pop(self._commands_key(p), None)
        return True

    async def _answer_callback(self, p: Json, _: Uploads) -> bool:
        query_id = str(p.get("callback_query_id"))
        if query_id not in self._callbacks:  # unknown, or answered already
            raise bad_request("query is too old and response timeout expired or query ID is invalid")
        self._callbacks.discard(query_id)
        return True
