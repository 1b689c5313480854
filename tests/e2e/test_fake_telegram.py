"""The fake Telegram Bot API against the real aiogram Bot and Dispatcher: polling, files, limits, webhooks."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.filters import Command, CommandObject
from aiogram.methods import SendPhoto
from aiogram.types import BotCommand, BufferedInputFile, CallbackQuery, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder
from aiogram.utils.media_group import MediaGroupBuilder
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web
from PIL import Image

from bots.telegram.session import close_bot
from tests.fakes.fake_telegram import ALICE, GROUP, PHOTO_UPLOAD_LIMIT, FakeTelegramServer
from tests.fakes.logcheck import assert_no_error_logs, error_records
from tests.images import png_bytes

SECRET = "s3cret-token_1"


@pytest.fixture(autouse=True)
def _no_aiogram_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Handler exceptions never reach the test: aiogram logs them on `aiogram.event` instead."""
    yield
    assert_no_error_logs(caplog, "aiogram", "aiohttp", "asyncio", "tests.fakes")


@pytest.fixture
async def server() -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer() as fake:
        yield fake


@pytest.fixture
async def bot(server: FakeTelegramServer) -> AsyncIterator[Bot]:
    bot = Bot(server.token, session=AiohttpSession(api=TelegramAPIServer.from_base(server.base_url)))
    yield bot
    await close_bot(bot)  # skips the 250 ms TLS wait of AiohttpSession.close(): most of this file's run time


@asynccontextmanager
async def polling(server: FakeTelegramServer, bot: Bot, *routers: Router) -> AsyncIterator[Dispatcher]:
    """Run the real Dispatcher's long polling against the fake for the duration of the block."""
    dp = Dispatcher()
    dp.include_routers(*routers)
    task = asyncio.create_task(
        dp.start_polling(bot, handle_signals=False, polling_timeout=1, close_bot_session=False)
    )
    started = asyncio.create_task(server.wait_for("getMe"))  # start_polling holds its lock by then
    try:
        await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await started
        yield dp
    finally:
        started.cancel()
        if not task.done():
            await dp.stop_polling()
        await task  # raises whatever made polling fail


def _image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        return im.size


