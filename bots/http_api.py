"""The OpenAI Images-compatible HTTP API (aiohttp): routes, auth, size caps, and answers from JobResults."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import BodyPartReader, web
from pydantic import BaseModel, ValidationError

from bots.api_models import (
    MAX_EDIT_IMAGES,
    ApiError,
    EditForm,
    GenerationBody,
    ImageOptions,
    error_from_category,
    error_from_pixbot,
    form_fields,
    split_model,
    validation_error,
)
from core.config import ApiConfig, AppConfig
from core.errors import ConfigError, PixbotError
from core.images import sniff_mime
from core.models import Artifact, ChatRef, ImageRequest, Reference, SlotError
from core.net import is_loopback_host
from core.service import ImageService

__all__ = ["API_CONFIG", "SERVICE", "artifact_signature", "make_api", "make_app", "run_api"]

log = logging.getLogger(__name__)

SERVICE = web.AppKey("pixbot_service", ImageService)
API_CONFIG = web.AppKey("pixbot_api_config", ApiConfig)

_JSON_MAX = 1024 * 1024  # a generation body carries no images
_TEXT_FIELD_MAX = 256 * 1024
_CHUNK = 256 * 1024
_INLINE_ENCODE_BYTES = 256 * 1024
_Body = TypeVar("_Body", bound=BaseModel)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def artifact_signature(api_key: str, artifact_id: str) -> str:
    """The ``sig`` that lets a ``url`` answer be fetched without the bearer key (e.g. by a browser)."""
    return hmac.new(api_key.encode(), artifact_id.encode(), hashlib.sha256).hexdigest()[:32]


def make_api(config: AppConfig, service: ImageService) -> web.Application:
    """The API's routes, mounted under ``/v1`` of the server (``bots.web.server``)."""
    app = web.Application(middlewares=[_border], client_max_size=config.bots.api.max_body_bytes)
    app[SERVICE] = service
    app[API_CONFIG] = config.bots.api
    app.router.add_post("/images/generations", _generations)
    app.router.add_post("/images/edits", _edits)
    app.router.add_get("/models", _models)
    app.router.add_get("/artifacts/{artifact_id}", _artifact)
    return app


def make_app(config: AppConfig, service: ImageService) -> web.Application:
    """The API alone as a served application (``/v1`` and ``/healthz``), as ``pixbot serve`` runs it."""
    from bots.web.server import make_server

    return make_server(_api_only(config), service)


async def run_api(config: AppConfig, service: ImageService, stop: asyncio.Event) -> None:
    """``pixbot serve``: the API alone, until ``stop``."""
    from bots.web.server import run_server

    api = config.bots.api
    if not is_loopback_host(api.host) and not api.api_key:
        raise ConfigError(f"bots.api.host {api.host!r} is not loopback; set bots.api.apiKey to expose the API")
    await run_server(_api_only(config), service, stop)


def _api_only(config: AppConfig) -> AppConfig:
    bots = config.bots
    return config.model_copy(update={"bots": bots.model_copy(update={
        "api": bots.api.model_copy(update={"enabled": True}),
        "web": bots.web.model_copy(update={"enabled": False})})})


@web.middleware
async def _border(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Auth and size checks first; every failure leaves in OpenAI's error shape."""
    started = time.monotonic()
    try:
        _check_auth(request)
        limit = request.app[API_CONFIG].max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise _too_large(limit)
        response = await handler(request)
    except ApiError as exc:
        response = _error_response(exc)
    except web.HTTPRequestEntityTooLarge:
        response = _error_response(_too_large(request.app[API_CONFIG].max_body_bytes))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        response = _error_response(ApiError(exc.status, exc.reason, code=code))
    except PixbotError as exc:
        response = _error_response(error_from_pixbot(exc))
    except Exception:
        log.exception("api %s %s failed", request.method, request.path)
        response = _error_response(error_from_category("internal", PixbotError.default_message))
    log.info("api %s %s -> %d in %.2fs", request.method, request.path, response.status,
             time.monotonic() - started)
    return response


def _check_auth(request: web.Request) -> None:
    key = request.app[API_CONFIG].api_key
    if not key:
        return
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), key.encode()):
        return
    artifact_id = request.match_info.get("artifact_id")
    sig = request.query.get("sig", "")
    if artifact_id is not None and sig and hmac.compare_digest(
            sig.encode(), artifact_signature(key, artifact_id).encode()):
        return
    raise ApiError(401, "Incorrect or missing API key. Send 'Authorization: Bearer <bots.api.apiKey>'.",
                   code="invalid_api_key")


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"The request body is too large; the limit is {limit / 1_048_576:.1f} MB.",
                    code="request_too_large")


