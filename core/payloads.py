"""Provider JSON with big base64 images, parsed without copying the images around.

A 12 MB image arrives as 16 MB of base64 inside a JSON body. ``json.loads`` would hold the body, a decoded
str of it and the parsed string at once (4× the image), and the base64 decode would then run on the event
loop. Instead ``parse_json`` decodes each long base64 string (bare, or a ``data:image/...;base64,`` URL)
straight from the body bytes, and the parsed JSON holds a ``DecodedBase64`` where that string was.
Adapters pass it to ``HttpProvider.decode_b64`` and friends exactly as they pass base64 text.
"""

from __future__ import annotations

import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["MIN_DECODED_CHARS", "DecodedBase64", "parse_json"]

#: Strings shorter than this stay strings: the copy does not matter for small answers.
MIN_DECODED_CHARS: Final = 4096

# Finds where a long string starts; it ends at the next quote, and a strict decode checks every byte in
# between (an escape such as ``\/`` or ``\n`` makes it fail, and the body is parsed as plain JSON instead).
_RUN_START = re.compile(rb'"(?:data:(image/[A-Za-z0-9.+-]+);base64,)?(?=[A-Za-z0-9+/]{%d})' % MIN_DECODED_CHARS)
# Each decoded string is replaced by this one-key object in the text handed to json.loads, whose object_hook
# turns it back into the DecodedBase64 with that index. NUL never starts a key a provider sends.
_INDEX_KEY: Final = "\x00decoded"


@dataclass(frozen=True, slots=True)
class DecodedBase64:
    """A long base64 string from a JSON answer, decoded while parsing.

    ``mime`` is the type its ``data:`` URL claimed, None when the string was bare base64: adapters accept a
    data URL or bare base64 in different places, and must see the same difference as with short strings.
    """

    data: bytes = field(repr=False)
    mime: str | None = None


def parse_json(body: bytes | bytearray) -> Any:
    """Parse ``body``; each long base64 string becomes a DecodedBase64.

    Anything unusual (escapes inside a string, bad padding, a long base64 object key) falls back to plain
    ``json.loads``, so the adapter sees the original string and reports it as usual.
    """
    view = memoryview(body)
    decoded: list[DecodedBase64] = []
    pieces: list[bytes] = []
    last = position = 0
    try:
        while match := _RUN_START.search(body, position):
            start = match.end()
            end = body.find(b'"', start)
            if end < 0:
                break
            mime = match[1].decode("ascii") if match[1] else None
            decoded.append(DecodedBase64(binascii.a2b_base64(view[start:end], strict_mode=True), mime))
            pieces += [view[last:match.start()].tobytes(), b'{"\\u0000decoded":%d}' % (len(decoded) - 1)]
            last = position = end + 1
    except binascii.Error:
        return json.loads(body)
    if not decoded:
        return json.loads(body)
    pieces.append(view[last:].tobytes())

    def restore(obj: dict[str, Any]) -> Any:
        index = obj.get(_INDEX_KEY) if len(obj) == 1 else None
        return decoded[index] if type(index) is int and 0 <= index < len(decoded) else obj

    try:
        return json.loads(b"".join(pieces), object_hook=restore)
    except ValueError:
        return json.loads(body)
