"""pixbot and the real nanobot-ai: nanobot's own generate_image against pixbot's API, and the pixbot_image
plugin discovered through its entry point, registered by nanobot's loader and run in a request context."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from loguru import logger
from nanobot.agent.tools.context import RequestContext, ToolContext, request_context
from nanobot.agent.tools.image_generation import ImageGenerationTool, ImageGenerationToolConfig
from nanobot.agent.tools.loader import ToolLoader
from nanobot.agent.tools.registry import ToolRegistry
from nanobot.config.schema import ProviderConfig, ToolsConfig

from bots.app import open_service
from bots.http_api import make_app
from bots.nanobot_tool import PARAMETERS, PixbotImageTool, plugin_config
from core.config_file import load_config
from tests.fakes.fake_provider import FakeProvider
from tests.images import png_bytes

KEY = "pixbot-key-for-nanobot"


@pytest.fixture(autouse=True)
def _pixbot_loggers_restored() -> Iterator[None]:
    """Loading the plugin routes pixbot's loggers to loguru for the whole process, as in a gateway;
    later tests in this process read them through the root logger again."""
    loggers = [logging.getLogger(name) for name in ("core", "bots", "providers")]
    saved = [(lg.handlers[:], lg.propagate, lg.level) for lg in loggers]
    yield
    for lg, (handlers, propagate, level) in zip(loggers, saved, strict=True):
        lg.handlers[:] = handlers
        lg.propagate, lg.level = propagate, level


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


def _pixbot_raw(fake: FakeProvider) -> dict[str, Any]:
    return {
        "providers": {"custom": {"apiKey": "sk-test", "apiBase": fake.api_base("custom")}},
        "tools": {"imageGeneration": {"provider": "custom", "model": "flux-dev"},
                  "ssrfWhitelist": ["127.0.0.0/8"]},
    }


@pytest.fixture
def nanobot_home(tmp_path: Path, fake: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A nanobot instance dir whose config.json holds pixbot-compatible providers (no PIXBOT_CONFIG)."""
    home = tmp_path / "nanobot"
    home.mkdir()
    (home / "config.json").write_text(json.dumps(_pixbot_raw(fake)))
    monkeypatch.setattr("nanobot.config.loader._current_config_path", home / "config.json")
    monkeypatch.delenv("PIXBOT_CONFIG", raising=False)
    yield home


