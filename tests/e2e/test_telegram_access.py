"""Access and fairness end to end: allowFrom (ids, usernames, "*"), groupPolicy, and the service's quota and
per-chat concurrency refusals shown plainly. Refused users never cause a provider call."""

from __future__ import annotations

from bots.telegram.access import REFUSAL
from bots.telegram.keyboards import Again
from tests.e2e.telegram_support import TelegramHarness
from tests.fakes.fake_telegram import ALICE, BOB, GROUP

pytest_plugins = ["tests.e2e.telegram_fixtures"]


async def test_users_outside_allow_from_are_refused_without_a_provider_call(tg: TelegramHarness) -> None:
    await tg.start(telegram={"allowFrom": ["@bob"]})
    await tg.server.push_text("/imagine a fox")
    (refusal,) = await tg.server.wait_for("sendMessage")
    await tg.server.push_text("/imagine a fox", user=BOB)
    (photo,) = await tg.server.wait_for("sendPhoto")
    await tg.server.push_callback(photo.result, Again(artifact_id="img_000000000000").pack())  # alice clicks
    (alert,) = await tg.server.wait_for("answerCallbackQuery")
    await tg.stop()

    assert refusal.params["text"] == REFUSAL and refusal.params["chat_id"] == ALICE.id
    assert photo.params["chat_id"] == BOB.id
    assert alert.params["text"] == REFUSAL and alert.params["show_alert"] is True
    assert len(tg.provider.requests) == 1  # bob's only


async def test_allow_from_takes_numeric_ids(tg: TelegramHarness) -> None:
    await tg.start(telegram={"allowFrom": [ALICE.id]})
    await tg.server.push_text("/imagine a fox")
    await tg.server.wait_for("sendPhoto")
    await tg.server.push_text("/imagine a fox", user=BOB)
    (refusal,) = await tg.server.wait_for("sendMessage")
    assert refusal.params["chat_id"] == BOB.id and refusal.params["text"] == REFUSAL
    assert len(tg.provider.requests) == 1


async def test_in_groups_the_bot_answers_commands_mentions_and_replies_to_itself_only(tg: TelegramHarness) -> None:
    await tg.start(telegram={"allowFrom": ["alice"]})
    await tg.server.push_text("what a nice day", chat=GROUP)
    await tg.server.push_text("/imagine@other_bot a fox", chat=GROUP)
    await tg.server.push_text("@pixbot_test_bot a heron by a lake", chat=GROUP, user=BOB)  # not allowed: refused
    await tg.server.push_text("@pixbot_test_bot a heron by a lake", chat=GROUP)
    (heron,) = await tg.server.wait_for("sendPhoto")
    await tg.server.push_text("make it night", chat=GROUP, reply_to=heron.result)  # a reply to the bot
    (_, night) = await tg.server.wait_for("sendPhoto", 2)
    await tg.server.push_text("nice one", chat=GROUP, user=BOB, reply_to=night.result)  # bob: refused
    await tg.server.wait_for("sendMessage", 2)
    await tg.stop()

    assert heron.params["caption"] == "a heron by a lake"
    assert night.params["caption"].startswith("make it night\n✏️ Edited")
    assert [c.params["text"] for c in tg.server.calls_of("sendMessage")] == [REFUSAL, REFUSAL]
    assert len(tg.provider.requests) == 2


async def test_open_group_policy_takes_every_message(tg: TelegramHarness) -> None:
    await tg.start(telegram={"groupPolicy": "open"})
    await tg.server.push_text("a quiet harbour", chat=GROUP)
    (photo,) = await tg.server.wait_for("sendPhoto")
    assert photo.params["chat_id"] == GROUP.id and photo.params["caption"] == "a quiet harbour"


async def test_daily_quota_refusal_says_when_it_resets(tg: TelegramHarness) -> None:
    await tg.start(limits={"perUserDaily": 2})
    await tg.server.push_text("/imagine two birds --n 2")
    await tg.server.wait_for("sendMediaGroup")
    await tg.server.push_text("/imagine one more bird")
    (_, refusal) = await tg.server.wait_for("sendMessage", 2)  # the album's buttons, then the refusal
    await tg.stop()

    assert refusal.params["text"].startswith("You have used your 2 images for today: the quota resets at "
                                             "midnight UTC (in ")
    assert len(tg.provider.requests) == 2


async def test_the_quota_refusal_counts_what_is_left_against_what_was_asked(tg: TelegramHarness) -> None:
    await tg.start(limits={"perUserDaily": 3})
    await tg.server.push_text("/imagine two birds --n 2")
    await tg.server.wait_for("sendMediaGroup")
    await tg.server.push_text("/imagine two more birds --n 2")
    (_, refusal) = await tg.server.wait_for("sendMessage", 2)
    await tg.stop()

    assert refusal.params["text"].startswith("You have 1 image left today (you asked for 2). Ask for 1 or "
                                             "fewer, or wait: the quota resets at midnight UTC (in ")
    assert len(tg.provider.requests) == 2


async def test_per_chat_concurrency_refusal_is_shown_plainly(tg: TelegramHarness) -> None:
    await tg.start(limits={"perChatJobs": 1})
    tg.provider.hold()
    await tg.server.push_text("/imagine a slow one")
    await tg.provider.wait_for_requests(1)
    await tg.server.push_text("/imagine an impatient one")
    (refusal,) = await tg.server.wait_for("sendMessage")
    tg.provider.release()
    await tg.server.wait_for("sendPhoto")

    assert "already has 1 jobs running" in refusal.params["text"] and "cancel it" in refusal.params["text"]
    assert len(tg.provider.requests) == 1
