"""The studio in a real browser: Debian's Chromium driven by Playwright, against ``pixbot run`` started as
a subprocess with no configuration at all, and the loopback fake provider.

Elements are found by role and accessible name, as a screen reader announces them. Without Chromium these
tests skip with one line; CI installs it and sets ``PIXBOT_REQUIRE_BROWSER=1``, which turns the skip into a
failure. ``PIXBOT_SCREENSHOTS=<dir>`` saves the screenshots docs/web.md shows (``make screenshots``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.cli_support import clean_env
from tests.fakes.fake_provider import FakeProvider
from tests.images import png_bytes

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

_STUDIO_LINE = re.compile(r"pixbot studio: (http://127\.0\.0\.1:\d+)/\?token=(\S+)")
_SHOTS = os.environ.get("PIXBOT_SCREENSHOTS")


def _chromium() -> str:
    found = os.environ.get("PIXBOT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    reason = "browser tests skipped: no chromium (apt-get install chromium)"
    if os.environ.get("PIXBOT_REQUIRE_BROWSER") == "1":
        pytest.fail(reason.replace("skipped", "required"))
    pytest.skip(reason)


@dataclass
class Pixbot:
    url: str
    token: str
    process: asyncio.subprocess.Process
    home: Path
    env: dict[str, str]


@contextlib.asynccontextmanager
async def _pixbot(home: Path) -> AsyncIterator[Pixbot]:
    """``pixbot run`` with no config file (it will be written by the set-up page), on a free port."""
    env = clean_env(home, {"PIXBOT_CONFIG": str(home / "pixbot" / "config.json"), "PIXBOT_BOTS__API__PORT": "0"})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots", "run", cwd=home, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        match = _STUDIO_LINE.search(line)
        assert match, line + (await process.stderr.read(4000)).decode() if process.stderr else line
        yield Pixbot(match[1], match[2], process, home, env)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    executable = _chromium()
    async with playwright_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable,
                                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


async def _shot(page: object, name: str) -> None:
    if _SHOTS:
        Path(_SHOTS).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(_SHOTS) / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


async def test_first_run_set_up_generate_edit_reference_gallery_and_lineage(
        browser: object, fake: FakeProvider, tmp_path: Path) -> None:
    async with _pixbot(tmp_path) as pixbot:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
        await page.goto(f"{pixbot.url}/?token={pixbot.token}")
        # No provider works yet: the set-up page comes first.
        await expect(page).to_have_url(f"{pixbot.url}/setup")
        await page.get_by_label("Provider").select_option("custom")
        await page.get_by_label("API key").fill("sk-browser")
        await page.get_by_label("API base").fill(fake.api_base("custom"))
        await page.get_by_label("Model").fill("flux-dev")
        await page.get_by_role("button", name="Check", exact=True).click()
        await expect(page.get_by_text("made a test image. It works.")).to_be_visible()
        await _shot(page, "setup")
        await page.get_by_role("button", name="Save", exact=True).click()
        await expect(page.get_by_text("New requests use custom / flux-dev.")).to_be_visible()
        saved = json.loads((tmp_path / "pixbot" / "config.json").read_text())
        assert saved["providers"]["custom"]["apiKey"] == "sk-browser"
        assert (tmp_path / "pixbot" / "config.json").stat().st_mode & 0o777 == 0o600
        await page.reload()  # a saved secret never comes back: the page says it is set, nothing more
        await expect(page.get_by_label("API key")).to_have_attribute("placeholder", "saved: set")
        assert "sk-browser" not in await page.content()

        # Two images at 16:9 appear one by one: the first while the second is still held by the provider.
        await page.goto(f"{pixbot.url}/")
        await page.get_by_label("Prompt").fill("a red fox in snow")
        await page.get_by_label("Aspect ratio").select_option("16:9")
        await page.get_by_label("Images", exact=True).fill("2")
        fake.stall_next(1)
        await page.get_by_role("button", name="Generate").click()
        foxes = page.get_by_role("img", name="a red fox in snow")
        await expect(foxes).to_have_count(1)
        await expect(page.get_by_text("Working… 1 of 2 ready.")).to_be_visible()
        fake.release_stalled()
        await expect(foxes).to_have_count(2)
        await expect(page.get_by_text("Working…")).to_have_count(0)
        await expect(page.get_by_text("16:9").first).to_be_visible()
        await _shot(page, "studio")

        # A follow-up edits the thread's last image.
        await expect(page.get_by_label("Edit the last image")).to_be_checked()
        await page.get_by_label("Images", exact=True).fill("1")
        await page.get_by_label("Prompt").fill("make it warmer")
        await page.get_by_role("button", name="Generate").click()
        await expect(page.get_by_role("img", name="make it warmer")).to_have_count(1)
        assert fake.requests_of("/images/edits")

        # A reference image from the file picker.
        reference = tmp_path / "reference.png"
        reference.write_bytes(png_bytes(48, 48))
        await page.get_by_label("Edit the last image").uncheck()
        await page.get_by_label("Reference images").set_input_files(str(reference))
        await page.get_by_label("Prompt").fill("in this style")
        await page.get_by_role("button", name="Generate").click()
        await expect(page.get_by_role("img", name="in this style")).to_have_count(1)

        # A prompt with markup is shown as text.
        await page.get_by_label("Prompt").fill("<script>alert(1)</script> a cat")
        await page.get_by_role("button", name="Generate").click()
        await expect(page.get_by_text("<script>alert(1)</script> a cat").first).to_be_visible()

        # The gallery shows an image made by `pixbot generate`, and the lineage of the edit.
        config = str(tmp_path / "pixbot" / "config.json")
        generate = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bots", "generate", "a castle from the command line", "--config", config,
            cwd=tmp_path, env=pixbot.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(generate.communicate(), 60)
        assert generate.returncode == 0, err.decode()
        await page.get_by_role("link", name="Gallery").click()
        await expect(page.get_by_role("img", name="a castle from the command line")).to_have_count(1)
        await page.get_by_label("Search").fill("warmer")
        await page.get_by_role("button", name="Filter").click()
        await expect(page.get_by_role("img", name="a castle from the command line")).to_have_count(0)
        await _shot(page, "gallery")
        await page.get_by_role("img", name="make it warmer").click()
        await expect(page.get_by_role("heading", name="Lineage")).to_be_visible()
        await expect(page.get_by_role("region", name="Compare with the image it was edited from")).to_be_visible()
        await expect(page.get_by_role("img", name="a red fox in snow").first).to_be_visible()
        await _shot(page, "lineage")


async def test_wrong_or_missing_token_is_refused_and_pages_fit_a_phone(
        browser: object, fake: FakeProvider, tmp_path: Path) -> None:
    async with _pixbot(tmp_path) as pixbot:
        stranger = await browser.new_page()  # type: ignore[attr-defined]
        await stranger.goto(f"{pixbot.url}/gallery")
        await expect(stranger.get_by_label("Token")).to_be_visible()
        await stranger.goto(f"{pixbot.url}/?token=wrong-token")
        await expect(stranger.get_by_text("That token is not right.")).to_be_visible()
        await stranger.get_by_label("Token").fill(pixbot.token)
        await stranger.get_by_role("button", name="Sign in").click()
        await expect(stranger.get_by_label("Provider")).to_be_visible()  # signed in: set-up comes first

        phone = await browser.new_page(viewport={"width": 360, "height": 740})  # type: ignore[attr-defined]
        await phone.goto(f"{pixbot.url}/?token={pixbot.token}")
        for path in ("/setup", "/gallery", "/t/abcdef123456"):
            await phone.goto(f"{pixbot.url}{path}")
            width = await phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 360, (path, width)
        # The keyboard alone reaches the form: Tab moves from the skip link into the navigation.
        await phone.keyboard.press("Tab")
        await expect(phone.get_by_role("link", name="Skip to content")).to_be_focused()
        await _shot(phone, "phone-gallery")
