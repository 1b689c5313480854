"""Provider JSON with big base64 images, parsed without copying the images around.

A 12 MB image arrives as 16 MB of base64 inside a JSON body. ``json.loads`` would hold the body,
a decoded str of it and the parsed value at once (4× the image). Instead, each long base64 run
(optionally behind a ``data:image/...;base64,`` prefix) is decoded straight from the body bytes,
and the JSON is parsed with a short marker in its place. Adapters hand the marker to
``HttpProvider.decode_b64`` like any base64 string; the bytes are looked up in the current task's
context, so concurrent calls never see each other's images.
"""

from __future__ import annotations

import binascii
import json
import re
from contextvars import ContextVar
from typing import Any, Final

__all__ = ["BLOB_MARK", "blob_for", "loads_with_blobs", "use_blobs"]

#: Marks a decoded image inside parsed JSON: ``"\x00blob:3"``. Never valid base64, never a URL.
BLOB_MARK: Final = "\x00blob:"
#: Runs shorter than this stay in the JSON: the copy does not matter for small answers.
MIN_BLOB_CHARS: Final = 4096

# Finds where a long run starts; the run ends at the next quote, and a strict decode checks every byte
# in between (an escape such as ``\/`` or ``\n`` makes it fail, and we fall back to plain JSON).
_RUN_START = re.compile(rb'"(data:image/[A-Za-z0-9.+-]+;base64,)?(?=[A-Za-z0-9+/]{%d})' % MIN_BLOB_CHARS)
_BLOBS: ContextVar[tuple[bytes, ...]] = ContextVar("pixbot_payload_blobs", default=())


def loads_with_blobs(body: bytes | bytearray) -> tuple[Any, tuple[bytes, ...]]:
    """Parse ``body``; long base64 strings become markers, their decoded bytes are returned.

    Anything unusual (escapes inside a run, bad padding) falls back to plain ``json.loads``, so the
    adapter sees the original string and reports it as usual.
    """
    view = memoryview(body)
    blobs: list[bytes] = []
    pieces: list[bytes] = []
    last = 0
    try:
        position = 0
        while match := _RUN_START.search(body, position):
            start = match.end()
            end = body.find(b'"', start)
            if end < 0:
                break
            blobs.append(binascii.a2b_base64(view[start:end], strict_mode=True))
            prefix = bytes(body[match.start(1):match.end(1)]) if match.start(1) >= 0 else b""
            pieces += [view[last:match.start()].tobytes(), b'"', prefix, b"\\u0000blob:%d\"" % (len(blobs) - 1)]
            last = position = end + 1
    except binascii.Error:
        return json.loads(body), ()
    if not blobs:
        return json.loads(body), ()
    pieces.append(view[last:].tobytes())
    return json.loads(b"".join(pieces)), tuple(blobs)


def use_blobs(blobs: tuple[bytes, ...]) -> None:
    """Make ``blobs`` the ones markers refer to, for the rest of the current task."""
    _BLOBS.set(blobs)


def blob_for(text: str) -> bytes | None:
    """The bytes behind a marker (surrounding whitespace allowed), or None for ordinary text."""
    stripped = text.strip()
    if not stripped.startswith(BLOB_MARK):
        return None
    index = stripped[len(BLOB_MARK):]
    blobs = _BLOBS.get()
    if not index.isdigit() or int(index) >= len(blobs):
        return None
    return blobs[int(index)]
