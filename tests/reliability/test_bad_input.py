"""Bad input, generated: every prompt, option, reference path and upload that cannot work is refused
before any work (a PixbotError of the right category with a user message) and reaches no provider.

Property tests use the real service (fast: many examples); a few ``pixbot generate`` runs check the
CLI's contract for the same refusals (exit 2, one ``error:`` line). Hypothesis runs derandomised and
without an example database, so every run tries the same inputs.
"""

from __future__ import annotations

import asyncio
import os
import re
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import BadImage, InvalidRequest, PixbotError
from core.models import ChatRef, ImageRequest, Reference
from core.service import ImageService
from tests.crafted_images import header_only_png
from tests.e2e.cli_support import Cli
from tests.fakes.fake_provider import FakeProvider
from tests.images import jpeg_bytes, png_bytes
from tests.reliability.conftest import Harness

CHAT = ChatRef("telegram", "100", "7")
MAX_PROMPT = 200  # small, so "too long" examples stay cheap to generate
MAX_COUNT = 8
#: Deterministic: the same examples every run, no example database, no per-example deadline.
PROPERTY = settings(max_examples=50, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBPVP8 ")


@dataclass
class Env:
    service: ImageService
    fake: FakeProvider
    media: Path
    outside: Path


@pytest.fixture
async def env(harness: Harness, fake: FakeProvider, tmp_path: Path) -> AsyncIterator[Env]:
    """One service for all of a test's examples (refusals change nothing), plus a media dir with traps."""
    async with harness.open(limits={"maxPromptChars": MAX_PROMPT}) as service:
        media = service.config.media_dir
        (media / "sub").mkdir(parents=True)
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "photo.png").write_bytes(png_bytes())
        (media / "link_out.png").symlink_to(outside / "photo.png")
        (media / "dir_out").symlink_to(outside)
        (media / "zero.png").symlink_to("/dev/zero")
        (media / "loop.png").symlink_to(media / "loop.png")
        os.mkfifo(media / "fifo.png")
        yield Env(service, fake, media, outside)


async def refused(env: Env, request: ImageRequest, expected: type[PixbotError]) -> PixbotError:
    """Submit; it must raise ``expected`` with a one-line user message, start no job, and call nothing."""
    with pytest.raises(PixbotError) as info:
        await asyncio.wait_for(env.service.submit(request), 10)  # a fifo or device must never block
    error = info.value
    assert isinstance(error, expected), f"{type(error).__name__}: {error}"
    assert error.category == expected.category
    message = str(error)
    assert message.strip() and "\n" not in message and "Traceback" not in message
    assert env.fake.requests == []
    assert env.service.running_jobs() == [] and await env.service.jobs.unsettled() == []
    return error


def visible(text: str) -> bool:
    """Has something to draw: a letter, digit, punctuation mark or symbol."""
    return any(unicodedata.category(c)[0] in "LNPS" for c in text)


