"""Loopback fake of Discord (REST v10, gateway websocket, attachment CDN) that unmodified discord.py drives.

Point discord.py at it by patching two constants:

    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url))

The fake owns one guild (`guild_id`, more with `guild_count=` or `add_guild()`), each with one text channel,
the bot user and two people (`alice`, `bob`), members of every guild. Tests act as them
(`send_user_message`, `invoke_slash`, `invoke_message_command`, `click_button`, `submit_modal`) and
assert on the recorded REST calls (`calls`, `calls_matching`), the stored messages (`messages()`) and the
interaction records (`FakeInteraction.original`). Every wait is `await fake.wait_for(...)`, never a sleep.

Sharding: an IDENTIFY with `shard: [id, count]` (absent: `[0, 1]`) gets a READY listing, and a GUILD_CREATE
for, only the guilds of that shard (`(guild_id >> 22) % count == id`, Discord's rule), and events of a
guild go only to the sessions of its shard; `FakeInteraction.shard`/`session_id` record which one got an
interaction. Guild n's id puts it on shard `n % count` for every count up to 12, so guilds spread over
shards. GET /gateway/bot reports `recommended_shards`.

Modelled: the interaction lifecycle (one ack, then 40060; token expiry on demand), per-request upload limits
(guild boost tier, or the interaction's `attachment_size_limit`) with 413/40005, the Guild Messages and
Message Content intents on message events (and gateway close 4014 when the privileged one is asked for but
not granted), guild roles, Discord's JSON error bodies, several guilds and gateway shards. Not modelled:
permissions, rate limits, threads, DMs, subcommands, per-guild roles and boost tiers (`roles` and
`premium_tier` hold in every guild), identify rate limits, resuming. A followup after a deferred response is
a new message (use `edit_original_response` for the first result). Error texts are approximate; statuses and
codes are not.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from aiohttp import WSMsgType, web

from tests.fakes.discord_wire import (
    EPHEMERAL,
    GUILD_MESSAGES,
    GUILD_PRESENCES,
    LOADING,
    MEMBER_PERMISSIONS,
    MESSAGE_CONTENT,
    MIB,
    ApiError,
    FakeGuild,
    FakeInteraction,
    FakeUser,
    Json,
    RestCall,
    UploadedFile,
    channel_payload,
    filesize_limit_for_tier,
    guild_payload,
    json_response,
    member_payload,
    message_payload,
    modal_submission,
    now_iso,
    probe_image,
    read_body,
    reply_fields,
    shard_of,
    visible_to,
    walk_components,
)

__all__ = ["MIB", "FakeDiscord", "FakeGuild", "FakeInteraction", "FakeUser", "RestCall", "UploadedFile", "shard_of"]

T = TypeVar("T")
_DISCORD_EPOCH_MS = 1_420_070_400_000
_OPTION_TYPES: dict[int, Callable[[Any], Any]] = {3: str, 4: int, 5: bool, 10: float}
_TRUE = ("1", "true", "True")
#: lcm(1..12): guild n's timestamp part is n modulo this, so it is on shard n % count for any count up to 12.
_SHARD_SPREAD = 27_720


@dataclass(eq=False)
class _Session:
    """One identified gateway connection."""

    ws: web.WebSocketResponse
    intents: int = 0
    seq: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    shard: tuple[int, int] = (0, 1)
    session_id: str = ""

    def owns(self, guild_id: str) -> bool:
        return shard_of(guild_id, self.shard[1]) == self.shard[0]

    async def send(self, op: int, data: Any, event: str | None = None) -> None:
        async with self.lock:  # one writer at a time: sequence numbers must arrive in order
            seq = None
            if op == 0:
                self.seq += 1
                seq = self.seq
            await self.ws.send_str(json.dumps({"op": op, "d": data, "s": seq, "t": event}))


@dataclass
class _Request:
    path: str
    params: dict[str, str]
    query: dict[str, str]
    json: Any
    files: list[UploadedFile]


@dataclass(frozen=True)
class _Fault:
    method: str
    path_regex: str
    status: int
    body: Any
    headers: dict[str, str]


_Handler = Callable[[_Request], Awaitable[tuple[int, Any]]]


class FakeDiscord:
    """Discord on 127.0.0.1: `await start()`, point discord.py at it, drive it, assert, `await stop()`.

    `message_content_granted=False` models the portal switch being off: an IDENTIFY that asks for the
    intent is closed with 4014 "Disallowed intent(s)", as Discord does; without it, message content is
    blanked (`visible_to`). `premium_tier` is read when the bot connects and at every upload. Roles made
    with `add_role` and handed out with `give_role` before the bot connects are in its GUILD_CREATE, and
    members carry them in messages and interactions. `guild_count` guilds exist from the start (`guilds`;
    the first is `guild_id`/`channel_id`); `recommended_shards` is what GET /gateway/bot answers.
    """

    def __init__(self, *, premium_tier: int = 0, message_content_granted: bool = True, guild_count: int = 1,
                 recommended_shards: int = 1) -> None:
        self.token = "fake-bot-token." + secrets.token_urlsafe(12)
        self.premium_tier = premium_tier
        self.message_content_granted = message_content_granted
        self.recommended_shards = recommended_shards
        self._next_seq = 0
        self.app_id = self._snowflake()
        self.bot_user = FakeUser(self.app_id, "pixbot", bot=True)
        self.alice = FakeUser(self._snowflake(), "alice")
        self.bob = FakeUser(self._snowflake(), "bob")
        self.guilds: list[FakeGuild] = []
        for _ in range(guild_count):
            self.add_guild()
        self.guild_id, self.channel_id = self.guilds[0].id, self.guilds[0].channel_id
        self.roles: dict[str, str] = {}  # role id -> name (besides @everyone)
        self.member_roles: dict[str, list[str]] = {}  # user id -> role ids
        self.base_url = ""
        self.calls: list[RestCall] = []
        self.identifies: list[Json] = []  # every IDENTIFY `d`, `intents` included
        self.ready_count = 0  # READY events sent: wait for it to grow to know a (re)connection is done
        self.interactions: list[FakeInteraction] = []
        self.global_commands: dict[str, Json] = {}  # command id -> command, as returned by the sync
        self.guild_commands: dict[str, dict[str, Json]] = {}  # guild id -> command id -> command
        self._messages: dict[str, Json] = {}
        self._cdn: dict[str, tuple[bytes, str]] = {}
        self._faults: list[_Fault] = []
        self._sessions: list[_Session] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._routes = [(method, re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$"),
                         handler, auth) for method, pattern, handler, auth in self._route_table()]

    async def start(self) -> None:
        app = web.Application(client_max_size=256 * MIB)  # big uploads must reach the 413 check
        app.router.add_get("/ws", self._gateway)
        app.router.add_get("/attachments/{tail:.*}", self._serve_cdn)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._api)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        """Close gateway sockets, then the server. Close the discord.py client first, or it reconnects."""
        for session in list(self._sessions):
            await session.ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def api_base(self) -> str:
        """The value for `discord.http.Route.BASE`."""
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        """The value for `DiscordWebSocket.DEFAULT_GATEWAY` (as a yarl.URL); also READY's resume URL."""
        return self.base_url.replace("http://", "ws://", 1) + "/ws"

    @property
    def filesize_limit(self) -> int:
        return filesize_limit_for_tier(self.premium_tier)

    @property
    def members(self) -> list[FakeUser]:
        return [self.bot_user, self.alice, self.bob]

    def add_guild(self, name: str | None = None) -> FakeGuild:
        """Another guild with one text channel; the nth (from 0) is on shard n % count for counts up to 12.
        Add guilds before the bot connects (READY and GUILD_CREATE carry them)."""
        index = len(self.guilds)
        millis = int(time.time() * 1000) - _DISCORD_EPOCH_MS
        # the low 22 bits are random: two fakes made within one spread window still get different guild ids
        guild_id = str(((millis - millis % _SHARD_SPREAD + index) << 22) | secrets.randbelow(1 << 22))
        guild = FakeGuild(guild_id, self._snowflake(), name or ("Fake Guild" if index == 0 else f"Fake Guild {index}"))
        self.guilds.append(guild)
        return guild

    def guild(self, guild_id: str | None = None) -> FakeGuild:
        """A guild by id (the first one without); LookupError for a guild the fake does not have."""
        wanted = guild_id or self.guild_id
        for guild in self.guilds:
            if guild.id == wanted:
                return guild
        raise LookupError(f"the fake has no guild {wanted}")

    def connected_shards(self) -> list[tuple[int, int]]:
        """`(shard id, shard count)` of every identified gateway session, in the order they identified."""
        return [s.shard for s in self._sessions]

    def add_role(self, name: str) -> str:
        """A new guild role; returns its id. Add roles before the bot connects (GUILD_CREATE carries them)."""
        role_id = self._snowflake()
        self.roles[role_id] = name
        return role_id

    def give_role(self, user: FakeUser, role_id: str) -> None:
        self.member_roles.setdefault(user.id, []).append(role_id)

    def messages(self, channel_id: str | None = None) -> list[Json]:
        """Channel history, oldest first, as everyone sees it (ephemeral messages are not in it)."""
        channel_id = channel_id or self.channel_id
        return [m for m in self._messages.values() if m["channel_id"] == channel_id and not _hidden(m)]

    def message(self, message_id: str) -> Json:
        return self._messages[message_id]

    def cdn_bytes(self, url: str) -> bytes:
        """The stored bytes behind an attachment URL."""
        return self._cdn[url.removeprefix(self.base_url)][0]

    def calls_matching(self, method: str | None = None, path_regex: str | None = None) -> list[RestCall]:
        return [c for c in self.calls if (method is None or c.method == method)
                and (path_regex is None or re.search(path_regex, c.path))]

    # `timeout=` mirrors the Telegram fake's wait_for; it is applied with asyncio.timeout inside.
    @overload
    async def wait_for(
        self, what: str, *, count: int = 1, timeout: float = 5.0  # noqa: ASYNC109
    ) -> list[RestCall]: ...
    @overload
    async def wait_for(
        self, what: Callable[[], T | None], *, count: int = 1, timeout: float = 5.0  # noqa: ASYNC109
    ) -> T: ...

    async def wait_for(
        self, what: str | Callable[[], Any], *, count: int = 1, timeout: float = 5.0  # noqa: ASYNC109
    ) -> Any:
        """Wait until `what` holds, re-checked on every change of the fake (no polling, no sleeps).

        A string is a regex searched in "METHOD /path" of the recorded calls; the matching calls are
        returned once there are `count` of them: `await fake.wait_for("PATCH /webhooks/.*/@original")`.
        A callable's first truthy result is returned: `await fake.wait_for(lambda: rec.original)`.
        Raises AssertionError listing the last calls on timeout.
        """
        if isinstance(what, str):
            pattern = re.compile(what)

            def check() -> Any:
                found = [c for c in self.calls if pattern.search(f"{c.method} {c.path}")]
                return found if len(found) >= count else None
        else:
            check = what
        result: Any = None

        def done() -> bool:
            nonlocal result
            result = check()
            return bool(result)

        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(done)
        except TimeoutError:
            seen = "\n".join(f"  {c.method} {c.path} -> {c.status}" for c in self.calls[-10:])
            message = f"fake Discord: timed out waiting for {what!r}; last calls:\n{seen}"
            raise AssertionError(message) from None
        return result

    async def original_response(
        self, interaction: FakeInteraction, where: Callable[[Json], object] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> Json:
        """Wait for the interaction's response message past the "thinking…" placeholder of a deferred
        response, and until `where(message)` holds if given; returns the live message dict."""
        def ready() -> Json | None:
            msg = interaction.original
            done = msg is not None and not msg["flags"] & LOADING and (where is None or where(msg))
            return msg if done else None

        return await self.wait_for(ready, timeout=timeout)

    def fail_next(self, method: str, path_regex: str, status: int, json: Any = None,
                  headers: dict[str, str] | None = None) -> None:
        """Answer the next request matching `method` and `path_regex` (searched in the /api/v10-relative
        path, or /attachments/... for the CDN) with this status and JSON body instead of handling it."""
        body = json if json is not None else {"message": f"{status}: injected failure", "code": 0}
        self._faults.append(_Fault(method, path_regex, status, body, headers or {}))

    def expire(self, interaction: FakeInteraction) -> None:
        """Age the interaction past Discord's 15 minutes: webhook calls get 401/50027, the callback 10062."""
        interaction.expired = True

    async def send_user_message(
        self, user: FakeUser, content: str = "", *, files: Iterable[tuple[str, bytes]] = (),
        reply_to: Json | None = None, include_referenced: bool = True, mentions: Iterable[FakeUser] = (),
        channel_id: str | None = None, dispatch: bool = True,
    ) -> Json:
        """Post a message as `user`; with `reply_to` (any message dict) it is a reply (type 19).

        `include_referenced=False` leaves `referenced_message` out of the gateway event, so discord.py
        has to fetch it. `dispatch=False` stores the message without an event, as if it was sent while
        the bot was offline: it is in history but not in the bot's cache. Returns the stored message.
        """
        channel_id = channel_id or self.channel_id
        guild = self._guild_of(channel_id)
        if guild is None:
            raise LookupError(f"the fake has no channel {channel_id}")
        attachments = [await self._attachment(channel_id, UploadedFile(i, name, data, "")) for i, (name, data)
                       in enumerate(files)]
        msg = self._new_message(channel_id, user, {"content": content}, attachments, mentions=mentions)
        event = msg
        if reply_to is not None:
            msg |= reply_fields(self._messages.get(reply_to["id"], reply_to), guild.id)
            author = msg["referenced_message"]["author"]
            if author["id"] not in {u["id"] for u in msg["mentions"]}:
                msg["mentions"].append(author)  # a reply pings its author by default
            if not include_referenced:
                event = {k: v for k, v in msg.items() if k != "referenced_message"}
        self._messages[msg["id"]] = msg
        if dispatch:
            await self._dispatch("MESSAGE_CREATE", event, intent=GUILD_MESSAGES, guild_id=guild.id)
        await self._notify()
        return msg

    async def invoke_slash(self, user: FakeUser, name: str, *, guild_id: str | None = None,
                           attachment_size_limit: int | None = None, **options: Any) -> FakeInteraction:
        """Run a synced chat-input command as `user` in a guild (the first one unless `guild_id`), in its
        channel; options are typed from its definition.

        Attachment options take `(filename, bytes)`, user options a FakeUser. `attachment_size_limit`
        overrides the guild's upload limit for this interaction. Raises LookupError for a command the bot
        never synced (to this guild or globally), ValueError for options Discord's UI would refuse.
        """
        guild = self.guild(guild_id)
        command, scope = self._command(name, 1, guild.id)
        data: Json = {"id": command["id"], "name": name, "type": 1, "options": [], "resolved": {}}
        if scope is not None:
            data["guild_id"] = scope  # discord.py finds guild commands only through it
        defined = {o["name"]: o for o in command.get("options", [])}
        missing = [n for n, o in defined.items() if o.get("required") and n not in options]
        if missing or not set(options) <= set(defined):
            raise ValueError(f"/{name}: missing {missing}, unknown {sorted(set(options) - set(defined))}")
        for option, value in options.items():
            data["options"].append(await self._option(defined[option], value, data["resolved"], guild.channel_id))
        return await self._interact(user, 2, data, guild=guild, size_limit=attachment_size_limit)

    async def invoke_message_command(self, user: FakeUser, name: str,
                                     target_message: Json) -> FakeInteraction:
        """Run a synced message context-menu command on `target_message` (resolved.messages carries it)."""
        target = self._messages.get(target_message["id"], target_message)
        guild = self.guild(target["guild_id"])
        command, scope = self._command(name, 3, guild.id)
        data: Json = {"id": command["id"], "name": name, "type": 3, "target_id": target["id"],
                      "resolved": {"messages": {target["id"]: target}}}
        if scope is not None:
            data["guild_id"] = scope
        return await self._interact(user, 2, data, guild=guild)

    async def click_button(self, user: FakeUser, message: Json, custom_id: str) -> FakeInteraction:
        """Click a button the message currently carries (LookupError if it has none with that id)."""
        current = self._messages.get(message["id"], message)
        if custom_id not in {c.get("custom_id") for c in walk_components(current.get("components", []))}:
            raise LookupError(f"message {current['id']} has no component {custom_id!r}")
        return await self._interact(user, 3, {"custom_id": custom_id, "component_type": 2},
                                    guild=self.guild(current["guild_id"]), message=current)

    async def submit_modal(self, user: FakeUser, custom_id: str, values: dict[str, Any]) -> FakeInteraction:
        """Submit the modal the bot last opened for `user`; `values` maps input custom_id to text."""
        opened = next((i for i in reversed(self.interactions) if i.user == user and i.modal is not None
                       and i.modal.get("custom_id") == custom_id), None)
        if opened is None or opened.modal is None:
            raise LookupError(f"the bot never opened modal {custom_id!r} for {user.username}")
        components = opened.modal.get("components", [])
        unknown = set(values) - {c.get("custom_id") for c in walk_components(components)}
        if unknown:
            raise ValueError(f"modal {custom_id!r} has no inputs {sorted(unknown)}")
        data = {"custom_id": custom_id, "components": [modal_submission(c, values) for c in components]}
        return await self._interact(user, 5, data, guild=self.guild(opened.payload["guild_id"]),
                                    message=opened.payload.get("message"))

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _snowflake(self) -> str:
        self._next_seq += 1
        return str(((int(time.time() * 1000) - _DISCORD_EPOCH_MS) << 22) | (self._next_seq & 0x3FFFFF))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        """HELLO, heartbeat ACKs, IDENTIFY -> READY + GUILD_CREATE; text frames only (never zlib)."""
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session = _Session(ws)
        await session.send(10, {"heartbeat_interval": 41250})
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                packet = json.loads(frame.data)
                if packet["op"] == 1:
                    await session.send(11, None)
                elif packet["op"] == 2:
                    await self._identify(session, packet["d"])
                elif packet["op"] == 6:  # RESUME: sessions are not kept, so ask for a fresh IDENTIFY
                    await session.send(9, False)
        finally:
            if session in self._sessions:
                self._sessions.remove(session)
                await self._notify()
        return ws

    async def _identify(self, session: _Session, data: Json) -> None:
        self.identifies.append(data)
        if data.get("token") != self.token:
            await session.ws.close(code=4004, message=b"Authentication failed.")
            return
        session.intents = int(data.get("intents", 0))
        if session.intents & MESSAGE_CONTENT and not self.message_content_granted:
            await session.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        shard = data.get("shard") or [0, 1]
        if not (isinstance(shard, list) and len(shard) == 2 and all(isinstance(n, int) for n in shard)
                and 0 <= shard[0] < shard[1]):
            await session.ws.close(code=4010, message=b"Invalid shard.")
            return
        session.shard, session.session_id = (shard[0], shard[1]), secrets.token_hex(16)
        self._sessions.append(session)
        owned = [g for g in self.guilds if session.owns(g.id)]
        ready = {"v": 10, "user": self.bot_user.payload(), "session_id": session.session_id,
                 "guilds": [{"id": g.id, "unavailable": True} for g in owned], "shard": list(session.shard),
                 "resume_gateway_url": self.gateway_url, "application": {"id": self.app_id, "flags": 0},
                 "private_channels": []}
        await session.send(0, ready, "READY")
        # without the presences intent Discord lists only the bot among a guild's members
        members = self.members if session.intents & GUILD_PRESENCES else [self.bot_user]
        for g in owned:
            guild = guild_payload(g.id, [channel_payload(g.channel_id, g.id)], members, owner_id=self.alice.id,
                                  premium_tier=self.premium_tier, member_count=len(self.members),
                                  roles=self.roles, member_roles=self.member_roles, name=g.name)
            await session.send(0, guild, "GUILD_CREATE")
        self.ready_count += 1
        await self._notify()

    async def _dispatch(self, event: str, data: Json, *, guild_id: str, intent: int = 0) -> list[_Session]:
        """Send a guild's event to every identified session of its shard that subscribed to `intent` (0:
        always sent); returns the sessions it went to."""
        sent = []
        for session in list(self._sessions):
            if (intent and not session.intents & intent) or not session.owns(guild_id):
                continue
            try:
                await session.send(0, visible_to(data, session.intents, self.app_id), event)
                sent.append(session)
            except ConnectionError:  # the bot went away mid-send; its handler may have dropped it already
                if session in self._sessions:
                    self._sessions.remove(session)
        return sent

    def _route_table(self) -> list[tuple[str, str, _Handler, bool]]:
        """(method, path, handler, needs the bot token); webhook and callback routes use the URL token."""
        webhook_message = "/webhooks/{app}/{token}/messages/{message}"
        return [
            ("GET", "/users/@me", self._get_me, True),
            ("GET", "/oauth2/applications/@me", self._get_application, True),
            ("GET", "/gateway", self._get_gateway, False),
            ("GET", "/gateway/bot", self._get_gateway, True),
            ("GET", "/applications/{app}/commands", self._get_commands, True),
            ("PUT", "/applications/{app}/commands", self._put_commands, True),
            ("GET", "/applications/{app}/guilds/{guild}/commands", self._get_commands, True),
            ("PUT", "/applications/{app}/guilds/{guild}/commands", self._put_commands, True),
            ("GET", "/channels/{channel}", self._get_channel, True),
            ("POST", "/channels/{channel}/messages", self._post_message, True),
            ("GET", "/channels/{channel}/messages/{message}", self._get_message, True),
            ("PATCH", "/channels/{channel}/messages/{message}", self._patch_message, True),
            ("DELETE", "/channels/{channel}/messages/{message}", self._delete_message, True),
            ("POST", "/channels/{channel}/typing", self._typing, True),
            ("POST", "/interactions/{interaction}/{token}/callback", self._callback, False),
            ("POST", "/webhooks/{app}/{token}", self._followup, False),
            ("GET", webhook_message, self._get_webhook_message, False),
            ("PATCH", webhook_message, self._patch_webhook_message, False),
            ("DELETE", webhook_message, self._delete_webhook_message, False),
        ]

    async def _api(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        headers: dict[str, str] = {}
        try:
            body, files = await read_body(request)
        except ValueError:  # json.JSONDecodeError is one
            body, files = None, []
            status, answer = 400, {"message": "The request body contains invalid JSON.", "code": 50109}
        else:
            status, answer, headers = await self._answer(request, path, _Request(
                path, {}, dict(request.query), body, files))
        self.calls.append(RestCall(request.method, path, body, files, dict(request.query), status))
        await self._notify()
        response = json_response(answer, status) if answer is not None else web.Response(status=status)
        response.headers.update(headers)
        return response

    async def _answer(self, request: web.Request, path: str,
                      req: _Request) -> tuple[int, Any, dict[str, str]]:
        if fault := self._take_fault(request.method, path):
            return fault.status, fault.body, fault.headers
        for method, regex, handler, auth in self._routes:
            match = regex.match(path)
            if match is None or method != request.method:
                continue
            if auth and request.headers.get("Authorization") != f"Bot {self.token}":
                return 401, {"message": "401: Unauthorized", "code": 0}, {}
            req.params = match.groupdict()
            try:
                status, answer = await handler(req)
            except ApiError as exc:
                return exc.status, exc.body, {}
            return status, answer, {}
        return 404, {"message": "404: Not Found", "code": 0}, {}

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        fault = next((f for f in self._faults if f.method == method and re.search(f.path_regex, path)), None)
        if fault is not None:
            self._faults.remove(fault)
        return fault

    async def _unknown(self, request: web.Request) -> web.Response:
        return json_response({"message": "404: Not Found", "code": 0}, 404)

    async def _serve_cdn(self, request: web.Request) -> web.Response:
        fault = self._take_fault("GET", request.path)
        stored = self._cdn.get(request.path)
        status = fault.status if fault else 200 if stored else 404
        self.calls.append(RestCall("GET", request.path, None, [], dict(request.query), status))
        await self._notify()
        if stored is None or fault is not None:
            return web.Response(status=status, text="Not Found")
        return web.Response(body=stored[0], content_type=stored[1])

    async def _get_me(self, req: _Request) -> tuple[int, Any]:
        return 200, self.bot_user.payload() | {"verified": True, "flags": 0, "mfa_enabled": False}

    async def _get_application(self, req: _Request) -> tuple[int, Any]:
        return 200, {"id": self.app_id, "name": "pixbot", "description": "", "icon": None, "bot_public": True,
                     "bot_require_code_grant": False, "owner": self.alice.payload(), "verify_key": "0" * 64,
                     "flags": 0, "team": None, "summary": "", "rpc_origins": []}

    async def _get_gateway(self, req: _Request) -> tuple[int, Any]:
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return 200, {"url": self.gateway_url, "shards": self.recommended_shards, "session_start_limit": limit}

    def _command_store(self, req: _Request) -> tuple[dict[str, Json], str | None]:
        if req.params["app"] != self.app_id:
            raise ApiError(403, 50001, "Missing Access")
        guild = req.params.get("guild")
        if guild is None:
            return self.global_commands, None
        if guild not in {g.id for g in self.guilds}:
            raise ApiError(404, 10004, "Unknown Guild")
        return self.guild_commands.setdefault(guild, {}), guild

    async def _get_commands(self, req: _Request) -> tuple[int, Any]:
        return 200, list(self._command_store(req)[0].values())

    async def _put_commands(self, req: _Request) -> tuple[int, Any]:
        """Bulk overwrite: same (type, name) keeps its id, as on Discord. Context menus get a
        `description` of "" (discord.py reads it for every returned command)."""
        store, guild = self._command_store(req)
        old_ids = {(c["type"], c["name"]): cid for cid, c in store.items()}
        store.clear()
        for sent in req.json or []:
            kind = sent.get("type", 1)
            cid = old_ids.get((kind, sent["name"])) or self._snowflake()
            store[cid] = {"options": [], "default_member_permissions": None, "nsfw": False, **sent, "id": cid,
                          "application_id": self.app_id, "type": kind, "version": self._snowflake(),
                          "description": sent.get("description", "")} | ({"guild_id": guild} if guild else {})
        return 200, list(store.values())

    def _guild_of(self, channel_id: str) -> FakeGuild | None:
        return next((g for g in self.guilds if g.channel_id == channel_id), None)

    def _channel(self, channel_id: str) -> Json:
        guild = self._guild_of(channel_id)
        if guild is None:
            raise ApiError(404, 10003, "Unknown Channel")
        return channel_payload(channel_id, guild.id)

    async def _get_channel(self, req: _Request) -> tuple[int, Any]:
        return 200, self._channel(req.params["channel"])

    def _channel_message(self, req: _Request) -> Json:
        self._channel(req.params["channel"])
        msg = self._messages.get(req.params["message"])
        if msg is None or msg["channel_id"] != req.params["channel"] or _hidden(msg):
            raise ApiError(404, 10008, "Unknown Message")
        return msg

    async def _post_message(self, req: _Request) -> tuple[int, Any]:
        """The bot's own message; Discord echoes it as MESSAGE_CREATE, and so does the fake."""
        channel = self._channel(req.params["channel"])
        channel_id = channel["id"]
        self._check_size(req.files, self.filesize_limit)
        body = req.json or {}
        attachments = await self._new_attachments(channel_id, body, req)
        msg = self._new_message(channel_id, self.bot_user, body, attachments)
        if ref := body.get("message_reference"):
            target = self._messages.get(str(ref.get("message_id")))
            if target is None and ref.get("fail_if_not_exists", True):
                raise ApiError(400, 50035, "Invalid Form Body: Unknown message")
            if target is not None:
                msg |= reply_fields(target, channel["guild_id"])
        return 200, await self._publish(msg)

    async def _get_message(self, req: _Request) -> tuple[int, Any]:
        intents = self._sessions[-1].intents if self._sessions else MESSAGE_CONTENT
        return 200, visible_to(self._channel_message(req), intents, self.app_id)

    async def _patch_message(self, req: _Request) -> tuple[int, Any]:
        msg = self._channel_message(req)
        if msg["author"]["id"] != self.app_id:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        self._check_size(req.files, self.filesize_limit)
        return 200, await self._edit(msg, req)

    async def _delete_message(self, req: _Request) -> tuple[int, Any]:
        await self._remove(self._channel_message(req))
        return 204, None

    async def _typing(self, req: _Request) -> tuple[int, Any]:
        self._channel(req.params["channel"])
        return 204, None

    async def _callback(self, req: _Request) -> tuple[int, Any]:
        """The initial response, once per interaction; `?with_response=1` gets the callback resource."""
        rec = next((i for i in self.interactions if i.id == req.params["interaction"]), None)
        if rec is None or rec.token != req.params["token"] or rec.expired:
            raise ApiError(404, 10062, "Unknown interaction")
        if rec.acked:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        kind, data = (req.json or {}).get("type"), (req.json or {}).get("data") or {}
        channel_id = rec.payload["channel_id"]
        self._check_size(req.files, rec.attachment_size_limit)
        msg: Json | None = None
        if kind in (4, 5):  # message, or deferred "thinking…" placeholder
            rec.flags = int(data.get("flags") or 0) & EPHEMERAL
            body = data if kind == 4 else {"flags": rec.flags | LOADING}
            attachments = await self._new_attachments(channel_id, body, req) if kind == 4 else []
            msg = await self._publish(self._new_message(channel_id, self.bot_user, body, attachments, rec))
        elif kind in (6, 7) and "message" in rec.payload:  # component: (deferred) update of its message
            msg = self._messages.get(rec.payload["message"]["id"])
            if msg is None:
                raise ApiError(404, 10008, "Unknown Message")
            if kind == 7:
                await self._edit(msg, _Request(req.path, req.params, req.query, data, req.files))
        elif kind == 9:
            rec.modal = data
        else:
            raise ApiError(400, 50035, f"Invalid Form Body: response type {kind} is not valid here")
        rec.response_type, rec.original = kind, msg
        if req.query.get("with_response") not in _TRUE:
            return 204, None
        answer: Json = {"interaction": {"id": rec.id, "type": rec.type, "response_message_loading": kind == 5,
                                        "response_message_id": msg and msg["id"],
                                        "response_message_ephemeral": rec.ephemeral}}
        if msg is not None:
            answer["resource"] = {"type": kind} | ({"message": msg} if kind != 6 else {})
        return 200, answer

    def _webhook_interaction(self, req: _Request) -> FakeInteraction:
        rec = next((i for i in self.interactions if i.token == req.params["token"]), None)
        if rec is None or req.params["app"] != self.app_id:
            raise ApiError(404, 10015, "Unknown Webhook")
        if rec.expired:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        return rec

    def _webhook_message(self, req: _Request) -> tuple[FakeInteraction, Json]:
        rec = self._webhook_interaction(req)
        wanted = req.params["message"]
        msg = rec.original if wanted == "@original" else next(
            (m for m in [rec.original, *rec.followups] if m is not None and m["id"] == wanted), None)
        if msg is None or msg["id"] not in self._messages:
            raise ApiError(404, 10008, "Unknown Message")
        return rec, msg

    async def _followup(self, req: _Request) -> tuple[int, Any]:
        rec = self._webhook_interaction(req)
        if not rec.acked:
            raise ApiError(404, 10015, "Unknown Webhook")  # followups need the initial response first
        self._check_size(req.files, rec.attachment_size_limit)
        body, channel_id = req.json or {}, rec.payload["channel_id"]
        attachments = await self._new_attachments(channel_id, body, req)
        msg = await self._publish(self._new_message(channel_id, self.bot_user, body, attachments, rec))
        rec.followups.append(msg)
        return (200, msg) if req.query.get("wait") in _TRUE else (204, None)

    async def _get_webhook_message(self, req: _Request) -> tuple[int, Any]:
        return 200, self._webhook_message(req)[1]

    async def _patch_webhook_message(self, req: _Request) -> tuple[int, Any]:
        rec, msg = self._webhook_message(req)
        self._check_size(req.files, rec.attachment_size_limit)
        return 200, await self._edit(msg, req)

    async def _delete_webhook_message(self, req: _Request) -> tuple[int, Any]:
        rec, msg = self._webhook_message(req)
        await self._remove(msg)
        if msg is rec.original:
            rec.original = None
        return 204, None

    def _new_message(self, channel_id: str, author: FakeUser, body: Json, attachments: list[Json],
                     interaction: FakeInteraction | None = None, *,
                     mentions: Iterable[FakeUser] = ()) -> Json:
        content = body.get("content") or ""
        mentioned = {u.id: u for u in mentions} | {
            u.id: u for u in self.members if re.search(rf"<@!?{u.id}>", content)}
        guild_id = self._channel(channel_id)["guild_id"]
        msg = message_payload(self._snowflake(), channel_id, guild_id, author, body, attachments,
                              list(mentioned.values()))
        msg["member"]["roles"] = list(self.member_roles.get(author.id, []))
        if interaction is not None:
            command_type = interaction.payload["data"].get("type") if interaction.type == 2 else None
            msg |= {"webhook_id": self.app_id, "application_id": self.app_id,
                    "type": {1: 20, 2: 23, 3: 23}.get(command_type or 0, 0),  # CHAT_INPUT, CONTEXT_MENU
                    "interaction_metadata": {"id": interaction.id, "type": interaction.type,
                                             "user": interaction.user.payload(),
                                             "authorizing_integration_owners": {"0": guild_id}}}
        return msg

    async def _publish(self, msg: Json) -> Json:
        self._messages[msg["id"]] = msg
        if not _hidden(msg):
            await self._dispatch("MESSAGE_CREATE", msg, intent=GUILD_MESSAGES, guild_id=msg["guild_id"])
        return msg

    async def _edit(self, msg: Json, req: _Request) -> Json:
        """Apply a PATCH body in place; its `attachments` lists the ones to keep plus new `files[n]`."""
        body = req.json or {}
        for key, empty in (("content", ""), ("embeds", []), ("components", [])):
            if key in body:
                msg[key] = body[key] if body[key] is not None else empty
        if "attachments" in body or req.files:
            kept = {a["id"]: a for a in msg["attachments"]}
            entries = body.get("attachments") or []
            old = [kept[str(e["id"])] for e in entries if str(e.get("id")) in kept]
            new_entries = [e for e in entries if str(e.get("id")) not in kept]
            new = await self._new_attachments(msg["channel_id"], {"attachments": new_entries}, req)
            msg["attachments"] = (old + new) if "attachments" in body else msg["attachments"] + new
        msg["flags"] = (msg["flags"] & ~LOADING) | (int(body.get("flags") or 0) & ~EPHEMERAL)
        msg["edited_timestamp"] = now_iso()
        if not _hidden(msg):
            await self._dispatch("MESSAGE_UPDATE", msg, intent=GUILD_MESSAGES, guild_id=msg["guild_id"])
        return msg

    async def _remove(self, msg: Json) -> None:
        del self._messages[msg["id"]]
        if not _hidden(msg):
            event = {"id": msg["id"], "channel_id": msg["channel_id"], "guild_id": msg["guild_id"]}
            await self._dispatch("MESSAGE_DELETE", event, intent=GUILD_MESSAGES, guild_id=msg["guild_id"])

    def _check_size(self, files: list[UploadedFile], limit: int) -> None:
        if sum(len(f.data) for f in files) > limit:
            raise ApiError(413, 40005, "Request entity too large")

    async def _new_attachments(self, channel_id: str, body: Json, req: _Request) -> list[Json]:
        """Attachments for the `files[n]` parts, in the order of the payload's `attachments` entries."""
        by_index = {f.index: f for f in req.files}
        entries = body.get("attachments") or [{"id": f.index} for f in req.files]
        result = []
        for entry in entries:
            upload = by_index.get(int(entry["id"]))
            if upload is None:
                raise ApiError(400, 50035, f"Invalid Form Body: no files[{entry['id']}] part")
            name = entry.get("filename") or upload.filename
            result.append(await self._attachment(channel_id, upload, name, entry.get("description")))
        return result

    async def _attachment(self, channel_id: str, upload: UploadedFile, filename: str | None = None,
                          description: str | None = None) -> Json:
        """Store the bytes on the fake CDN; like Discord, derive content type and size from the bytes."""
        attachment_id, filename = self._snowflake(), filename or upload.filename
        path = f"/attachments/{channel_id}/{attachment_id}/{filename}"
        probe = await asyncio.to_thread(probe_image, upload.data)
        ctype = probe[0] if probe else mimetypes.guess_type(filename)[0] or "application/octet-stream"
        self._cdn[path] = (upload.data, ctype)
        url = self.base_url + path
        attachment: Json = {"id": attachment_id, "filename": filename, "size": len(upload.data), "url": url,
                            "proxy_url": url, "content_type": ctype}
        if probe:
            attachment |= {"width": probe[1], "height": probe[2]}
        if description:
            attachment["description"] = description
        return attachment

    def _command(self, name: str, kind: int, guild_id: str) -> tuple[Json, str | None]:
        """The synced command and its scope (guild id, or None for global); guild commands win."""
        for scope, store in ((guild_id, self.guild_commands.get(guild_id, {})), (None, self.global_commands)):
            for command in store.values():
                if command["name"] == name and command["type"] == kind:
                    return command, scope
        raise LookupError(f"command {name!r} (type {kind}) was never synced by the bot")

    async def _option(self, defined: Json, value: Any, resolved: Json, channel_id: str) -> Json:
        kind = defined["type"]
        if kind == 11:  # attachment: uploaded by the user, described in data.resolved
            filename, data = value
            attachment = await self._attachment(channel_id, UploadedFile(0, filename, data, ""))
            resolved.setdefault("attachments", {})[attachment["id"]] = attachment
            value = attachment["id"]
        elif kind == 6:
            resolved.setdefault("users", {})[value.id] = value.payload()
            resolved.setdefault("members", {})[value.id] = member_payload(permissions=True)
            value = value.id
        elif kind in _OPTION_TYPES:
            value = _OPTION_TYPES[kind](value)
        else:
            raise ValueError(f"option type {kind} is not modelled by the fake")
        choices = [c["value"] for c in defined.get("choices") or []]
        if choices and value not in choices:
            raise ValueError(f"{defined['name']}={value!r} is not one of the choices {choices}")
        return {"name": defined["name"], "type": kind, "value": value}

    async def _interact(self, user: FakeUser, kind: int, data: Json, *, guild: FakeGuild,
                        message: Json | None = None, size_limit: int | None = None) -> FakeInteraction:
        """Send the interaction on the gateway session of the guild's shard (RuntimeError if none is up)."""
        if not any(s.owns(guild.id) for s in self._sessions):
            shards = ", ".join(f"{i}/{n}" for i, n in self.connected_shards()) or "none"
            raise RuntimeError(f"no bot is connected to the fake gateway on the shard of guild {guild.id} "
                               f"(connected shards: {shards})")
        interaction_id = self._snowflake()
        limit = size_limit if size_limit is not None else self.filesize_limit
        payload: Json = {
            "id": interaction_id, "application_id": self.app_id, "type": kind, "data": data,
            "token": f"itok.{interaction_id}.{secrets.token_urlsafe(16)}", "version": 1,
            "guild_id": guild.id, "guild": {"id": guild.id, "locale": "en-US", "features": []},
            "channel_id": guild.channel_id, "channel": channel_payload(guild.channel_id, guild.id),
            "member": member_payload(user, permissions=True, roles=self.member_roles.get(user.id)),
            "locale": "en-US", "guild_locale": "en-US",
            "app_permissions": MEMBER_PERMISSIONS, "entitlements": [], "context": 0,
            "authorizing_integration_owners": {"0": guild.id}, "attachment_size_limit": limit,
        }
        if message is not None:
            payload["message"] = message
        rec = FakeInteraction(interaction_id, payload["token"], kind, user, payload, limit)
        self.interactions.append(rec)
        sent = await self._dispatch("INTERACTION_CREATE", payload, guild_id=guild.id)
        if sent:
            rec.shard, rec.session_id = sent[0].shard, sent[0].session_id
        await self._notify()
        return rec


def _hidden(msg: Json) -> bool:
    return bool(msg["flags"] & EPHEMERAL)
