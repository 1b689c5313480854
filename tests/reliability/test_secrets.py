"""Secrets never leave: API keys, extra-header secrets and bot tokens appear in no log record (DEBUG
included), no user-facing error, no ledger entry and no CLI output, even when a provider echoes them
back in its error bodies, and even when an echo straddles the point where a body is cut for the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

import pytest

from core.config import PROVIDER_NAMES
from core.models import ChatRef, ImageRequest
from providers.registry import PROVIDERS
from tests.e2e.cli_support import Cli
from tests.fakes.fake_provider import Answer, FakeProvider
from tests.reliability.conftest import FAST_RETRY, KEY, Harness

HEADER_SECRET = "hdr-Vb6Np1Qs4Wd8Ke3J"
TELEGRAM_TOKEN = "123456789:AAFake-Tg_TokenXyZ0987654321abcdEFGH"
DISCORD_TOKEN = "MTIzNDU2Nzg5.Gq1Xy2.FakeDiscordTokenValue0123456789"
SECRETS = (KEY, HEADER_SECRET, TELEGRAM_TOKEN, DISCORD_TOKEN)
WINDOW = 8  # no 8 consecutive characters of a secret may show: a cut-off prefix is a leak too
CHAT = ChatRef("telegram", "100", "7")


def leaks(text: str, secrets: Iterable[str] = SECRETS) -> list[str]:
    """Every piece of a secret (``WINDOW`` characters or more) found in ``text``."""
    return [s[i : i + WINDOW] for s in secrets for i in range(len(s) - WINDOW + 1) if s[i : i + WINDOW] in text]


def echo(filler: int) -> str:
    """A body that repeats both secrets, the first one starting ``filler`` characters in."""
    return "e" * filler + f"{KEY} (and header {HEADER_SECRET})"


def faults() -> dict[str, Answer]:
    """What one job after another meets: each answer echoes the secrets somewhere."""
    return {
        "401 echoing the key": Answer(401, {"error": {"message": f"Incorrect API key provided: {KEY}",
                                                      "code": "invalid_api_key"}}),
        "429": Answer(429, f"Too many requests for key={KEY}; Authorization: Bearer {KEY}"),
        "500": Answer(500, {"error": f"upstream said: X-Api-Token: {HEADER_SECRET}"}),
        # Bodies are cut to 500 (HTTP errors, "no images") or 200 (unreadable answers) characters for the
        # log; these put the key across each cut.
        "400 text across the 500 cut": Answer(400, echo(495)),
        "400 JSON message across the 500 cut": Answer(400, {"error": {"message": echo(495), "type": "x"}}),
        "200 error object across the 500 cut": Answer(200, {
            "error": {"message": echo(492)}, "base_resp": {"status_code": 1004, "status_msg": echo(492)},
            "data": {"status": "failed"}}),
        "unreadable 200 across the 200 cut": Answer(200, echo(195), content_type="application/json"),
    }


def provider_config(fake: FakeProvider, name: str) -> dict[str, Any]:
    return {
        "providers": {name: {"apiKey": KEY, "apiBase": fake.api_base(name),
                             "extraHeaders": {"X-Api-Token": HEADER_SECRET}}},
        "tools": {"imageGeneration": {"provider": name, "model": PROVIDERS[name].default_model}},
        "bots": {"telegram": {"enabled": False, "token": TELEGRAM_TOKEN},
                 "discord": {"enabled": False, "token": DISCORD_TOKEN}},
    }


def log_leaks(caplog: pytest.LogCaptureFixture) -> list[str]:
    found = leaks(caplog.text)
    for record in caplog.records:
        found += leaks(record.getMessage()) + leaks(repr(record.args))
    return found


@pytest.mark.parametrize("name", PROVIDER_NAMES)
async def test_provider_errors_that_echo_secrets_are_redacted_everywhere(
    name: str, harness: Harness, fake: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with harness.open_config(harness.config_from(provider_config(fake, name)), FAST_RETRY) as service:
        outcomes = []
        for what, answer in faults().items():
            fake.answers.clear()
            fake.answers.extend([answer] * FAST_RETRY.attempts)  # every attempt, retried or not, meets it
            result = await service.submit(ImageRequest("a lighthouse", CHAT))
            record = await service.jobs.get(result.job_id)
            assert record is not None and record.status == "failed", (name, what, result)  # it did meet it
            outcomes.append((what, [e.to_dict() for e in result.errors], record.error))
    assert leaks(json.dumps(outcomes)) == [], outcomes
    assert log_leaks(caplog) == []


async def test_cli_output_never_shows_a_key_or_token(harness: Harness, fake: FakeProvider) -> None:
    cli = Cli(harness.root, fake)
    raw = provider_config(fake, "custom")
    config = harness.write_config(raw)
    bad_bot = harness.write_config({**raw, "bots": {"telegram": {"token": TELEGRAM_TOKEN, "mode": "webhook"}}},
                                   "bad.json")
    env = {**cli.env, "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "DISCORD_BOT_TOKEN": DISCORD_TOKEN}
    fake.fail_next(401, {"error": {"message": f"Incorrect API key provided: {KEY}"}})
    refused = await cli.run("-vv", "generate", "a fox", "--json", config=config, env=env)
    fake.fail_next(500, echo(495))
    doctor = await cli.run("-vv", "doctor", "--ping", config=config, env=env)
    invalid = await cli.run("generate", "a fox", config=bad_bot, env=env)
    assert (refused.code, invalid.code) == (1, 2), (refused, invalid)
    assert refused.json()["errors"][0]["category"] == "auth" and "DEBUG" in refused.err
    assert "ping: provider_unavailable" in doctor.out and "custom HTTP 500: eeee" in doctor.err, doctor
    assert "webhookUrl" in invalid.err
    for result in (refused, doctor, invalid):
        assert leaks(result.out + result.err) == [], result