def _error_response(exc: ApiError) -> web.Response:
    headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after else None
    return web.Response(status=exc.status, body=exc.body(), content_type="application/json", headers=headers)


def _parse(model: type[_Body], data: Any) -> _Body:
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


async def _generations(request: web.Request) -> web.StreamResponse:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > _JSON_MAX:
            raise _too_large(_JSON_MAX)
        chunks.append(chunk)
    try:
        data = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "The request body is not valid JSON.", code="invalid_json") from None
    return await _answer(request, _parse(GenerationBody, data), ())


async def _edits(request: web.Request) -> web.StreamResponse:
    if request.content_type != "multipart/form-data":
        raise ApiError(400, "Send images/edits as multipart/form-data with 'image' or 'image[]' files.",
                       code="invalid_content_type")
    fields, images = await _read_multipart(request)
    if not images:
        raise ApiError(400, "Attach at least one image as 'image' or 'image[]'.", code="missing_image",
                       param="image")
    return await _answer(request, _parse(EditForm, form_fields(fields)), tuple(images))


async def _read_multipart(request: web.Request) -> tuple[dict[str, str], list[Reference]]:
    """Stream the parts with our own caps (aiohttp's client_max_size does not cover multipart())."""
    service, api = request.app[SERVICE], request.app[API_CONFIG]
    per_image = service.config.limits.max_reference_bytes
    fields: dict[str, str] = {}
    images: list[Reference] = []
    read_so_far = 0  # the whole body's bytes, across parts
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise ApiError(400, "Nested multipart bodies are not supported.", code="invalid_multipart")
        name = part.name or ""
        if name in ("mask", "markup"):
            raise ApiError(400, f"'{name}' is not supported: describe the change in the prompt instead.",
                           code="unsupported", param=name)
        if name in ("image", "image[]"):
            if len(images) >= MAX_EDIT_IMAGES:
                raise ApiError(400, f"Too many images: the limit is {MAX_EDIT_IMAGES}.", param="image")
            label = f"image {len(images) + 1}" + (f" ({part.filename})" if part.filename else "")
            data = await _read_part(part, api.max_body_bytes - read_so_far, per_image, label, api.max_body_bytes)
            read_so_far += len(data)
            if sniff_mime(data) is None:
                raise ApiError(400, f"{label} is not a PNG, JPEG, WebP or GIF image.", code="invalid_image",
                               param="image")
            images.append(Reference(data=data, name=part.filename or f"upload-{len(images) + 1}"))
        else:
            data = await _read_part(part, api.max_body_bytes - read_so_far, _TEXT_FIELD_MAX, f"field {name!r}",
                                    api.max_body_bytes)
            read_so_far += len(data)
            if part.filename is None:
                fields[name] = data.decode("utf-8", errors="replace")
    return fields, images