@pytest.fixture
async def pixbot_api(tmp_path: Path, fake: FakeProvider) -> AsyncIterator[str]:
    """pixbot's HTTP API on 127.0.0.1 (its own data dir); yields its base URL ending in /v1."""
    raw = _pixbot_raw(fake) | {"bots": {"api": {"enabled": True, "port": 0, "apiKey": KEY}}}
    path = tmp_path / "pixbot" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(raw))
    config = load_config(path, env_file=None)
    async with open_service(config) as service:
        runner = web.AppRunner(make_app(config, service), shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
        finally:
            await runner.cleanup()


def _nanobot_tool(workspace: Path, provider: str, model: str, api_base: str) -> ImageGenerationTool:
    config = ImageGenerationToolConfig(enabled=True, provider=provider, model=model)
    return ImageGenerationTool(workspace=workspace, config=config,
                               provider_configs={provider: ProviderConfig(api_key=KEY, api_base=api_base)})


def _artifacts(result: str) -> list[dict[str, Any]]:
    assert not getattr(result, "is_error", False), result
    payload = json.loads(result)
    assert set(payload) >= {"artifacts", "next_step"}
    artifacts: list[dict[str, Any]] = payload["artifacts"]
    return artifacts


async def test_nanobot_generate_image_with_provider_custom_uses_pixbot(
        nanobot_home: Path, pixbot_api: str, fake: FakeProvider) -> None:
    tool = _nanobot_tool(nanobot_home / "workspace", "custom", "flux-dev", pixbot_api)
    artifacts = _artifacts(await tool.execute(prompt="a lighthouse at dusk", count=2))
    assert len(artifacts) == 2
    for artifact in artifacts:
        path = Path(artifact["path"])
        assert path.is_relative_to(nanobot_home / "media" / "generated")
        assert path.read_bytes().startswith(b"\x89PNG")
    sent = fake.requests_of("/custom/v1/images/generations")
    assert len(sent) == 2 and {r.json["prompt"] for r in sent} == {"a lighthouse at dusk"}


async def test_nanobot_generate_image_with_provider_openai_generates_and_edits_through_pixbot(
        nanobot_home: Path, pixbot_api: str, fake: FakeProvider) -> None:
    tool = _nanobot_tool(nanobot_home / "workspace", "openai", "gpt-image-1", pixbot_api)
    first = _artifacts(await tool.execute(prompt="a red fox"))[0]
    edited = _artifacts(await tool.execute(prompt="make it blue", reference_images=[first["path"]]))
    assert len(edited) == 1
    generations = fake.requests_of("/custom/v1/images/generations")
    assert len(generations) == 1 and generations[0].json["model"] == "gpt-image-1"
    edits = fake.requests_of("/custom/v1/images/edits")
    assert len(edits) == 1 and edits[0].form_fields["prompt"] == "make it blue"
    assert [f.data for f in edits[0].files] == [Path(first["path"]).read_bytes()]


@pytest.fixture
async def loaded(nanobot_home: Path) -> AsyncIterator[ToolRegistry]:
    """A registry filled by nanobot's own ToolLoader (built-ins and entry-point plugins)."""
    registry = ToolRegistry()
    workspace = nanobot_home / "workspace"
    workspace.mkdir()
    logger.disable("nanobot")  # built-ins that need a running agent (spawn, cron…) log and are skipped
    try:
        names = ToolLoader().load(ToolContext(config=ToolsConfig(), workspace=str(workspace)), registry)
    finally:
        logger.enable("nanobot")
    assert "pixbot_image" in names
    yield registry
    tool = registry.get("pixbot_image")
    assert tool is not None
    await tool.aclose()


def _telegram_turn(text: str = "draw something", chat_id: str = "42") -> RequestContext:
    return RequestContext(channel="telegram", chat_id=chat_id, session_key=f"telegram:{chat_id}",
                          sender_id="7", message_id="1001", original_user_text=text,
                          metadata={"message_id": 1001})


def test_the_entry_point_names_the_plugin_class() -> None:
    points = {ep.name: ep for ep in importlib.metadata.entry_points(group="nanobot.tools")}
    assert points["pixbot_image"].load() is PixbotImageTool


def test_parameters_match_nanobots_generate_image_plus_edit_last() -> None:
    theirs = ImageGenerationTool(workspace=".", config=ImageGenerationToolConfig()).parameters
    assert set(PARAMETERS["properties"]) == set(theirs["properties"]) | {"edit_last"}
    assert PARAMETERS["required"] == theirs["required"] == ["prompt"]
    for name, schema in theirs["properties"].items():
        ours = PARAMETERS["properties"][name]
        for key in ("type", "minimum", "maximum", "minLength"):
            assert ours.get(key) == schema.get(key), (name, key)
        if "items" in schema:
            assert ours["items"]["type"] == schema["items"]["type"]
    assert PARAMETERS["properties"]["edit_last"]["type"] == "boolean"


async def test_loaded_plugin_generates_then_edit_last_edits_that_image(
        loaded: ToolRegistry, nanobot_home: Path, fake: FakeProvider) -> None:
    with request_context(_telegram_turn("draw a red fox")):
        first = _artifacts(await loaded.execute("pixbot_image", {"prompt": "a red fox"}))
    with request_context(_telegram_turn("make it warmer")):
        second_raw = await loaded.execute("pixbot_image", {"prompt": "make it warmer", "edit_last": "true"})
    second = _artifacts(second_raw)
    assert len(first) == 1 and len(second) == 1
    assert Path(first[0]["path"]).is_relative_to(nanobot_home / "media" / "generated")
    assert first[0]["chat"] == "nanobot:telegram:42"
    assert second[0]["parent_id"] == first[0]["id"]
    assert json.loads(second_raw)["edited"] == [first[0]["id"]]
    edits = fake.requests_of("/custom/v1/images/edits")
    assert len(edits) == 1 and [f.data for f in edits[0].files] == [Path(first[0]["path"]).read_bytes()]


async def test_edit_last_in_a_chat_without_images_is_refused_without_a_provider_call(
        loaded: ToolRegistry, fake: FakeProvider) -> None:
    with request_context(_telegram_turn("draw a fox", chat_id="1")):
        await loaded.execute("pixbot_image", {"prompt": "a fox"})
    with request_context(_telegram_turn("make it warmer", chat_id="2")):  # another session: nothing to edit
        result = await loaded.execute("pixbot_image", {"prompt": "make it warmer", "edit_last": True})
    assert getattr(result, "is_error", False)
    assert "no image in this chat" in result
    assert len(fake.requests) == 1


async def test_the_turns_inbound_images_are_the_references(
        loaded: ToolRegistry, nanobot_home: Path, tmp_path: Path, fake: FakeProvider) -> None:
    inbound = nanobot_home / "media" / "telegram" / "AgADphoto.png"
    inbound.parent.mkdir(parents=True, exist_ok=True)
    inbound.write_bytes(png_bytes(40, 40))
    outside = tmp_path / "secret.png"  # a typed marker pointing outside the media dir is ignored
    outside.write_bytes(png_bytes(20, 20))
    text = f"turn this into a watercolour\n[image: {outside}]\n[image: {inbound}]"
    with request_context(_telegram_turn(text)):
        result = _artifacts(await loaded.execute("pixbot_image", {"prompt": "a watercolour version"}))
    assert result[0]["source_images"] == [str(inbound.resolve())]
    edits = fake.requests_of("/custom/v1/images/edits")
    assert len(edits) == 1 and [f.data for f in edits[0].files] == [inbound.read_bytes()]


async def test_bad_arguments_are_reported_by_nanobots_validation(loaded: ToolRegistry,
                                                                 fake: FakeProvider) -> None:
    with request_context(_telegram_turn()):
        missing = await loaded.execute("pixbot_image", {"count": 2})
        too_many = await loaded.execute("pixbot_image", {"prompt": "a fox", "count": 9})
        outside = await loaded.execute("pixbot_image",
                                       {"prompt": "a fox", "reference_images": ["/etc/hosts"]})
    assert all(getattr(r, "is_error", False) for r in (missing, too_many, outside))
    assert "prompt" in missing and "count" in too_many
    assert "inside the media directory" in outside
    assert fake.requests == []


def test_pixbot_config_env_wins_but_artifacts_stay_in_nanobots_media_dir(
        nanobot_home: Path, tmp_path: Path, fake: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "own" / "config.json"
    own.parent.mkdir()
    raw = _pixbot_raw(fake)
    raw["tools"]["imageGeneration"]["model"] = "from-pixbot-config"
    own.write_text(json.dumps(raw))
    monkeypatch.setenv("PIXBOT_CONFIG", str(own))
    workspace = nanobot_home / "workspace"
    config = plugin_config(workspace)
    assert config.image.model == "from-pixbot-config"
    assert config.media_dir == (nanobot_home / "media").resolve()
    assert workspace in config.storage.allowed_dirs


def test_importing_pixbot_never_needs_nanobot() -> None:
    code = ("import sys; sys.modules['nanobot'] = None\n"
            "import core, providers.registry, bots.app, bots.cli, bots.http_api, bots.api_models\n"
            "try:\n    import bots.nanobot_tool\nexcept ImportError:\n    print('plugin needs nanobot')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "plugin needs nanobot"


def test_a_new_event_loop_gets_a_new_service_and_the_old_one_is_closed(tmp_path: Path) -> None:
    """nanobot may run the tool under a fresh loop (one ``asyncio.run`` per CLI turn). The loop's end
    finalises the service opened in it (database thread, data-dir lock, HTTP clients), and the next
    call opens a working one in the new loop."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"storage": {"dataDir": str(tmp_path / "data")}}))
    tool = PixbotImageTool(config=load_config(path, env_file=None))

    async def use() -> tuple[object, int]:
        service = await tool._ensure_service()
        await service.state.set_last_artifact("nanobot:cli:direct", "img_000000000001")
        return service, sum(t.name.startswith("pixbot-db") for t in threading.enumerate())

    first, threads_in_first = asyncio.run(use())
    second, threads_in_second = asyncio.run(use())
    assert second is not first and threads_in_first == threads_in_second == 1
    assert not any(t.name.startswith("pixbot-db") for t in threading.enumerate())
    asyncio.run(tool.aclose())


def _load(workspace: Path) -> tuple[ToolRegistry, list[str]]:
    registry = ToolRegistry()
    logger.disable("nanobot")
    try:
        names = ToolLoader().load(ToolContext(config=ToolsConfig(), workspace=str(workspace)), registry)
    finally:
        logger.enable("nanobot")
    return registry, names


async def test_tools_pixbot_gives_the_plugin_its_own_provider_and_can_switch_it_off(
        nanobot_home: Path, fake: FakeProvider) -> None:
    """nanobot's providers.custom is its LLM endpoint here: tools.pixbot sends images elsewhere."""
    raw = _pixbot_raw(fake)
    raw["providers"]["custom"] = {"apiKey": "llm-key", "apiBase": fake.api_base("custom")}  # nanobot's LLM
    raw["tools"]["pixbot"] = {"provider": "openai", "model": "gpt-image-1",
                              "providers": {"openai": {"apiKey": "sk-img", "apiBase": fake.api_base("openai")}}}
    (nanobot_home / "config.json").write_text(json.dumps(raw))
    workspace = nanobot_home / "workspace"
    workspace.mkdir()
    registry, names = _load(workspace)
    assert "pixbot_image" in names
    tool = registry.get("pixbot_image")
    assert tool is not None
    try:
        with request_context(_telegram_turn("draw a kite")):
            (made,) = _artifacts(await registry.execute("pixbot_image", {"prompt": "a kite"}))
    finally:
        await tool.aclose()
    assert (made["provider"], made["model"]) == ("openai", "gpt-image-1")
    assert fake.requests_of("/openai/v1/images/generations") and not fake.requests_of("/custom/v1/images/generations")

    raw["tools"]["pixbot"]["enabled"] = False
    (nanobot_home / "config.json").write_text(json.dumps(raw))
    _, names = _load(workspace)
    assert "pixbot_image" not in names


async def test_pixbots_log_lines_go_through_the_gateways_loguru(loaded: ToolRegistry, fake: FakeProvider) -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, format="{level} {message}", level="INFO")
    try:
        with request_context(_telegram_turn("draw a red fox")):
            await loaded.execute("pixbot_image", {"prompt": "a red fox"})
    finally:
        logger.remove(sink)
    assert any(line.startswith("INFO core.artifacts: stored img_") for line in lines)
