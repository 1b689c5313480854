"""The fake Telegram's file store: uploads and file_ids in, PhotoSize/Document dicts out, with the limits."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass
from typing import Any

from tests.fakes.telegram_wire import (
    DOCUMENT_UPLOAD_LIMIT,
    PHOTO_UPLOAD_LIMIT,
    ApiError,
    Json,
    Upload,
    bad_request,
    render_photo,
)

__all__ = ["FileStore", "StoredFile"]

Uploads = dict[str, Upload]

# Fixed table, not `mimetypes`: the system's mime database differs between machines.
_MIME_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp",
               "gif": "image/gif", "pdf": "application/pdf", "txt": "text/plain", "zip": "application/zip"}


@dataclass(frozen=True)
class StoredFile:
    """One downloadable file; each photo size is a file of its own."""

    file_id: str
    file_unique_id: str
    kind: str  # "photo" or "document"; Telegram refuses to send one as the other
    data: bytes
    file_path: str  # for GET /file/bot<token>/<file_path>
    mime_type: str
    file_name: str | None = None

    def as_document(self) -> Json:
        return {"file_id": self.file_id, "file_unique_id": self.file_unique_id, "file_name": self.file_name,
                "mime_type": self.mime_type, "file_size": len(self.data)}


class FileStore:
    """Files in memory. Photos are re-encoded (several JPEG sizes, largest last); documents kept as sent."""

    def __init__(self) -> None:
        self.by_id: dict[str, StoredFile] = {}
        self.by_path: dict[str, StoredFile] = {}
        self._photo_sets: dict[str, list[Json]] = {}  # any size's file_id -> all sizes of that photo
        self._counter = 0

    def _add(self, kind: str, data: bytes, ext: str, mime: str, file_name: str | None = None) -> StoredFile:
        self._counter += 1
        n = self._counter
        prefix = "AgAC" if kind == "photo" else "BQAC"
        stored = StoredFile(f"{prefix}-{n:05d}", f"AQAD{n:05d}", kind, data, f"{kind}s/file_{n}.{ext}",
                            mime, file_name)
        self.by_id[stored.file_id] = self.by_path[stored.file_path] = stored
        return stored

    async def add_photo(self, data: bytes) -> list[Json]:
        """Decode with Pillow (in a thread); ApiError 400 IMAGE_PROCESS_FAILED / PHOTO_INVALID_DIMENSIONS."""
        sizes: list[Json] = []
        for w, h, jpeg in await asyncio.to_thread(render_photo, data):
            f = self._add("photo", jpeg, "jpg", "image/jpeg")
            sizes.append({"file_id": f.file_id, "file_unique_id": f.file_unique_id, "width": w,
                          "height": h, "file_size": len(jpeg)})
        for size in sizes:
            self._photo_sets[size["file_id"]] = sizes
        return copy.deepcopy(sizes)

    def add_document(self, data: bytes, file_name: str, mime_type: str | None = None) -> Json:
        ext = file_name.rsplit(".", 1)[-1].lower() if "." in file_name else "bin"
        mime = mime_type or _MIME_TYPES.get(ext, "application/octet-stream")
        return self._add("document", data, ext, mime, file_name).as_document()

    def _resolve(self, ref: Any, uploads: Uploads, field_name: str, kind: str) -> Upload | StoredFile:
        """A file parameter: `attach://<part>`, a part named like the field, or a known file_id."""
        if ref is None and field_name in uploads:
            return uploads[field_name]
        if not isinstance(ref, str) or not ref:
            raise bad_request(f"there is no {field_name} in the request")
        if ref.startswith("attach://"):
            if (upload := uploads.get(ref.removeprefix("attach://"))) is None:
                raise bad_request(f"file {ref} is missing from the request")
            return upload
        if ref.startswith(("http://", "https://")):
            raise bad_request("failed to get HTTP URL content")  # the fake has no internet
        if (stored := self.by_id.get(ref)) is None:
            raise bad_request("wrong file identifier/HTTP URL specified")
        if stored.kind != kind:
            raise bad_request(f"can't use file of type {stored.kind.title()} as {kind.title()}")
        return stored

    async def photo_input(self, ref: Any, uploads: Uploads, field_name: str) -> list[Json]:
        """The PhotoSizes for a sendPhoto/sendMediaGroup parameter; a known file_id is sent again."""
        source = self._resolve(ref, uploads, field_name, "photo")
        if isinstance(source, StoredFile):
            return copy.deepcopy(self._photo_sets[source.file_id])
        if len(source.data) > PHOTO_UPLOAD_LIMIT:
            raise ApiError(413, "Request Entity Too Large")
        return await self.add_photo(source.data)

    def document_input(self, ref: Any, uploads: Uploads, field_name: str) -> Json:
        source = self._resolve(ref, uploads, field_name, "document")
        if isinstance(source, StoredFile):
            return source.as_document()
        if len(source.data) > DOCUMENT_UPLOAD_LIMIT:
            raise ApiError(413, "Request Entity Too Large")
        return self.add_document(source.data, source.filename or field_name)
