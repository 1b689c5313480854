"""The studio page: threads of requests and results. Gestures (a prompt, Edit, Again, a ratio) become
``ChatFlow`` calls on a ``WebSurface``; the page is rendered from the job ledger and kept live by the
thread's event stream."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from multidict import MultiDictProxy

from bots.chat import Ask, ChatFlow
from bots.web.events import ThreadEvents, stream
from bots.web.render import html
from bots.web.surface import PLATFORM, WebSurface, thread_key
from core.artifacts import is_artifact_id
from core.errors import InvalidRequest, PixbotError
from core.images import sniff_mime
from core.models import Artifact, Reference
from core.references import MAX_REFERENCES
from core.service import ImageService
from core.stores import JobRecord

__all__ = ["STUDIO", "Studio", "routes"]

log = logging.getLogger(__name__)

_THREAD: Final = re.compile(r"^[a-z0-9]{6,32}$")
_REQUEST_ID: Final = re.compile(r"^[A-Za-z0-9-]{8,64}$")
#: Jobs a thread page shows (the most recent).
THREAD_JOBS: Final = 50


@dataclass
class Studio:
    service: ImageService
    flow: ChatFlow
    events: ThreadEvents
    #: Client request ids this process accepted → the job they started (None while it is being prepared).
    accepted: dict[str, str | None] = field(default_factory=dict)
    #: Set when the server begins to stop.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


STUDIO = web.AppKey("pixbot_studio", Studio)


@dataclass
class JobView:
    record: JobRecord
    images: list[Artifact]
    said: list[str]

    @property
    def running(self) -> bool:
        return self.record.status in ("queued", "generating")

    @property
    def failed(self) -> bool:
        return self.record.status == "failed" and not self.images


def new_thread() -> str:
    return secrets.token_hex(6)


def _thread(request: web.Request) -> str:
    thread = request.match_info["thread"]
    if not _THREAD.match(thread):
        raise web.HTTPNotFound(text="There is no such thread.")
    return thread


async def job_view(service: ImageService, record: JobRecord) -> JobView:
    images = [a for a in [await service.artifact(i) for i in record.artifact_ids] if a is not None]
    said = [s for s in record.origin.get("said") or () if isinstance(s, str)]
    return JobView(record, images, said)


def set_up(service: ImageService) -> bool:
    """Whether the default provider has what it needs to be called."""
    adapter = service.providers.get(service.default_provider)
    return adapter is not None and not adapter.missing()


def model_choices(service: ImageService) -> list[dict[str, Any]]:
    """The default chain's models, then each configured provider's default, with what each can do."""
    pairs = [(name, model or service.providers[name].default_model)
             for name, model in service.config.image.chain() if name in service.providers]
    pairs += [(name, adapter.default_model) for name, adapter in sorted(service.providers.items())
              if name in service.config.providers and not adapter.missing()]
    seen: set[str] = set()
    choices = []
    for provider, model in pairs:
        value = f"{provider}/{model}"
        if value in seen or service.providers[provider].missing():
            continue
        seen.add(value)
        caps = service.providers[provider].capabilities(model)
        fixed = caps.ratios is not None and not caps.ratios
        marks = [m for m, on in (("text only", not caps.edits), ("no ratio choice", fixed)) if on]
        choices.append({"value": value, "label": f"{provider} / {model}" + (f" ({', '.join(marks)})" if marks else ""),
                        "ratios": "any" if caps.ratios is None else ",".join(sorted(caps.ratios)),
                        "edits": caps.edits})
    return choices


async def _page(request: web.Request, thread: str, jobs: list[JobView]) -> web.Response:
    studio = request.app[STUDIO]
    service = studio.service
    edit = request.query.get("edit", "")
    editing = await service.artifact(edit) if is_artifact_id(edit) else None
    return html(request, "studio.html", thread=thread, jobs=jobs, threads=await service.threads(PLATFORM),
                models=model_choices(service), max_images=service.max_images, editing=editing,
                has_image=any(j.images for j in jobs), default_ratio=service.config.image.default_aspect_ratio)


async def studio_home(request: web.Request) -> web.StreamResponse:
    service = request.app[STUDIO].service
    if not set_up(service):
        raise web.HTTPFound("/setup")
    return await _page(request, new_thread(), [])


async def thread_page(request: web.Request) -> web.StreamResponse:
    thread = _thread(request)
    service = request.app[STUDIO].service
    records = await service.chat_jobs(thread_key(thread), THREAD_JOBS)
    return await _page(request, thread, [await job_view(service, r) for r in records])


async def job_fragment(request: web.Request) -> web.StreamResponse:
    thread = _thread(request)
    service = request.app[STUDIO].service
    record = await service.job(request.match_info["job"])
    if record is None or record.chat_key != thread_key(thread):
        raise web.HTTPNotFound(text="There is no such job in this thread.")
    return html(request, "job.html", job=await job_view(service, record), thread=thread)


async def thread_events(request: web.Request) -> web.StreamResponse:
    return await stream(request, request.app[STUDIO].events, _thread(request))


# -- gestures ------------------------------------------------------------------------------------
async def ask(request: web.Request) -> web.StreamResponse:
    """The composer: a prompt with its options and reference images."""
    thread = _thread(request)
    studio = request.app[STUDIO]
    form = await request.post()
    request_id = str(form.get("request_id", ""))
    if not _REQUEST_ID.match(request_id):
        request_id = secrets.token_hex(8)
    repeated = await _repeated(studio, thread, request_id)
    if repeated is not None:
        return _accepted(request, thread, repeated)
    if not await studio.service.first_time(f"web:request:{request_id}"):
        # Another replica took this very request a moment ago and is starting its job: the page hears
        # of it on its event stream, never a second paid call.
        return _accepted(request, thread, "")
    try:
        built = await _ask_from_form(studio.service, thread, form)
    except PixbotError as exc:
        return _refused(request, thread, exc.public_message)

    async def build() -> Ask:
        return built

    surface = WebSurface(studio.service, studio.events, thread, request_id=request_id)
    return await _start(request, studio, surface, lambda: studio.flow.run(surface, build))


async def again(request: web.Request) -> web.StreamResponse:
    """Again (the image's request once more) or a ratio variant of it."""
    thread = _thread(request)
    studio = request.app[STUDIO]
    form = await request.post()
    artifact_id, ratio = str(form.get("artifact_id", "")), str(form.get("ratio", "")) or None
    job_id = str(form.get("job_id", ""))
    surface = WebSurface(studio.service, studio.events, thread, request_id=secrets.token_hex(8))
    if job_id:
        return await _start(request, studio, surface, lambda: studio.flow.again_job(surface, job_id))
    if not is_artifact_id(artifact_id):
        return _refused(request, thread, "Choose an image to make again.")
    return await _start(request, studio, surface, lambda: studio.flow.again(surface, artifact_id, ratio))


async def cancel(request: web.Request) -> web.StreamResponse:
    thread = _thread(request)
    studio = request.app[STUDIO]
    text = await studio.flow.cancel(WebSurface(studio.service, studio.events, thread).chat)
    if _wants_json(request):
        return web.json_response({"text": text})
    raise web.HTTPSeeOther(f"/t/{thread}")


async def _repeated(studio: Studio, thread: str, request_id: str) -> str | None:
    """The job a repeated submit (double click, retry after a lost answer) already started, if any."""
    if request_id in studio.accepted:
        return studio.accepted[request_id] or ""
    for record in await studio.service.chat_jobs(thread_key(thread), THREAD_JOBS):
        if record.origin.get("request_id") == request_id:
            return record.id
    return None


async def _ask_from_form(service: ImageService, thread: str, form: MultiDictProxy[Any]) -> Ask:
    prompt = str(form.get("prompt", ""))
    ratio = str(form.get("aspect_ratio", "")).strip()
    size = str(form.get("size", "")).strip() or None
    count_text = str(form.get("count", "")).strip() or "1"
    if not count_text.isdigit():
        raise InvalidRequest(f"Images: choose a number from 1 to {service.max_images}.")
    provider, _, model = str(form.get("model", "")).partition("/")
    references = [Reference(data=data, name=name) for name, data in await _uploads(service, form)]
    edit_id = str(form.get("edit_id", "")).strip()
    target = None
    if edit_id:
        if not is_artifact_id(edit_id) or await service.artifact(edit_id) is None:
            raise InvalidRequest("The image to edit is no longer stored.")
        references.insert(0, Reference(artifact_id=edit_id))
        target = edit_id
    follow_up = not edit_id and form.get("edit_last") == "on" and \
        await service.last_image(thread_key(thread)) is not None
    return Ask(prompt=prompt, mode="edit" if edit_id or follow_up else "auto", references=tuple(references),
               target=target or ("the thread's last image" if follow_up else None),
               aspect_ratio=None if ratio in ("", "auto") else ratio, size=size, count=int(count_text),
               provider=provider or None, model=model or None, include_last=follow_up)


async def _uploads(service: ImageService, form: MultiDictProxy[Any]) -> list[tuple[str, bytes]]:
    """Reference images from the file picker, drop or paste: each an image within the size limit."""
    limit = service.config.limits.max_reference_bytes
    files = [f for f in form.getall("references", []) if isinstance(f, web.FileField) and f.filename]
    if len(files) > MAX_REFERENCES:
        raise InvalidRequest(f"Too many reference images: {len(files)}; the limit is {MAX_REFERENCES}.")
    uploads = []
    for upload in files:
        data = await asyncio.to_thread(upload.file.read, limit + 1)
        if len(data) > limit:
            raise InvalidRequest(f"{upload.filename} is larger than the {limit / 1_048_576:.0f} MB limit for "
                                 "reference images.")
        if sniff_mime(data) is None:
            raise InvalidRequest(f"{upload.filename} is not a PNG, JPEG, WebP or GIF image.")
        uploads.append((upload.filename, data))
    return uploads


async def _start(request: web.Request, studio: Studio, surface: WebSurface,
                 work: Callable[[], Coroutine[Any, Any, None]]) -> web.StreamResponse:
    """Run the gesture in the background (it outlives this request) and answer once the service has
    accepted it as a job, or refused it in words."""
    thread = surface.thread
    if studio.flow.closing:
        return _refused(request, thread, "The studio is restarting. Try again in a moment.")
    request_id = surface.request_id or ""
    studio.accepted[request_id] = None
    accepted = surface.accepted = asyncio.get_running_loop().create_future()
    task = studio.flow.inflight.spawn(work(), thread_key(thread), name=f"web:{thread}")
    await asyncio.wait([accepted, task], return_when=asyncio.FIRST_COMPLETED)
    if surface.job_id is None:
        studio.accepted.pop(request_id, None)
        return _refused(request, thread, surface.refusal or PixbotError.default_message)
    studio.accepted[request_id] = surface.job_id
    if len(studio.accepted) > 1000:  # only recent repeats matter; the ledger answers older ones
        for old in list(studio.accepted)[:500]:
            studio.accepted.pop(old, None)
    return _accepted(request, thread, surface.job_id)


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _accepted(request: web.Request, thread: str, job_id: str) -> web.StreamResponse:
    if _wants_json(request):
        return web.json_response({"thread": thread, "job": job_id}, status=202)
    raise web.HTTPSeeOther(f"/t/{thread}")


def _refused(request: web.Request, thread: str, text: str) -> web.StreamResponse:
    if _wants_json(request):
        return web.json_response({"thread": thread, "error": text}, status=400)
    return web.Response(text=text, status=400)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/", studio_home),
        web.get("/t/{thread}", thread_page),
        web.get("/t/{thread}/events", thread_events),
        web.get("/t/{thread}/jobs/{job}", job_fragment),
        web.post("/t/{thread}/ask", ask),
        web.post("/t/{thread}/again", again),
        web.post("/t/{thread}/cancel", cancel),
    ]