async def _read_part(part: BodyPartReader, body_left: int, part_limit: int, label: str, body_limit: int) -> bytes:
    """One part, refused as soon as it passes its own limit or what is left of the body's."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(_CHUNK):
        size += len(chunk)
        if size > body_left:
            raise _too_large(body_limit)
        if size > part_limit:
            raise ApiError(413, f"{label} is too large; the limit is {part_limit / 1_048_576:.1f} MB.",
                           code="request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


async def _answer(request: web.Request, options: ImageOptions,
                  references: tuple[Reference, ...]) -> web.Response:
    service = request.app[SERVICE]
    provider, model = split_model(options.model, service.config.image, service.providers)
    if options.n is not None and options.n > service.max_images:
        raise ApiError(400, f"n: You can ask for 1 to {service.max_images} images at a time (you asked for "
                            f"{options.n}).", code="invalid_value", param="n")
    image_request = ImageRequest(
        prompt=options.prompt, chat=_chat(request, options.chat_user), references=references,
        aspect_ratio=options.aspect_ratio, size=options.size, count=options.n or 1, provider=provider,
        model=model, mode="edit" if references else "generate", origin={"front_end": "api"})
    try:
        result = await service.submit(image_request)
    except PixbotError as exc:
        raise error_from_pixbot(exc) from None
    if not result.artifacts:
        first = result.errors[0] if result.errors else SlotError(0, "internal", PixbotError.default_message)
        raise error_from_pixbot(first)
    for error in result.errors:
        log.info("api job %s: image %d failed: %s", result.job_id, error.slot + 1, error.category)
    if options.response_format == "url":
        images: list[bytes] = []
        urls = [await _url_item(request, a) for a in result.artifacts]
    else:
        images, urls = [await service.read(a) for a in result.artifacts], []

    def answer() -> bytes:
        data = urls or [{"b64_json": base64.b64encode(image).decode("ascii")} for image in images]
        return json.dumps({"created": int(time.time()), "data": data}).encode()

    # Encoding a small answer costs less than the thread hop it would take; a large one goes to a thread.
    body = answer() if sum(map(len, images)) <= _INLINE_ENCODE_BYTES else await asyncio.to_thread(answer)
    await service.mark_delivered(result.job_id, image_request.chat.key, [])  # the answer is the delivery
    return web.Response(body=body, content_type="application/json")


def _chat(request: web.Request, user: str | None) -> ChatRef:
    """``user`` is the chat and quota key; without it, the API key (hashed, never stored) is."""
    if user:
        return ChatRef("api", user, user)
    key = request.app[API_CONFIG].api_key
    ident = "key-" + hashlib.sha256(key.encode()).hexdigest()[:12] if key else "anonymous"
    return ChatRef("api", ident, ident)


async def _url_item(request: web.Request, artifact: Artifact) -> dict[str, str]:
    """A URL on the host and port this request reached (the socket's own address, not Host)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if sockname:
        host, port = str(sockname[0]), int(sockname[1])
        origin = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    else:
        origin = f"{request.scheme}://{request.host}"
    url = f"{origin}/v1/artifacts/{artifact.id}"
    key = request.app[API_CONFIG].api_key
    return {"url": f"{url}?sig={artifact_signature(key, artifact.id)}" if key else url}


async def _models(request: web.Request) -> web.Response:
    """The default provider/model first, then fallbacks and each configured provider's default."""
    service = request.app[SERVICE]
    image = service.config.image
    pairs = [(name, model or service.providers[name].default_model)
             for name, model in image.chain() if name in service.providers]
    # Providers the operator set up: a keyless one (ollama) is not "available" just because it needs no key.
    pairs += [(name, adapter.default_model) for name, adapter in sorted(service.providers.items())
              if name in service.config.providers and not adapter.missing()]
    seen: set[str] = set()
    data: list[dict[str, Any]] = []
    for provider, model in pairs:
        model_id = f"{provider}/{model}"
        if model_id not in seen:
            seen.add(model_id)
            data.append({"id": model_id, "object": "model", "created": 0, "owned_by": provider})
    return web.json_response({"object": "list", "data": data})


async def _artifact(request: web.Request) -> web.StreamResponse:
    artifact_id = request.match_info["artifact_id"]
    service = request.app[SERVICE]
    artifact = await service.artifact(artifact_id)
    if artifact is None:
        raise ApiError(404, f"There is no image with id {artifact_id[:40]!r}.", code="not_found")
    data = await service.read(artifact)
    return web.Response(body=data, content_type=artifact.mime,
                        headers={"Cache-Control": "private, max-age=86400, immutable"})

