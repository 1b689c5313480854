"""Provider faults end to end: each is retried or reported with its category, nothing crashes, and the
images that did arrive are stored, recorded in the ledger and deliverable.

Faults come from the loopback fake (HTTP statuses, raw bodies, stalls, slow drips, resets) or from a
port nothing listens on; the service, adapters, downloader and store are the real ones.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from core.errors import (
    AuthFailed,
    BadImage,
    ContentPolicy,
    PixbotError,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExceeded,
    RateLimited,
)
from core.jobs import JobRecord
from core.models import ChatRef, ImageRequest, JobResult
from core.net import RetryPolicy
from core.service import ImageService
from tests.crafted_images import header_only_png
from tests.fakes.fake_provider import Answer, FakeProvider
from tests.images import png_bytes
from tests.reliability.conftest import FAST_RETRY, KEY, ONE_SHOT, Harness, api_requests, closed_port, slot_failures

CHAT = ChatRef("telegram", "100", "7")
GENERATIONS = "/custom/v1/images/generations"
_CANNOT_READ = "The image service sent an answer the bot could not read."
_NO_IMAGE = "The image service answered without an image. Try again or rephrase."
_REFUSED_LINK = "The image service returned an image link the bot will not fetch."

Fault = Callable[[FakeProvider], None]


def b64_answer(data: bytes) -> dict[str, Any]:
    """An OpenAI-shaped answer carrying ``data`` as its one ``b64_json`` image."""
    return {"created": 0, "data": [{"b64_json": base64.b64encode(data).decode()}]}


def answer(item: Answer) -> Fault:
    return lambda fake: fake.answers.append(item)


def url_answer(name: str, download: Answer) -> Fault:
    """The API answers with a ``url`` on the fake; downloading that URL gets ``download``."""
    def queue(fake: FakeProvider) -> None:
        fake.answers.append(Answer(200, {"created": 0, "data": [{"url": f"{fake.base_url}/files/{name}"}]}))
        fake.answers.append(Answer(download.status, download.body, download.headers, f"/files/{name}"))
    return queue


async def submit(service: ImageService, count: int) -> tuple[JobResult, JobRecord]:
    result = await service.submit(ImageRequest("a red fox", CHAT, count=count))
    record = await service.jobs.get(result.job_id)
    assert record is not None
    return result, record


def assert_images_on_disk(result: JobResult) -> None:
    for artifact in result.artifacts:
        path = Path(artifact.path)
        assert path.is_file() and path.with_suffix(".json").is_file()
        with Image.open(io.BytesIO(path.read_bytes())) as im:
            assert im.size == (artifact.width, artifact.height)


# -- one slot of three hits the fault: two images kept, one categorised error ---------------------------
PARTIAL: dict[str, tuple[Fault, type[PixbotError], str | None]] = {
    "429 without Retry-After": (lambda f: f.fail_next(429, {"error": {"message": "Rate limit reached"}}),
                                RateLimited, None),
    "500": (lambda f: f.fail_next(500), ProviderUnavailable, None),
    "502 with an HTML body": (lambda f: f.fail_next(502, "<html><h1>502 Bad Gateway</h1></html>"),
                              ProviderUnavailable, None),
    "503": (lambda f: f.fail_next(503, {"error": {"message": "overloaded"}}), ProviderUnavailable, None),
    "504": (lambda f: f.fail_next(504, "gateway timeout"), ProviderTimeout, None),
    "401": (lambda f: f.fail_next(401, {"error": {"message": "Incorrect API key provided"}}), AuthFailed, None),
    "402": (lambda f: f.fail_next(402, {"error": {"message": "payment required"}}), QuotaExceeded, None),
    "400 safety refusal": (lambda f: f.fail_next(400, {"error": {"message": "rejected by our safety system"}}),
                           ContentPolicy, None),
    "connection reset": (answer(Answer(reset=True)), ProviderUnavailable, None),
    "invalid JSON": (answer(Answer(200, b'{"data": [', content_type="application/json")),
                     ProviderUnavailable, _CANNOT_READ),
    "JSON array instead of an object": (answer(Answer(200, [{"b64_json": "x"}])), ProviderUnavailable, _CANNOT_READ),
    "data is not a list": (answer(Answer(200, {"data": "nope"})), ProviderUnavailable, _NO_IMAGE),
    "items of the wrong type": (answer(Answer(200, {"data": [7, None, {"b64_json": 5}]})), ProviderUnavailable,
                                _NO_IMAGE),
    "b64_json that is not base64": (answer(Answer(200, {"data": [{"b64_json": "%%% not base64 %%%"}]})),
                                    BadImage, "The image service sent a broken image."),
    "non-image bytes": (answer(Answer(200, b64_answer(b"<svg xmlns='http://www.w3.org/2000/svg'/>"))),
                        BadImage, "The image service sent something that is not an image."),
    "truncated PNG": (answer(Answer(200, b64_answer(png_bytes(32, 32)[:60]))),
                      BadImage, "That image is damaged or incomplete."),
    "decompression bomb": (answer(Answer(200, b64_answer(header_only_png(20000, 20000)))),
                           BadImage, "That image is too large: 20000x20000 pixels; the limit is 40 megapixels."),
    "url redirecting to a private address": (
        url_answer("redirect.png", Answer(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})),
        BadImage, _REFUSED_LINK),
    "url to a text file": (url_answer("notes.png", Answer(200, "just text")), BadImage,
                           "The image service returned a file that is not a supported image."),
    "url that is gone": (url_answer("gone.png", Answer(404, "not found")), ProviderUnavailable, None),
}


async def test_one_faulty_slot_of_three_keeps_the_other_two_images(
    harness: Harness, fake: FakeProvider, caplog: pytest.LogCaptureFixture, subtests: pytest.Subtests
) -> None:
    """One job per fault, all on one service: opening one per case would cost more than the cases."""
    async with harness.open(retry=ONE_SHOT) as service:
        for name, (fault, error_class, message) in PARTIAL.items():
            with subtests.test(name):
                fake.answers.clear()
                logged, asked = len(caplog.records), len(fake.requests_of(GENERATIONS))
                fault(fake)
                result, record = await submit(service, count=3)
                pending = {r.id: set(r.artifact_ids) for r in await service.jobs.pending_delivery("telegram")}

                assert len(result.artifacts) == 2 and len({a.id for a in result.artifacts}) == 2
                assert_images_on_disk(result)
                (error,) = result.errors
                assert error.slot in (0, 1, 2) and error.provider == "custom"
                assert (error.category, error.message) == (error_class.category,
                                                           message or error_class.default_message)
                assert record.status == "stored" and set(record.artifact_ids) == {a.id for a in result.artifacts}
                assert pending[record.id] == set(record.artifact_ids)
                failures = slot_failures(caplog, since=logged)
                assert len(failures) == 1 and f"custom failed: {error_class.category} (" in failures[0], failures
                assert len(fake.requests_of(GENERATIONS)) - asked == 3
                assert not fake.answers, "every scripted fault was used"


# -- retried, then served --------------------------------------------------------------------------------
RETRIED: dict[str, tuple[Fault, str]] = {
    "429 with Retry-After: 0": (lambda f: f.fail_next(429, headers={"Retry-After": "0"}, times=2), "rate_limited"),
    "429 without Retry-After": (lambda f: f.fail_next(429, times=2), "rate_limited"),
    "500": (lambda f: f.fail_next(500, times=2), "provider_unavailable"),
    "502": (lambda f: f.fail_next(502, "Bad Gateway", times=2), "provider_unavailable"),
    "503": (lambda f: f.fail_next(503, times=2), "provider_unavailable"),
    "504": (lambda f: f.fail_next(504, times=2), "timeout"),
    "connection reset": (lambda f: f.answers.extend([Answer(reset=True)] * 2), "provider_unavailable"),
    "invalid JSON": (lambda f: f.answers.extend([Answer(200, b"<html>", content_type="application/json")] * 2),
                     "provider_unavailable"),
}


async def test_retryable_faults_are_retried_until_served(
    harness: Harness, fake: FakeProvider, caplog: pytest.LogCaptureFixture, subtests: pytest.Subtests
) -> None:
    async with harness.open(retry=FAST_RETRY) as service:
        for name, (fault, category) in RETRIED.items():
            with subtests.test(name):
                fake.answers.clear()
                logged, asked = len(caplog.records), len(fake.requests_of(GENERATIONS))
                fault(fake)
                result, record = await submit(service, count=1)
                assert result.ok and len(result.artifacts) == 1 and record.status == "stored"
                assert len(fake.requests_of(GENERATIONS)) - asked == 3
                retries = [r.getMessage() for r in caplog.records[logged:] if " retry " in r.getMessage()]
                assert len(retries) == 2 and all(m.endswith(f"after {category}") for m in retries), retries


NOT_RETRIED: dict[str, tuple[Fault, type[PixbotError]]] = {
    "401": (lambda f: f.fail_next(401), AuthFailed),
    "402": (lambda f: f.fail_next(402), QuotaExceeded),
    "400 safety refusal": (lambda f: f.fail_next(400, {"error": {"message": "content_policy_violation"}}),
                           ContentPolicy),
    "429 with a Retry-After beyond the retry budget": (
        lambda f: f.fail_next(429, headers={"Retry-After": "3600"}), RateLimited),
    "non-image bytes": (answer(Answer(200, b64_answer(b"plain text, not a picture"))), BadImage),
    "decompression bomb": (answer(Answer(200, b64_answer(header_only_png(20000, 20000)))), BadImage),
}


async def test_final_answers_are_not_retried_and_fail_the_job(
    harness: Harness, fake: FakeProvider, subtests: pytest.Subtests
) -> None:
    async with harness.open(retry=FAST_RETRY) as service:
        for name, (fault, error_class) in NOT_RETRIED.items():
            with subtests.test(name):
                fake.answers.clear()
                asked = len(fake.requests_of(GENERATIONS))
                fault(fake)
                result, record = await submit(service, count=1)
                assert result.artifacts == ()
                assert [e.category for e in result.errors] == [error_class.category]
                assert (record.status, record.error) == ("failed", error_class.category)
                assert len(fake.requests_of(GENERATIONS)) - asked == 1
        assert await service.pending_deliveries("telegram") == []


async def test_a_provider_that_stays_down_fails_after_every_attempt(harness: Harness, fake: FakeProvider) -> None:
    fake.fail_next(503, headers={"Retry-After": "0"}, times=6)
    async with harness.open(retry=FAST_RETRY) as service:
        result, record = await submit(service, count=2)
    assert result.artifacts == ()
    assert [(e.slot, e.category) for e in result.errors] == [(0, "provider_unavailable"), (1, "provider_unavailable")]
    assert (record.status, record.error, record.artifact_ids) == ("failed", "provider_unavailable", ())
    assert len(fake.requests_of(GENERATIONS)) == 6  # three attempts per slot


# -- below HTTP: nothing listening, no answer in time, a body that never ends ----------------------------
async def test_connect_errors_are_unavailable_and_a_fallback_serves(harness: Harness, fake: FakeProvider) -> None:
    dead = {"providers": {"custom": {"apiBase": f"http://127.0.0.1:{closed_port()}/v1"}}}
    async with harness.open(retry=FAST_RETRY, **dead) as service:
        result, record = await submit(service, count=2)
    assert result.artifacts == () and fake.requests == []
    assert {(e.category, e.message) for e in result.errors} == {
        ("provider_unavailable", ProviderUnavailable.default_message)}
    assert (record.status, record.error) == ("failed", "provider_unavailable")

    dead["providers"]["openai"] = {"apiKey": KEY, "apiBase": fake.api_base("openai")}
    fallback = {"imageGeneration": {"fallbacks": [{"provider": "openai", "model": "gpt-image-1"}]}}
    async with harness.open(retry=FAST_RETRY, tools=fallback, **dead) as service:
        result, record = await submit(service, count=2)
    assert result.ok and {(a.provider, a.model) for a in result.artifacts} == {("openai", "gpt-image-1")}
    assert any("fell back to openai/gpt-image-1" in note for note in result.report.notes)
    assert record.status == "stored"
    assert len(api_requests(fake)) == 2


async def test_a_read_timeout_is_retried_then_reported(harness: Harness, fake: FakeProvider) -> None:
    fake.latency = 0.4  # longer than the provider's timeout: no answer arrives in time
    quick = {"providers": {"custom": {"timeout": 0.1}}}
    async with harness.open(retry=RetryPolicy(attempts=2, base_delay=0.001, jitter=0.0), **quick) as service:
        result, record = await submit(service, count=1)
    assert [(e.category, e.message) for e in result.errors] == [("timeout", ProviderTimeout.default_message)]
    assert (record.status, record.error) == ("failed", "timeout")
    assert len(fake.requests_of(GENERATIONS)) == 2


async def test_one_hanging_slot_times_out_and_the_others_are_kept(harness: Harness, fake: FakeProvider) -> None:
    fake.stall_next()  # this request is parked until the fake stops: it never answers in time
    async with harness.open(retry=ONE_SHOT, providers={"custom": {"timeout": 0.5}}) as service:
        result, record = await submit(service, count=3)
    assert len(result.artifacts) == 2 and [e.category for e in result.errors] == ["timeout"]
    assert record.status == "stored" and len(record.artifact_ids) == 2


async def test_a_slow_drip_body_is_cut_off_at_the_provider_timeout(harness: Harness, fake: FakeProvider) -> None:
    """One byte every 50 ms never trips a per-read timeout; the provider timeout bounds the whole answer."""
    drip = Answer(200, b64_answer(png_bytes(16, 16)), drip=0.05, drip_bytes=1)  # ~8 s if read to the end
    fake.answers.append(drip)
    async with harness.open(retry=ONE_SHOT, providers={"custom": {"timeout": 0.5}}) as service:
        result, record = await submit(service, count=3)
        assert len(result.artifacts) == 2 and [e.category for e in result.errors] == ["timeout"]
        assert record.status == "stored"

        fake.answers.append(drip)
        service.retry = FAST_RETRY
        again, _ = await submit(service, count=1)
    assert again.ok, "the timed-out attempt is retried"
    assert len(fake.requests_of(GENERATIONS)) == 5


async def test_the_job_deadline_stops_a_hanging_slot_and_keeps_the_rest(
    harness: Harness, fake: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    fake.stall_next()  # the provider's own timeout (120 s) is far away; the job's deadline comes first
    async with harness.open(retry=ONE_SHOT, limits={"jobTimeoutS": 0.5}) as service:
        result, record = await submit(service, count=3)
    assert len(result.artifacts) == 2 and record.status == "stored"
    assert [(e.category, e.message) for e in result.errors] == [
        ("timeout", "The job took longer than 0.5 s and was stopped.")]
    (failure,) = slot_failures(caplog)
    assert failure.endswith("custom failed: timeout (limits.jobTimeoutS 0.5s)")
