"""The studio over HTTP (no browser): sign-in, CSRF, the composer, live events, follow-up edits,
uploads, escaping, the gallery and image pages, against the real service and the fake provider."""

from __future__ import annotations

import asyncio
import json
import re
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from bots.web.signin import load_token
from core.config_file import load_config
from core.errors import ConfigError
from core.models import ChatRef, ImageRequest
from tests.images import png_bytes
from tests.web.conftest import TOKEN, StudioFactory, listen

THREAD = "abc123def456"


async def _ask(client: httpx.AsyncClient, csrf: str, thread: str = THREAD, files: Any = None,
               **fields: str) -> httpx.Response:
    return await client.post(f"/t/{thread}/ask", data={"aspect_ratio": "auto", "count": "1", **fields},
                             files=files, headers={"X-CSRF-Token": csrf, "Accept": "application/json"})


async def _wait_job(studio_service: Any, job_id: str) -> Any:
    for _ in range(500):
        record = await studio_service.job(job_id)
        if record is not None and record.status in ("delivered", "failed"):
            return record
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job_id} did not finish")


# -- sign-in -----------------------------------------------------------------------------------
async def test_pages_need_the_token_and_the_session_cookie_is_httponly_and_strict(serve_studio: StudioFactory) -> None:
    async with serve_studio() as studio:
        anonymous = studio.anonymous()
        assert (await anonymous.get("/")).headers["location"] == "/login"
        to_login = httpx.URL((await anonymous.get("/gallery?q=fox&provider=custom")).headers["location"])
        assert to_login.path == "/login" and to_login.params["next"] == "/gallery?q=fox&provider=custom"
        back = await anonymous.get("/login?next=%2Fgallery%3Fq%3Dfox%26provider%3Dcustom")
        assert 'name="next" value="/gallery?q=fox&amp;provider=custom"' in back.text
        assert (await anonymous.get(f"/t/{THREAD}/events", headers={"Accept": "text/event-stream"})).status_code == 401
        assert (await anonymous.get("/healthz")).json() == {"status": "ok"}
        wrong = await anonymous.get("/gallery?token=not-the-token")
        assert wrong.headers["location"] == "/login?wrong=1"
        login = await anonymous.get("/login?wrong=1")
        assert login.status_code == 403 and "That token is not right." in login.text
        signed = await anonymous.get(f"/gallery?q=fox&token={TOKEN}")
        assert signed.status_code == 302 and signed.headers["location"] == "/gallery?q=fox"
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and TOKEN.lower() not in cookie
        by_form = studio.anonymous()
        refused = await by_form.post("/login", data={"token": "nope", "next": "/gallery"})
        assert refused.status_code == 403
        accepted = await by_form.post("/login", data={"token": TOKEN, "next": "//evil.example/"})
        assert accepted.status_code == 303 and accepted.headers["location"] == "/"
        assert (await by_form.get("/gallery")).status_code == 200


async def test_every_post_needs_the_pages_csrf_token(serve_studio: StudioFactory) -> None:
    async with serve_studio() as studio:
        client, csrf = await studio.client()
        without = await client.post(f"/t/{THREAD}/ask", data={"prompt": "a fox"})
        assert without.status_code == 403 and "expired" in without.text
        forged = await client.post(f"/t/{THREAD}/ask", data={"prompt": "a fox"}, headers={"X-CSRF-Token": "0" * 40})
        assert forged.status_code == 403
        assert not studio.fake.requests_of("/images/generations")
        as_form = await client.post(f"/t/{THREAD}/cancel", data={"csrf": csrf})  # a plain form's hidden field
        assert as_form.status_code == 303


def test_the_token_is_made_once_kept_0600_and_a_public_host_needs_one(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"storage": {"dataDir": str(tmp_path / "data")}}))
    config = load_config(path, env_file=None)
    first = load_token(config)
    kept = tmp_path / "data" / "studio-token"
    assert len(first) >= 40 and kept.read_text().strip() == first
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert load_token(config) == first
    path.write_text(json.dumps({"bots": {"api": {"host": "0.0.0.0"}}}))
    with pytest.raises(ConfigError, match=r"set bots\.web\.token"):
        load_token(load_config(path, env_file=None))


