"""The real ``pixbot`` command (python -m bots) end to end against the loopback fake provider.

Each test runs the CLI as a child process (asyncio subprocess, so the in-process fake keeps serving)
in its temp directory with a temp config; docs/cli.md is the contract being checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from core.config import PROVIDER_NAMES
from core.db import SCHEMA_VERSION
from tests.e2e.cli_support import RUN_TIMEOUT, Cli, CliResult, adapter_capabilities, carries_reference
from tests.fakes.fake_provider import FakeProvider
from tests.images import png_bytes

KEY = "sk-e2e-cli"
MODEL = "flux-e2e"
_ID = re.compile(r"img_[0-9a-f]{12}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
POLICY_REFUSAL = {"error": {"message": "Your request was rejected as a result of our safety system.",
                            "type": "invalid_request_error", "code": "content_policy_violation"}}


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(require_key=KEY) as server:
        yield server


@pytest.fixture
def cli(tmp_path: Path, fake: FakeProvider) -> Cli:
    return Cli(tmp_path, fake)


@pytest.fixture
def config(cli: Cli) -> Path:
    """``custom`` on the fake as the default provider; URL answers may be downloaded from loopback."""
    return cli.write_config(cli.provider_config("custom", MODEL, api_key=KEY))


def api_requests(fake: FakeProvider) -> list[str]:
    """Every request except downloads of ``url`` answers."""
    return [f"{r.method} {r.path}" for r in fake.requests if "/files/" not in r.path]


def check_artifact(cli: Cli, artifact: dict[str, Any]) -> bytes:
    """Checks the layout <dataDir>/media/generated/YYYY-MM-DD/img_<12hex>.{png,json}; returns the image."""
    path = Path(artifact["path"])
    assert path.parent.parent == (cli.root / "media" / "generated").resolve()
    assert _DAY.fullmatch(path.parent.name) and path.parent.name == artifact["created_at"][:10]
    assert _ID.fullmatch(artifact["id"]) and path.name == f"{artifact['id']}.png"
    sidecar = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert sidecar == artifact
    data = path.read_bytes()
    assert len(data) == artifact["bytes"]
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and image.size == (artifact["width"], artifact["height"])
    return data


# -- generate -------------------------------------------------------------------------------------
async def test_generate_four_requests_them_at_once_and_stores_each_with_a_sidecar(
    cli: Cli, config: Path, fake: FakeProvider
) -> None:
    fake.hold()
    run = asyncio.create_task(cli.run("generate", "a red fox", "-n", "4", "--json", config=config))
    try:
        await fake.wait_for_requests(4, timeout=RUN_TIMEOUT, path_suffix="/custom/v1/images/generations")
        assert fake.in_flight == 4  # all four parked at the gate together: concurrent, not one by one
    finally:
        fake.release()
    result = await run
    assert result.code == 0, result
    out = result.json()
    assert {"artifacts", "report", "errors"} <= set(out)
    assert out["errors"] == []
    assert len(out["artifacts"]) == 4 and len({a["id"] for a in out["artifacts"]}) == 4
    for artifact in out["artifacts"]:
        check_artifact(cli, artifact)
        assert artifact["prompt"] == "a red fox" and artifact["provider"] == "custom"
        assert artifact["model"] == MODEL and artifact["source_images"] == []
        assert artifact["chat"] == "cli:default" and artifact["job_id"] == out["job_id"]
    assert out["report"]["provider"] == "custom" and out["report"]["model"] == MODEL
    assert out["report"]["applied"] == {"count": 4, "aspect_ratio": "1:1", "size": "1K"}
    bodies = [r.json for r in fake.requests]
    # The seed contract: the default size hint 1K is sent to custom as 1024x1024, one image per call.
    assert all(b["size"] == "1024x1024" and b["n"] == 1 for b in bodies)
    assert all(b["response_format"] == "b64_json" for b in bodies)
    assert fake.max_in_flight == 4 and len(fake.requests) == 4


async def test_one_failed_image_of_two_exits_1_and_lists_the_stored_one(
    cli: Cli, config: Path, fake: FakeProvider
) -> None:
    fake.fail_next(400, POLICY_REFUSAL)
    result = await cli.run("generate", "a red fox", "-n", "2", "--json", config=config)
    assert result.code == 1, result
    out = result.json()
    assert len(out["artifacts"]) == 1
    check_artifact(cli, out["artifacts"][0])
    assert [e["category"] for e in out["errors"]] == ["content_policy"]
    # The user-facing message, never the provider's raw text.
    assert out["errors"][0]["message"] and "safety system" not in out["errors"][0]["message"]
    assert "content_policy" in result.err and "error: image" in result.err
    assert len(api_requests(fake)) == 2  # a refusal is not retried


async def test_busy_provider_is_retried_then_the_fallback_serves(cli: Cli, fake: FakeProvider) -> None:
    raw = cli.provider_config("custom", MODEL, api_key=KEY)
    raw["providers"]["openai"] = {"apiKey": KEY, "apiBase": fake.api_base("openai")}
    raw["tools"]["imageGeneration"]["fallbacks"] = [{"provider": "openai", "model": "gpt-image-1"}]
    config = cli.write_config(raw)
    fake.fail_next(503, headers={"Retry-After": "0"}, times=3, path_suffix="/custom/v1/images/generations")
    result = await cli.run("generate", "a red fox", "--json", config=config)
    assert result.code == 0, result
    out = result.json()
    assert out["errors"] == [] and len(out["artifacts"]) == 1
    check_artifact(cli, out["artifacts"][0])
    assert out["artifacts"][0]["provider"] == "openai" and out["artifacts"][0]["model"] == "gpt-image-1"
    assert any("fell back to openai/gpt-image-1" in note for note in out["report"]["notes"])
    assert len(fake.requests_of("/custom/v1/images/generations")) == 3  # three attempts, then the fallback
    assert len(fake.requests_of("/openai/v1/images/generations")) == 1


async def test_a_prompt_of_exactly_4000_characters_is_accepted(
    cli: Cli, config: Path, fake: FakeProvider
) -> None:
    prompt = ("a fox in the snow " * 300)[:3999] + "!"
    assert len(prompt) == 4000
    result = await cli.run("generate", prompt, "--json", config=config)
    assert result.code == 0, result
    assert [r.json["prompt"] for r in fake.requests] == [prompt]


async def test_bad_input_and_bad_config_exit_2_before_any_provider_call(
    cli: Cli, config: Path, fake: FakeProvider
) -> None:
    not_an_image = cli.root / "notes.png"
    not_an_image.write_text("this is text, not a picture\n", encoding="utf-8")
    good = cli.root / "good.png"
    good.write_bytes(png_bytes(32, 32))
    unknown = cli.provider_config("custom", MODEL, api_key=KEY)
    unknown["tools"]["imageGeneration"]["provider"] = "dalle-magic"
    unset = cli.provider_config("custom", MODEL, api_key="${PIXBOT_E2E_UNSET_KEY}")
    bad_configs = {"unknown": cli.write_config(unknown, "unknown.json"),
                   "unset": cli.write_config(unset, "unset.json")}
    cases: dict[str, tuple[list[str], Path, str]] = {
        "empty prompt": (["generate", ""], config, "prompt is empty"),
        "4001 characters": (["generate", "x" * 4001], config, "4001 characters"),
        "-n 0": (["generate", "a fox", "-n", "0"], config, "1 to 4"),
        "-n 99": (["generate", "a fox", "-n", "99"], config, "1 to 4"),
        "ratio 0:1": (["generate", "a fox", "--aspect-ratio", "0:1"], config, "'0:1'"),
        "size 99999x1": (["generate", "a fox", "--size", "99999x1"], config, "99999x1"),
        "missing ref": (["generate", "a fox", "--ref", str(cli.root / "missing.png")], config, "not found"),
        "non-image ref, named": (["generate", "a fox", "--ref", str(good), "--ref", str(not_an_image)], config,
                                 "error: notes.png: "),
        "edit-last, no image": (["generate", "bluer", "--edit-last", "--chat", "cli:empty"], config,
                                "error: there is no image in chat cli:empty to edit yet (--edit-last): generate "
                                "one first, or pass --ref PATH"),
        "unknown --provider": (["generate", "a fox", "--provider", "nope"], config, "Unknown provider"),
        "unknown provider in config": (["generate", "a fox"], bad_configs["unknown"], "dalle-magic"),
        "${VAR} unset": (["generate", "a fox"], bad_configs["unset"], "providers.custom.apiKey"),
    }

    async def run(args: list[str], path: Path) -> CliResult:
        return await cli.run(*args, "--json", config=path)

    results = await asyncio.gather(*(run(args, path) for args, path, _ in cases.values()))
    for (name, (_, _, expected)), result in zip(cases.items(), results, strict=True):
        assert result.code == 2, f"{name}: {result}"
        assert result.out == "", f"{name}: {result}"
        lines = result.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), f"{name}: {result}"
        assert expected in lines[0], f"{name}: expected {expected!r} in {lines[0]!r}"
    assert "PIXBOT_E2E_UNSET_KEY" in results[-1].err
    assert fake.requests == []


# -- edits, references and history ----------------------------------------------------------------
async def test_edit_last_ref_by_id_and_by_path_then_history_newest_first(
    cli: Cli, config: Path, fake: FakeProvider
) -> None:
    first = await cli.run("generate", "a red fox", "--chat", "cli:fox", "--json", config=config)
    assert first.code == 0, first
    fox = first.json()["artifacts"][0]
    fox_bytes = check_artifact(cli, fox)

    edited = await cli.run("generate", "make the fox blue", "--chat", "cli:fox", "--edit-last", "--json",
                           config=config)
    assert edited.code == 0, edited
    blue = edited.json()["artifacts"][0]
    check_artifact(cli, blue)
    assert blue["parent_id"] == fox["id"] and blue["source_images"] == [fox["path"]]
    edits = fake.requests_of("/custom/v1/images/edits")
    assert len(edits) == 1
    assert [(u.field, u.data) for u in edits[0].files] == [("image[]", fox_bytes)]
    assert edits[0].form_fields["prompt"] == "make the fox blue" and edits[0].form_fields["model"] == MODEL

    by_id = await cli.run("generate", "add a hat", "--chat", "cli:fox", "--ref", fox["id"], "--json",
                          config=config)
    assert by_id.code == 0, by_id
    hat = by_id.json()["artifacts"][0]
    assert hat["parent_id"] == fox["id"] and hat["source_images"] == [fox["path"]]
    assert carries_reference(fake.requests_of("/custom/v1/images/edits")[-1], fox_bytes)

    outside = cli.root / "photos" / "cat.png"
    outside.parent.mkdir()
    outside.write_bytes(png_bytes(80, 48, (20, 90, 200)))
    by_path = await cli.run("generate", "paint this cat", "--chat", "cli:other", "--ref", str(outside),
                            config=config)  # text output: "id  WxH  path" per image
    assert by_path.code == 0, by_path
    line_id, dims, path = by_path.out.split()
    assert _ID.fullmatch(line_id) and re.fullmatch(r"\d+x\d+", dims) and Path(path).is_file()
    cat = json.loads(Path(path).with_suffix(".json").read_text(encoding="utf-8"))
    assert cat["source_images"] == [str(outside.resolve())] and cat["parent_id"] is None
    assert carries_reference(fake.requests_of("/custom/v1/images/edits")[-1], outside.read_bytes())
    assert len(fake.requests_of("/custom/v1/images/edits")) == 3

    both = await cli.run("generate", "put the cat on the fox", "--chat", "cli:fox", "--edit-last", "--ref",
                         str(outside), "--json", config=config)
    assert both.code == 0, both
    last_then_cat = fake.requests_of("/custom/v1/images/edits")[-1].files
    assert [u.data for u in last_then_cat] == [Path(hat["path"]).read_bytes(), outside.read_bytes()]
    both_id = both.json()["artifacts"][0]["id"]

    everything, fox_chat, listed = await asyncio.gather(
        cli.run("history", "--json", config=config),
        cli.run("history", "--chat", "cli:fox", "--json", config=config),
        cli.run("history", config=config),
    )
    assert everything.code == fox_chat.code == listed.code == 0, (everything, fox_chat, listed)
    assert [e["id"] for e in everything.json()["history"]] == [both_id, line_id, hat["id"], blue["id"], fox["id"]]
    assert {e["chat"] for e in everything.json()["history"]} > {"cli:fox"}  # several chats: each row says whose
    assert listed.out.splitlines()[0].startswith(f"{both_id}  cli:fox  ")
    rows = fox_chat.json()["history"]
    assert [e["id"] for e in rows] == [both_id, hat["id"], blue["id"], fox["id"]]
    assert rows[-1]["prompt"] == "a red fox" and rows[-1]["path"] == fox["path"]


async def test_extra_body_url_answers_are_downloaded_only_from_whitelisted_addresses(
    cli: Cli, fake: FakeProvider
) -> None:
    """Agnes AI style: extraBody overrides response_format (url) and size (2K, Seedream style)."""
    extra = {"extraBody": {"response_format": "url", "size": "2K"}}
    allowed = cli.write_config(cli.provider_config("custom", MODEL, api_key=KEY, extra=extra), "allowed.json")
    no_whitelist = cli.provider_config("custom", MODEL, api_key=KEY, extra=extra, whitelist=False)
    refused = cli.write_config(no_whitelist, "refused.json")
    ok = await cli.run("generate", "a red fox", "--json", config=allowed)
    assert ok.code == 0, ok
    stored = check_artifact(cli, ok.json()["artifacts"][0])
    (request,) = fake.requests_of("/custom/v1/images/generations")
    assert request.json["response_format"] == "url" and request.json["size"] == "2K"
    downloads = fake.requests_of(".png", "GET")
    assert len(downloads) == 1 and stored == fake.files[downloads[0].path.rsplit("/", 1)[-1]]

    blocked = await cli.run("generate", "a red fox", "--json", config=refused)
    assert blocked.code == 1, blocked
    assert blocked.json()["artifacts"] == []
    assert [e["category"] for e in blocked.json()["errors"]] == ["bad_image"]
    assert len(fake.requests_of(".png", "GET")) == 1  # the loopback URL was refused before connecting


async def test_a_ratio_and_a_size_are_both_applied_and_reported_truthfully(
    cli: Cli, config: Path, fake: FakeProvider
) -> None:
    result = await cli.run("generate", "a red fox", "--aspect-ratio", "16:9", "--size", "2K", "--json",
                           config=config)
    assert result.code == 0, result
    report = result.json()["report"]
    assert report["applied"] == {"count": 1, "aspect_ratio": "16:9", "size": "2048x1152"}
    assert "size 2K at 16:9 sent as 2048x1152" in report["notes"]
    (artifact,) = result.json()["artifacts"]
    assert (artifact["width"], artifact["height"]) == (2048, 1152)
    assert fake.requests_of("/images/generations")[0].json["size"] == "2048x1152"


# -- doctor and run -------------------------------------------------------------------------------
async def test_a_typo_in_pixbots_own_blocks_stops_start_up_and_doctor_says_who_each_bot_answers(
    cli: Cli, fake: FakeProvider
) -> None:
    """``alowFrom`` used to be ignored, leaving the bot open to everyone; nanobot's own keys still pass."""
    raw = cli.provider_config("custom", MODEL, api_key=KEY)
    raw["providers"]["custom"]["someNanobotOnlyKey"] = True  # nanobot's block: not pixbot's to police
    raw["agents"] = {"defaults": {"model": "x"}}
    raw["bots"] = {"telegram": {"token": "123456789:AAFakeTokenForDoctor", "alowFrom": [111]},
                   "discord": {"token": "d", "allowFrom": ["*"], "allowRoles": [42], "allowGuilds": [7]}}
    typo = cli.write_config(raw, "typo.json")
    raw["bots"]["telegram"] = {"token": "123456789:AAFakeTokenForDoctor", "allowFrom": [111, "@bob"]}
    fixed = cli.write_config(raw, "fixed.json")
    raw["limits"] = {"perUserDayly": 5}
    far_off = cli.write_config(raw, "limits.json")
    refused, doctor, limits = await asyncio.gather(cli.run("doctor", config=typo), cli.run("doctor", config=fixed),
                                                   cli.run("doctor", config=far_off))
    assert refused.code == 2 and refused.out == ""
    assert "bots.telegram: unknown key 'alowFrom' (did you mean allowFrom?)" in refused.err
    assert limits.code == 2 and "limits: unknown key 'perUserDayly' (did you mean perUserDaily?)" in limits.err
    assert doctor.code == 0, doctor
    assert "telegram answers only 111, @bob (in groups when mentioned)" in doctor.out
    assert "discord answers anyone with role 42, in servers 7" in doctor.out
    assert fake.requests == []