# -- prompts -----------------------------------------------------------------------------------------
#: Whitespace, control and formatting characters only (zero-width spaces, bidi marks and overrides).
NOTHING_TO_DRAW = st.text(st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp"]), max_size=40)
WORDS = st.characters(categories=["L", "N", "P", "S"])


@PROPERTY
@given(prompt=NOTHING_TO_DRAW)
async def test_prompts_with_nothing_to_draw_are_refused(env: Env, prompt: str) -> None:
    error = await refused(env, ImageRequest(prompt, CHAT), InvalidRequest)
    assert "prompt is empty" in str(error)


@PROPERTY
@given(prompt=st.text(WORDS, min_size=MAX_PROMPT + 1, max_size=3 * MAX_PROMPT),
       noise=st.text(st.characters(categories=["Cc"]), max_size=20))
async def test_prompts_over_the_limit_are_refused(env: Env, prompt: str, noise: str) -> None:
    error = await refused(env, ImageRequest(noise + prompt + noise, CHAT), InvalidRequest)
    assert f"the limit is {MAX_PROMPT}" in str(error)


async def test_a_megabyte_prompt_is_refused_with_its_length(env: Env) -> None:
    error = await refused(env, ImageRequest("a fox " * 200_000, CHAT), InvalidRequest)
    assert "1199999 characters" in str(error)


RTL = st.characters(categories=["Lo"], min_codepoint=0x0590, max_codepoint=0x06FF)  # Hebrew and Arabic letters
MIXED = st.text(st.one_of(RTL, WORDS, st.characters(categories=["Cc", "Cf", "Zs"])), max_size=60)


@settings(PROPERTY, max_examples=15)
@given(prompt=st.builds(lambda a, b, c: a + b + c, MIXED, st.text(RTL, min_size=1, max_size=10), MIXED))
async def test_right_to_left_prompts_with_control_characters_are_sent_cleaned(env: Env, prompt: str) -> None:
    """Control characters go (tabs and newlines stay); everything else, RTL and bidi marks included, is kept."""
    expected = "".join(c for c in prompt if unicodedata.category(c) != "Cc" or c in "\t\n\r").strip()
    env.fake.requests.clear()
    result = await env.service.submit(ImageRequest(prompt, CHAT))
    assert result.ok
    (sent,) = env.fake.requests
    assert sent.json["prompt"] == expected == result.artifacts[0].prompt


# -- options -----------------------------------------------------------------------------------------
_RATIO_FORM = re.compile(r"\s*\d{1,4}\s*:\s*\d{1,4}\s*")
BAD_RATIOS = st.one_of(
    st.tuples(st.integers(0, 9999), st.integers(0, 9999)).filter(lambda t: 0 in t).map(lambda t: f"{t[0]}:{t[1]}"),
    st.tuples(st.integers(1, 9999), st.integers(1, 9999)).filter(lambda t: max(t) > 21 * min(t))
    .map(lambda t: f"{t[0]}:{t[1]}"),
    st.tuples(st.integers(10_000, 10**9), st.integers(1, 10**9)).map(lambda t: f"{t[0]}:{t[1]}"),
    st.text(max_size=12).filter(lambda s: s != "" and not _RATIO_FORM.fullmatch(s)),
)


def _size_is_valid(value: str) -> bool:
    """docs/cli.md: ``auto``, ``1K``…``8K``, a side of 64–8192 px, or ``WxH`` with both sides in range."""
    size = value.strip()
    if size.lower() == "auto" or re.fullmatch(r"0?[1-8][kK]", size):
        return True
    sides = re.fullmatch(r"(\d{1,5})\s*[xX×]\s*(\d{1,5})", size)
    if sides:
        return all(64 <= int(side) <= 8192 for side in sides.groups())
    return size.isdigit() and 64 <= int(size) <= 8192


BAD_SIZES = st.one_of(
    st.tuples(st.integers(0, 99999), st.integers(0, 99999)).map(lambda t: f"{t[0]}x{t[1]}"),
    st.tuples(st.integers(0, 10**7), st.sampled_from(["", "k", "K", "px", "M"])).map(lambda t: f"{t[0]}{t[1]}"),
    st.text(max_size=12),
).filter(lambda s: s != "" and not _size_is_valid(s))


@PROPERTY
@given(count=st.integers().filter(lambda n: not 1 <= n <= MAX_COUNT))
async def test_counts_out_of_range_are_refused(env: Env, count: int) -> None:
    error = await refused(env, ImageRequest("a fox", CHAT, count=count), InvalidRequest)
    assert f"1 to {MAX_COUNT} images" in str(error)


@PROPERTY
@given(ratio=BAD_RATIOS)
async def test_bad_aspect_ratios_are_refused(env: Env, ratio: str) -> None:
    error = await refused(env, ImageRequest("a fox", CHAT, aspect_ratio=ratio), InvalidRequest)
    assert "Aspect ratio" in str(error)


@PROPERTY
@given(size=BAD_SIZES)
async def test_bad_sizes_are_refused(env: Env, size: str) -> None:
    error = await refused(env, ImageRequest("a fox", CHAT, size=size), InvalidRequest)
    assert str(error).startswith("Size ")


# -- reference paths ---------------------------------------------------------------------------------
TRAVERSALS = st.builds(
    lambda start, hops, target: os.path.join(start, *hops, target),
    st.sampled_from(["media", "media/sub", "media/dir_out", "", "/"]),
    st.lists(st.sampled_from(["..", ".", "sub", "generated", "dir_out"]), max_size=8),
    st.sampled_from(["etc/passwd", "etc/hostname", "outside/photo.png", "photo.png", "dev/zero", "proc/self/environ"]),
)


@PROPERTY
@given(raw=TRAVERSALS)
async def test_untrusted_paths_that_leave_the_media_dir_are_refused(env: Env, raw: str) -> None:
    """Relative paths are taken from the data dir's parent here, so ``media/..`` hops really climb out."""
    path = raw if raw.startswith("/") else str(env.media.parent / raw)
    await refused(env, ImageRequest("x", CHAT, references=(Reference(path=path),)), InvalidRequest)


UNTRUSTED = {
    "../../etc/passwd": ("../../etc/passwd", "inside the media directory"),
    "/etc/passwd": ("/etc/passwd", "inside the media directory"),
    "/dev/zero": ("/dev/zero", "inside the media directory"),
    "symlink out of the media dir": ("{media}/link_out.png", "inside the media directory"),
    "directory symlink out": ("{media}/dir_out/photo.png", "inside the media directory"),
    "symlink to /dev/zero": ("{media}/zero.png", "inside the media directory"),
    "fifo": ("{media}/fifo.png", "not a regular file"),
    "directory": ("{media}/sub", "not a regular file"),
    "symlink loop": ("{media}/loop.png", "cannot be read"),
    "missing": ("{media}/nope.png", "not found"),
}


async def test_untrusted_reference_traps_are_refused(env: Env, subtests: pytest.Subtests) -> None:
    for name, (raw, said) in UNTRUSTED.items():
        with subtests.test(name):
            reference = Reference(path=raw.format(media=env.media))
            error = await refused(env, ImageRequest("x", CHAT, references=(reference,)), InvalidRequest)
            assert said in str(error)


TRUSTED: dict[str, tuple[type[PixbotError], str]] = {
    "/dev/zero": (InvalidRequest, "not a regular file"),
    "{media}/zero.png": (InvalidRequest, "not a regular file"),
    "{media}/fifo.png": (InvalidRequest, "not a regular file"),
    "{media}/sub": (InvalidRequest, "not a regular file"),
    "/etc/passwd": (BadImage, "not an image"),
}


async def test_trusted_paths_must_still_be_regular_image_files(env: Env, subtests: pytest.Subtests) -> None:
    """The operator's own paths (the CLI's) may be anywhere, but devices and fifos are never read."""
    for raw, (expected, said) in TRUSTED.items():
        with subtests.test(raw):
            reference = Reference(path=raw.format(media=env.media), trusted=True)
            error = await refused(env, ImageRequest("x", CHAT, references=(reference,)), expected)
            assert said in str(error)


# -- uploads -----------------------------------------------------------------------------------------
NOT_IMAGES = st.one_of(
    st.binary(max_size=512),
    st.builds(lambda magic, rest: magic + rest, st.sampled_from(MAGIC), st.binary(max_size=512)),
)


@PROPERTY
@given(data=NOT_IMAGES)
async def test_uploads_that_are_not_images_are_refused(env: Env, data: bytes) -> None:
    await refused(env, ImageRequest("x", CHAT, references=(Reference(data=data, name="up.png"),)), BadImage)


def _truncated(kind: str, w: int, h: int, colour: tuple[int, int, int], keep: float) -> bytes:
    data = png_bytes(w, h, colour) if kind == "png" else jpeg_bytes(w, h, colour)
    # A PNG is complete once its IEND chunk type is read; cut at least into that chunk.
    return data[: int((len(data) - 5) * keep)]


TRUNCATED = st.builds(_truncated, st.sampled_from(["png", "jpeg"]), st.integers(1, 48), st.integers(1, 48),
                      st.tuples(*[st.integers(0, 255)] * 3), st.floats(0, 1))


@PROPERTY
@given(data=TRUNCATED)
async def test_truncated_uploads_are_refused(env: Env, data: bytes) -> None:
    await refused(env, ImageRequest("x", CHAT, references=(Reference(data=data),)), BadImage)


async def test_oversized_and_bomb_uploads_are_refused_before_decoding(env: Env) -> None:
    big = header_only_png(1024, 1024) + bytes(20 * 1024 * 1024)
    error = await refused(env, ImageRequest("x", CHAT, references=(Reference(data=big),)), BadImage)
    assert "too large: 20.0 MB; the limit is 20 MB" in str(error)
    bomb = header_only_png(20000, 20000)
    error = await refused(env, ImageRequest("x", CHAT, references=(Reference(data=bomb),)), BadImage)
    assert "20000x20000 pixels" in str(error)
    many = tuple(Reference(data=png_bytes()) for _ in range(17))
    error = await refused(env, ImageRequest("x", CHAT, references=many), InvalidRequest)
    assert "Too many reference images: 17" in str(error)


# -- the same refusals through the CLI ---------------------------------------------------------------
async def test_cli_refusals_exit_2_with_one_error_line_and_no_provider_call(harness: Harness,
                                                                           fake: FakeProvider) -> None:
    cli = Cli(harness.root, fake)
    config = harness.write_config(harness.raw_config())
    os.mkfifo(harness.root / "pipe.png")
    with open(harness.root / "huge.png", "wb") as sparse:  # 21 MiB on paper, nothing on disk
        sparse.write(png_bytes()[:16])
        sparse.truncate(21 * 1024 * 1024)
    cases = {
        "control characters only": (["\x01\x02\u200b\u202e\t"], "prompt is empty"),
        "--ar 30:1": (["a fox", "--ar", "30:1"], "too extreme"),
        "--ref /dev/zero": (["a fox", "--ref", "/dev/zero"], "not a regular file"),
        "--ref a fifo": (["a fox", "--ref", "pipe.png"], "not a regular file"),
        "--ref 21 MiB": (["a fox", "--ref", "huge.png"], "too large: 21.0 MB"),
    }
    results = await asyncio.gather(*(cli.run("generate", *args, config=config) for args, _ in cases.values()))
    for (name, (_, said)), result in zip(cases.items(), results, strict=True):
        lines = result.err.splitlines()
        assert result.code == 2 and result.out == "", f"{name}: {result}"
        assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0], f"{name}: {result}"
    assert fake.requests == []