# -- the composer ------------------------------------------------------------------------------
async def test_a_prompt_makes_images_that_arrive_as_events_and_a_repeat_makes_no_second_job(
        serve_studio: StudioFactory) -> None:
    async with serve_studio() as studio:
        client, csrf = await studio.client()
        events: list[dict[str, Any]] = []
        ready = asyncio.Event()
        listener = asyncio.create_task(listen(client, THREAD, events, ready))
        await asyncio.wait_for(ready.wait(), 10)
        answer = await _ask(client, csrf, prompt="a red fox in snow", aspect_ratio="16:9", count="2",
                            request_id="req-0001-abcd")
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["job"]
        record = await _wait_job(studio.service, job_id)
        assert record.status == "delivered" and len(record.artifact_ids) == 2
        for _ in range(200):
            if any(e["type"] == "done" and e["job"] == job_id for e in events):
                break
            await asyncio.sleep(0.01)
        kinds = [e["type"] for e in events if e["job"] == job_id]
        assert kinds[0] == "job" and kinds.count("job") >= 3 and kinds[-1] == "done", kinds  # accepted, 2 images
        again = await _ask(client, csrf, prompt="a red fox in snow", aspect_ratio="16:9", count="2",
                           request_id="req-0001-abcd")
        assert again.status_code == 202 and again.json()["job"] == job_id
        assert len(studio.fake.requests_of("/images/generations")) == 2
        # A request another replica has just taken (recorded once in the shared database) starts nothing here.
        assert await studio.service.first_time("web:request:req-0002-abcd")
        elsewhere = await _ask(client, csrf, prompt="a red fox in snow", request_id="req-0002-abcd")
        assert elsewhere.status_code == 202 and elsewhere.json()["job"] == ""
        assert len(studio.fake.requests_of("/images/generations")) == 2
        fragment = await client.get(f"/t/{THREAD}/jobs/{job_id}")
        assert fragment.text.count('alt="a red fox in snow"') == 2
        assert "16:9" in fragment.text and "custom / flux-dev" in fragment.text
        page = await client.get(f"/t/{THREAD}")
        assert f'id="job-{job_id}"' in page.text and "a red fox in snow" in page.text
        image_id = record.artifact_ids[0]
        original = await client.get(f"/images/{image_id}/file?download=1")
        assert original.content == await studio.service.read(await studio.service.artifact(image_id))
        assert "attachment" in original.headers["content-disposition"]
        listener.cancel()


async def test_a_follow_up_edits_the_threads_last_image(serve_studio: StudioFactory) -> None:
    async with serve_studio() as studio:
        client, csrf = await studio.client()
        first = await _ask(client, csrf, prompt="a lighthouse")
        first_record = await _wait_job(studio.service, first.json()["job"])
        follow = await _ask(client, csrf, prompt="make it warmer", edit_last="on")
        record = await _wait_job(studio.service, follow.json()["job"])
        assert record.status == "delivered"
        assert record.request["mode"] == "edit"
        assert first_record.artifact_ids[0] in record.request["references"]
        edits = len(studio.fake.requests_of("/images/edits"))
        assert edits == 1
        unticked = await _ask(client, csrf, prompt="a new idea")
        fresh = await _wait_job(studio.service, unticked.json()["job"])
        assert fresh.status == "delivered" and not fresh.request["references"]
        assert len(studio.fake.requests_of("/images/edits")) == edits