async def test_doctor_lists_every_provider_without_calling_any_and_ping_calls_one(
    cli: Cli, fake: FakeProvider
) -> None:
    raw = cli.provider_config("custom", MODEL, api_key=KEY)
    raw["providers"]["openai"] = {"apiKey": KEY, "apiBase": fake.api_base("openai")}
    config = cli.write_config(raw)
    unconfigured = cli.write_config({}, "defaults.json")  # the default provider, openrouter, has no key
    text, as_json, broken = await asyncio.gather(
        cli.run("doctor", config=config), cli.run("doctor", "--json", config=config),
        cli.run("doctor", config=unconfigured))
    assert fake.requests == []
    assert text.code == 0 and as_json.code == 0, (text, as_json)

    report = as_json.json()
    assert report["ok"] is True and report["problems"] == []
    rows = {row["name"]: row for row in report["providers"]}
    assert list(rows) == list(PROVIDER_NAMES)
    for name, row in rows.items():
        caps = await adapter_capabilities(name, row["model"])
        assert row["capabilities"] == caps.to_dict(), name
        assert row["configured"] is (row["missing"] == []), name
    assert rows["custom"]["model"] == MODEL and rows["custom"]["configured"] and rows["custom"]["in_use"]
    assert rows["openai"]["model"] == "gpt-image-1" and rows["openai"]["configured"]
    assert not rows["openai"]["in_use"]
    assert rows["gemini"]["missing"] == ["providers.gemini.apiKey"] and not rows["gemini"]["configured"]

    lines = {line.split()[0].lstrip("*"): line for line in text.out.splitlines()
             if line.strip() and line.split()[0].lstrip("*") in PROVIDER_NAMES}
    assert set(lines) == set(PROVIDER_NAMES)
    assert lines["custom"].startswith("*custom") and "ready" in lines["custom"] and MODEL in lines["custom"]
    assert "needs apiKey" in lines["gemini"] and "gemini-2.5-flash-image" in lines["gemini"]
    assert "not set up" in lines["ollama"] and not rows["ollama"]["set_up"]  # keyless, but nobody set it up
    assert "edits" in text.out and "ratios" in text.out and "sizes" in text.out

    assert broken.code == 1, broken
    assert "problem: the default provider openrouter is not configured" in broken.out
    assert "providers.openrouter.apiKey" in broken.out

    pinged = await cli.run("doctor", "--ping", "--json", config=config)
    assert pinged.code == 0, pinged
    assert api_requests(fake) == ["POST /custom/v1/images/generations"]
    rows = {row["name"]: row for row in pinged.json()["providers"]}
    assert rows["custom"]["ping"] == "ok"
    assert "ping" not in rows["openai"]  # configured but not in use: not called

    fake.fail_next(401, {"error": {"message": "bad key"}})
    refused = await cli.run("doctor", "--ping", config=config)
    assert refused.code == 1, refused
    assert "problem: the default provider custom failed the ping: auth:" in refused.out
    assert "--ping made one small image per provider in use; providers bill it" in refused.out