async def test_start_command_is_answered_with_an_inline_keyboard(
    server: FakeTelegramServer, bot: Bot
) -> None:
    router = Router()

    @router.message(Command("start"))
    async def start(message: Message, command: CommandObject) -> None:
        keyboard = InlineKeyboardBuilder().button(text="Again", callback_data="again").as_markup()
        await message.answer(f"hello {command.args}", reply_markup=keyboard)

    async with polling(server, bot, router):
        sent_by_user = await server.push_text("/start@pixbot_test_bot now")
        (call,) = await server.wait_for("sendMessage")

    assert sent_by_user["entities"] == [{"type": "bot_command", "offset": 0, "length": 22}]
    assert call.params["chat_id"] == ALICE.id and call.params["text"] == "hello now"
    assert call.content_type == "application/x-www-form-urlencoded"
    assert call.result["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "again"
    assert server.sent_messages(ALICE.id) == [call.result]
    assert call.result["message_id"] == sent_by_user["message_id"] + 1
    assert server.pending_updates == []


async def test_photo_handler_downloads_largest_size_and_replies_with_a_photo(
    server: FakeTelegramServer, bot: Bot
) -> None:
    router = Router()

    @router.message(F.photo)
    async def on_photo(message: Message, bot: Bot) -> None:
        assert message.photo is not None
        downloaded = await bot.download(message.photo[-1])
        assert downloaded is not None
        data = downloaded.read()
        width, height = await asyncio.to_thread(_image_size, data)
        await message.reply_photo(BufferedInputFile(data, filename="echo.jpg"), caption=f"{width}x{height}")

    @router.message(F.reply_to_message.photo)
    async def on_reply(message: Message) -> None:
        assert message.reply_to_message is not None and message.reply_to_message.photo
        await message.answer(f"editing {message.reply_to_message.photo[-1].file_id}")

    original = png_bytes(1000, 600)
    async with polling(server, bot, router):
        user_photo = await server.push_photo(original, caption="mine")
        (send_photo,) = await server.wait_for("sendPhoto")
        await server.push_text("make it grey", reply_to=send_photo.result)
        (answer,) = await server.wait_for("sendMessage")

    sizes = user_photo["photo"]
    assert [s["width"] for s in sizes] == [90, 320, 800, 1000] and sizes[-1]["height"] == 600
    (get_file,) = server.calls_of("getFile")
    assert get_file.params["file_id"] == sizes[-1]["file_id"]
    upload = send_photo.uploads[send_photo.params["photo"].removeprefix("attach://")]
    assert upload.filename == "echo.jpg"
    assert upload.data == server.file_bytes(sizes[-1]["file_id"]) != original  # Telegram re-encodes
    assert send_photo.params["caption"] == "1000x600"
    assert send_photo.params["reply_parameters"]["message_id"] == user_photo["message_id"]
    assert send_photo.result["reply_to_message"] == user_photo
    assert answer.params["text"] == f"editing {send_photo.result['photo'][-1]['file_id']}"


async def test_media_group_of_three_photos_has_the_caption_on_the_first(
    server: FakeTelegramServer, bot: Bot
) -> None:
    album = MediaGroupBuilder(caption="three cats")
    for i in range(3):
        album.add_photo(media=BufferedInputFile(png_bytes(64 + i, 64), filename=f"cat{i}.png"))

    media = album.build()
    messages = await bot.send_media_group(ALICE.id, media)  # type: ignore[arg-type]  # aiogram: list invariance

    (call,) = server.calls_of("sendMediaGroup")
    assert call.content_type == "multipart/form-data" and len(call.uploads) == 3
    parts = [item["media"].removeprefix("attach://") for item in call.params["media"]]
    assert sorted(parts) == sorted(call.uploads)
    assert [m.caption for m in messages] == ["three cats", None, None]
    assert len({m.media_group_id for m in messages}) == 1 and messages[0].media_group_id
    assert all(m.photo and m.photo[-1].width == 64 + i for i, m in enumerate(messages))
    first_photo = messages[0].photo
    assert first_photo is not None
    again = await bot.send_photo(ALICE.id, first_photo[-1].file_id)
    assert again.photo == messages[0].photo
    with pytest.raises(TelegramBadRequest, match="can't use file of type Photo as Document"):
        await bot.send_document(ALICE.id, first_photo[0].file_id)


async def test_429_from_fail_next_raises_retry_after(server: FakeTelegramServer, bot: Bot) -> None:
    server.fail_next("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3)

    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(ALICE.id, "first")
    await bot.send_message(ALICE.id, "second")

    assert caught.value.retry_after == 3
    calls = server.calls_of("sendMessage")
    assert [(c.status, c.params["text"]) for c in calls] == [(429, "first"), (200, "second")]
    assert [m["text"] for m in server.sent_messages(ALICE.id)] == ["second"]


async def test_photo_limits_match_telegram(server: FakeTelegramServer, bot: Bot) -> None:
    too_big = BufferedInputFile(b"\0" * (PHOTO_UPLOAD_LIMIT + 1), filename="big.png")
    with pytest.raises(TelegramEntityTooLarge):
        await bot.send_photo(ALICE.id, too_big)
    with pytest.raises(TelegramBadRequest, match="IMAGE_PROCESS_FAILED"):
        await bot.send_photo(ALICE.id, BufferedInputFile(png_bytes()[:-40], filename="cut.png"))
    with pytest.raises(TelegramBadRequest, match="PHOTO_INVALID_DIMENSIONS"):
        await bot.send_photo(ALICE.id, BufferedInputFile(png_bytes(2100, 100), filename="wide.png"))
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_photo(999, BufferedInputFile(png_bytes(), filename="ok.png"))
    assert [c.status for c in server.calls_of("sendPhoto")] == [413, 400, 400, 400]
    assert server.sent_messages(ALICE.id) == []


async def test_documents_keep_their_bytes_and_get_file_refuses_over_20_mb(
    server: FakeTelegramServer, bot: Bot
) -> None:
    pdf = b"%PDF-1.4 not really"
    sent = await server.push_document(pdf, "notes.pdf", caption="read this")
    big = await server.push_document(b"x" * (20 * 1024 * 1024 + 1), "huge.bin")
    original = png_bytes(30, 20)

    doc = sent["document"]
    assert (doc["file_name"], doc["mime_type"], doc["file_size"]) == ("notes.pdf", "application/pdf", 19)
    downloaded = await bot.download(doc["file_id"])
    assert downloaded is not None and downloaded.read() == pdf
    with pytest.raises(TelegramBadRequest, match="file is too big"):
        await bot.get_file(big["document"]["file_id"])
    mine = await bot.send_document(ALICE.id, BufferedInputFile(original, filename="orig.png"), caption="png")
    assert mine.document is not None and mine.document.mime_type == "image/png"
    assert mine.document.file_name == "orig.png" and mine.caption == "png"
    roundtrip = await bot.download(mine.document.file_id)
    assert roundtrip is not None and roundtrip.read() == original


async def test_get_updates_honours_offset_limit_allowed_updates_and_long_polling(
    server: FakeTelegramServer, bot: Bot
) -> None:
    for text in ("one", "two", "three"):
        await server.push_text(text)

    first = await bot.get_updates(limit=2)
    rest = await bot.get_updates(offset=first[-1].update_id + 1)
    assert [u.message.text for u in first + rest if u.message] == ["one", "two", "three"]

    sent = await server.push_text("button please")
    await server.push_callback(sent, "cb")
    only_messages = await bot.get_updates(offset=rest[-1].update_id + 1, allowed_updates=["message"])
    assert [u.event_type for u in only_messages] == ["message"]
    assert [next(iter(u.keys() - {"update_id"})) for u in server.dropped_updates] == ["callback_query"]

    waiting = asyncio.create_task(bot.get_updates(offset=only_messages[-1].update_id + 1, timeout=5))
    await server.wait_until(lambda: server.polls_waiting == 1, what="a blocked long poll")
    group_msg = await server.push_text("🎨 @pixbot_test_bot hi", chat=GROUP)
    (woken,) = await waiting
    assert woken.message is not None and woken.message.chat.type == "supergroup"
    assert group_msg["entities"] == [{"type": "mention", "offset": 3, "length": 16}]  # UTF-16 offsets

    last_poll = asyncio.create_task(bot.get_updates(offset=woken.update_id + 1, timeout=30))
    await server.wait_until(lambda: server.polls_waiting == 1, what="a blocked long poll")
    await server.stop()  # must wake the poll, or aiohttp's cleanup would cut it off after 1 s
    assert await last_poll == []


async def test_wrong_token_unknown_method_and_commands(server: FakeTelegramServer, bot: Bot) -> None:
    stranger = Bot("999:wrong", session=AiohttpSession(api=TelegramAPIServer.from_base(server.base_url)))
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await stranger.get_me()
    finally:
        await close_bot(stranger)
    async with aiohttp.ClientSession() as http:
        api = f"{server.base_url}/bot{server.token}"
        async with http.post(f"{api}/sendDice", data={"chat_id": "111"}) as resp:
            not_found = {"ok": False, "error_code": 404, "description": "Not Found"}
            assert (resp.status, await resp.json()) == (404, not_found)
        async with http.post(f"{api}/SENDMESSAGE",
                             json={"chat_id": 111, "text": "json body"}) as resp:
            assert resp.status == 200 and (await resp.json())["result"]["text"] == "json body"

    assert await bot.set_my_commands([BotCommand(command="imagine", description="Draw something")])
    assert [c.command for c in await bot.get_my_commands()] == ["imagine"]
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Bad Name", description="x")])
    assert await bot.send_chat_action(ALICE.id, "upload_photo")
    status = await bot.send_message(ALICE.id, "Generating…")
    assert await bot.delete_message(ALICE.id, status.message_id)
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(ALICE.id, status.message_id)


async def test_callback_query_round_trip(server: FakeTelegramServer, bot: Bot) -> None:
    router = Router()

    @router.message(Command("start"))
    async def start(message: Message) -> None:
        keyboard = InlineKeyboardBuilder().button(text="Again", callback_data="again").as_markup()
        await message.answer("pick one", reply_markup=keyboard)

    @router.callback_query(F.data == "again")
    async def again(callback: CallbackQuery) -> None:
        await callback.answer("working")
        assert isinstance(callback.message, Message)
        await callback.message.edit_text("done")

    async with polling(server, bot, router):
        await server.push_text("/start")
        (sent,) = await server.wait_for("sendMessage")
        query = await server.push_callback(sent.result, "again")
        (edit,) = await server.wait_for("editMessageText")

    (answer,) = server.calls_of("answerCallbackQuery")
    assert answer.params == {"callback_query_id": query["id"], "text": "working"}
    assert edit.params["message_id"] == sent.result["message_id"]
    now = server.message(ALICE.id, sent.result["message_id"])
    assert now is not None and now["text"] == "done"
    assert "reply_markup" not in now  # an edit without reply_markup drops the keyboard, as in Telegram
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query["id"])  # answered already


@pytest.mark.parametrize("in_background", [True, False], ids=["background", "reply-with-method"])
async def test_webhook_mode_delivers_updates_and_runs_returned_methods(
    server: FakeTelegramServer, bot: Bot, in_background: bool
) -> None:
    router = Router()

    @router.message(Command("start"))
    async def start(message: Message) -> SendPhoto | None:
        photo = message.answer_photo(BufferedInputFile(png_bytes(), filename="pong.png"), caption="pong")
        if in_background:
            await photo
            return None
        return photo  # aiogram puts the method, file included, into the webhook's HTTP response

    dp = Dispatcher()
    dp.include_router(router)
    async with _webhook_app(dp, bot, secret=SECRET, in_background=in_background) as url:
        assert await bot.set_webhook(url, secret_token=SECRET)
        with pytest.raises(TelegramConflictError):
            await bot.get_updates()
        await server.push_text("/start")
        (delivery,) = await server.wait_for_deliveries()
        (call,) = await server.wait_for("sendPhoto")
        info = await bot.get_webhook_info()
        assert await bot.delete_webhook(drop_pending_updates=True)

    assert delivery.status == 200 and delivery.error is None
    assert call.ok and call.params["caption"] == "pong" and call.params["chat_id"] == ALICE.id
    assert call.content_type == "multipart/form-data"
    assert call.uploads[call.params["photo"].removeprefix("attach://")].filename == "pong.png"
    assert [m["caption"] for m in server.sent_messages(ALICE.id)] == ["pong"]
    # In reply mode no API request was made: the fake ran the method found in the webhook's response.
    assert call.source == ("http" if in_background else "webhook_reply")
    assert server.calls_of("sendPhoto") == [call] and call.result["photo"][-1]["width"] == 64
    assert info.url == url and info.pending_update_count == 0 and info.last_error_message is None
    assert await bot.get_updates() == []


async def test_webhook_with_the_wrong_secret_is_rejected(server: FakeTelegramServer, bot: Bot) -> None:
    router = Router()

    @router.message()
    async def anything(message: Message) -> None:
        await message.answer("must not happen")

    dp = Dispatcher()
    dp.include_router(router)
    async with _webhook_app(dp, bot, secret=SECRET, in_background=True) as url:
        assert await bot.set_webhook(url, secret_token="not-the-secret")
        await server.push_text("hello")
        (delivery,) = await server.wait_for_deliveries()
        info = await bot.get_webhook_info()

    assert delivery.status == 401 and delivery.error is not None
    assert info.last_error_message is not None and "401" in info.last_error_message
    assert server.calls_of("sendMessage") == []


@asynccontextmanager
async def _webhook_app(dp: Dispatcher, bot: Bot, *, secret: str, in_background: bool) -> AsyncIterator[str]:
    """The bot's own webhook server on 127.0.0.1:0, as production would run it; yields its URL."""
    app = web.Application()
    SimpleRequestHandler(dispatcher=dp, bot=bot, secret_token=secret,
                         handle_in_background=in_background).register(app, path="/tg/webhook")
    setup_application(app, dp, bot=bot)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/tg/webhook"
    finally:
        await close_bot(bot)  # setup_application's shutdown hook would close it, slowly
        await runner.cleanup()


class _RecordSeen(logging.Handler):
    """Sets an event when a record at ERROR or above arrives (logging runs on the loop's thread)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.set()


async def test_a_failing_handler_is_caught_by_the_log_check(
    server: FakeTelegramServer, bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    router = Router()

    @router.message()
    async def broken(message: Message) -> None:
        raise RuntimeError("handler blew up")

    watcher = _RecordSeen()
    logging.getLogger("aiogram.event").addHandler(watcher)
    try:
        async with polling(server, bot, router):
            await server.push_text("boom")
            await asyncio.wait_for(watcher.seen.wait(), timeout=5)
    finally:
        logging.getLogger("aiogram.event").removeHandler(watcher)

    (record,) = error_records(caplog, "aiogram.event")
    assert "Cause exception while process update" in record.getMessage()
    with pytest.raises(pytest.fail.Exception, match="handler blew up"):
        assert_no_error_logs(caplog, "aiogram")
    caplog.clear()  # the autouse check must pass now that the failure was seen