async def test_uploads_must_be_images_within_the_limit(serve_studio: StudioFactory) -> None:
    async with serve_studio(limits={"maxReferenceBytes": 4096}) as studio:
        client, csrf = await studio.client()
        not_image = await _ask(client, csrf, prompt="use this", files={"references": ("notes.txt", b"hello")})
        assert not_image.status_code == 400
        assert not_image.json()["error"] == "notes.txt is not a PNG, JPEG, WebP or GIF image."
        big = await _ask(client, csrf, prompt="use this", files={"references": ("big.png", b"\x89PNG" + b"0" * 9000)})
        assert big.status_code == 400 and "big.png is larger than" in big.json()["error"]
        good = await _ask(client, csrf, prompt="like this one", files={"references": ("ref.png", png_bytes(32, 32))})
        assert good.status_code == 202, good.text
        record = await _wait_job(studio.service, good.json()["job"])
        assert record.status == "delivered" and record.request["references"]


async def test_refusals_answer_the_request_in_words(serve_studio: StudioFactory) -> None:
    async with serve_studio() as studio:
        client, csrf = await studio.client()
        empty = await _ask(client, csrf, prompt="   ")
        assert empty.status_code == 400 and empty.json()["error"]
        many = await _ask(client, csrf, prompt="foxes", count="9")
        assert many.status_code == 400 and "4" in many.json()["error"]
        bad_ratio = await _ask(client, csrf, prompt="foxes", aspect_ratio="7:banana")
        assert bad_ratio.status_code == 400
        assert not studio.fake.requests_of("/images/generations")


async def test_a_prompt_with_markup_stays_text_and_pages_forbid_inline_script(serve_studio: StudioFactory) -> None:
    async with serve_studio() as studio:
        client, csrf = await studio.client()
        prompt = '<script>alert("x")</script> a cat'
        answer = await _ask(client, csrf, prompt=prompt)
        await _wait_job(studio.service, answer.json()["job"])
        page = await client.get(f"/t/{THREAD}")
        assert "<script>alert" not in page.text and "&lt;script&gt;alert(" in page.text
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        gallery = await client.get("/gallery?q=script")
        assert "<script>alert" not in gallery.text and "&lt;script&gt;" in gallery.text


# -- gallery and image pages -------------------------------------------------------------------
async def test_the_gallery_lists_every_front_ends_images_and_the_image_page_shows_lineage(
        serve_studio: StudioFactory) -> None:
    async with serve_studio() as studio:
        service = studio.service
        cli = await service.submit(ImageRequest("a castle from the cli", ChatRef("cli", "default", "operator")),
                                   enforce_limits=False)
        client, csrf = await studio.client()
        grid = await client.get("/gallery")
        castle = cli.artifacts[0].id
        assert f'/images/{castle}/thumb' in grid.text and 'alt="a castle from the cli"' in grid.text
        only_web = await client.get("/gallery?platform=web")
        assert castle not in only_web.text
        found = await client.get("/gallery?q=CASTLE")
        assert castle in found.text
        thumb = await client.get(f"/images/{castle}/thumb")
        assert thumb.headers["content-type"] == "image/webp"
        with Image.open(__import__("io").BytesIO(thumb.content)) as im:
            assert im.format == "WEBP" and max(im.size) <= 384
        moved = await client.post(f"/images/{castle}/continue", data={"csrf": csrf})
        assert moved.status_code == 303
        thread, edit = re.match(r"/t/([a-z0-9]+)\?edit=(img_\w+)", moved.headers["location"]).groups()
        assert edit == castle
        page = await client.get(moved.headers["location"])
        assert f"Editing <span id=\"editing-id\">{castle}</span>" in page.text
        answer = await _ask(client, csrf, thread=thread, prompt="add a moat", edit_id=castle)
        record = await _wait_job(service, answer.json()["job"])
        child = record.artifact_ids[0]
        parent_page = await client.get(f"/images/{castle}")
        assert f"/images/{child}" in parent_page.text and "Edits of this image" in parent_page.text
        child_page = await client.get(f"/images/{child}")
        assert "Compare with the image it was edited from" in child_page.text
        assert f"/images/{castle}/file" in child_page.text
        assert (await client.get("/images/img_000000000000")).status_code == 404
