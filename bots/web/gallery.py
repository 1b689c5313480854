"""The gallery (every stored image from every front-end, newest first, filtered, paged by cursor), an
image's page with its lineage, and the image files themselves (original and thumbnail)."""

from __future__ import annotations

from datetime import date
from typing import Any, Final

from aiohttp import web

from bots.web.render import html
from bots.web.studio import STUDIO, new_thread
from core.artifacts import is_artifact_id
from core.models import Artifact
from core.service import ImageService
from core.stores import GalleryQuery, ImageRow

__all__ = ["routes"]

PAGE_SIZE: Final = 48
#: Image bytes never change under an id.
_IMMUTABLE: Final = "private, max-age=31536000, immutable"


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        raise web.HTTPBadRequest(text=f"{text!r} is not a date like 2026-12-05.") from None


def _query(request: web.Request) -> tuple[GalleryQuery, dict[str, str]]:
    q = request.query
    filters = {k: q.get(k, "").strip() for k in ("platform", "chat", "provider", "since", "until", "q")}
    before = q.get("before", "")
    query = GalleryQuery(platform=filters["platform"] or None, chat_key=filters["chat"] or None,
                         provider=filters["provider"] or None, since=_day(filters["since"]),
                         until=_day(filters["until"]), search=filters["q"] or None,
                         before=int(before) if before.isdigit() else None, limit=PAGE_SIZE)
    return query, {k: v for k, v in filters.items() if v}


async def gallery(request: web.Request) -> web.StreamResponse:
    service = request.app[STUDIO].service
    query, filters = _query(request)
    page = await service.gallery(query)
    options = await service.gallery_filters()
    return html(request, "gallery.html", page=page, filters=filters, options=options)


async def image_page(request: web.Request) -> web.StreamResponse:
    service = request.app[STUDIO].service
    artifact = await _artifact(service, request.match_info["artifact_id"])
    lineage = await service.lineage(artifact.id)
    parent = await service.artifact(artifact.parent_id) if artifact.parent_id else None
    return html(request, "image.html", image=artifact, parent=parent, lineage=lineage,
                tree=_tree(lineage.descendants, artifact.id))


def _tree(rows: list[ImageRow], root: str) -> list[dict[str, Any]]:
    """Descendants as nested nodes under ``root`` (edits of edits)."""
    children: dict[str, list[ImageRow]] = {}
    for row in rows:
        if row.parent_id:
            children.setdefault(row.parent_id, []).append(row)

    def nodes(parent: str, depth: int) -> list[dict[str, Any]]:
        if depth > 50:
            return []
        return [{"row": row, "children": nodes(row.artifact_id, depth + 1)} for row in children.get(parent, [])]

    return nodes(root, 0)


async def continue_in_studio(request: web.Request) -> web.StreamResponse:
    """A new studio thread whose next prompt edits this image."""
    artifact = await _artifact(request.app[STUDIO].service, request.match_info["artifact_id"])
    raise web.HTTPSeeOther(f"/t/{new_thread()}?edit={artifact.id}")


async def image_file(request: web.Request) -> web.StreamResponse:
    """The stored bytes, untouched (``?download=1``: as a file to save)."""
    service = request.app[STUDIO].service
    artifact = await _artifact(service, request.match_info["artifact_id"])
    etag = f'"{artifact.id}"'
    headers = {"Cache-Control": _IMMUTABLE, "ETag": etag, "X-Content-Type-Options": "nosniff"}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    if request.query.get("download"):
        suffix = artifact.path.rpartition(".")[2] or "png"
        headers["Content-Disposition"] = f'attachment; filename="{artifact.id}.{suffix}"'
    return web.Response(body=await service.read(artifact), content_type=artifact.mime, headers=headers)


async def thumbnail(request: web.Request) -> web.StreamResponse:
    service = request.app[STUDIO].service
    artifact = await _artifact(service, request.match_info["artifact_id"])
    etag = f'"{artifact.id}-thumb"'
    headers = {"Cache-Control": _IMMUTABLE, "ETag": etag, "X-Content-Type-Options": "nosniff"}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=await service.thumbnail(artifact), content_type="image/webp", headers=headers)


async def _artifact(service: ImageService, artifact_id: str) -> Artifact:
    artifact = await service.artifact(artifact_id) if is_artifact_id(artifact_id) else None
    if artifact is None:
        raise web.HTTPNotFound(text="There is no stored image with that id.")
    return artifact


def routes() -> list[web.RouteDef]:
    return [
        web.get("/gallery", gallery),
        web.get("/images/{artifact_id}", image_page),
        web.get("/images/{artifact_id}/file", image_file),
        web.get("/images/{artifact_id}/thumb", thumbnail),
        web.post("/images/{artifact_id}/continue", continue_in_studio),
    ]