async def test_run_with_no_front_end_enabled_says_what_to_configure(cli: Cli) -> None:
    config = cli.write_config({"bots": {"api": {"enabled": False}, "web": {"enabled": False}}})
    result = await cli.run("run", config=config)
    assert result.code == 2, result
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result
    for key in ("bots.telegram.token", "TELEGRAM_BOT_TOKEN", "bots.discord.token", "bots.web.enabled",
                "bots.api.enabled"):
        assert key in lines[0]


# -- several pixbot processes on one data dir ------------------------------------------------------
def _job_states(db: Path) -> dict[str, tuple[str, str | None]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {prompt: (status, error) for prompt, status, error in
                conn.execute("SELECT prompt, status, error FROM jobs")}


async def test_a_second_process_leaves_live_jobs_alone_and_the_next_lone_start_settles_dead_ones(
    cli: Cli, config: Path, fake: FakeProvider
) -> None:
    """Start-up recovery fails jobs still "generating"; it must not do that to another live process's job."""
    fake.hold()
    live = asyncio.create_task(cli.run("generate", "a live fox", "--json", config=config))
    await fake.wait_for_requests(1, timeout=RUN_TIMEOUT)
    meanwhile = await cli.run("history", "--json", config=config)  # a whole start-up while the job runs
    fake.release()
    assert meanwhile.code == 0, meanwhile
    done = await live
    assert done.code == 0, done
    assert len(done.json()["artifacts"]) == 1

    fake.hold()
    crashed = await cli.start("generate", "a crashed fox", config=config)
    try:
        await fake.wait_for_requests(2, timeout=RUN_TIMEOUT)
    finally:
        crashed.kill()
        await crashed.communicate()
        fake.release()
    after = await cli.run("history", "--json", config=config)  # alone again: settles the dead job
    assert after.code == 0, after
    states = await asyncio.to_thread(_job_states, cli.root / "pixbot.db")
    assert states["a live fox"][0] == "delivered"  # printed by the CLI, so delivered
    assert states["a crashed fox"] == ("failed", "interrupted by a restart")


async def test_migrate_and_doctor_name_the_engine_and_a_copied_database_is_refused(cli: Cli) -> None:
    config = cli.write_config({"storage": {"dataDir": str(cli.root / "data")}})
    migrated = await cli.run("migrate", config=config)
    assert migrated.code == 0, migrated
    database = cli.root / "data" / "pixbot.db"
    assert migrated.out.strip() == f"sqlite {database}: schema version {SCHEMA_VERSION} (up to date)"
    doctor = await cli.run("doctor", "--json", config=config)
    assert json.loads(doctor.out)["storage"] == {"engine": "sqlite", "location": str(database),
                                                 "schema_version": SCHEMA_VERSION}
    # The state database moved to another data dir (without its images): refused, naming the setting.
    (cli.root / "elsewhere").mkdir()
    shutil.copy(cli.root / "data" / "pixbot.db", cli.root / "elsewhere" / "pixbot.db")
    moved = cli.write_config({"storage": {"dataDir": str(cli.root / "elsewhere")}}, name="moved.json")
    refused = await cli.run("history", config=moved)
    assert refused.code == 2, refused
    assert "storage.dataDir" in refused.err
    assert "is not the data directory this database was first used with" in refused.err
