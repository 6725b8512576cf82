"""Request bodies: size limit, gzip, content type, and the parsed document.

`read_body` enforces `max_body_bytes` on what arrives and, for gzip, on what
it expands to, without ever holding more than the limit. The document is
parsed once, on demand, by the strict codec of `sidecar.jsoncodec`.
"""

from __future__ import annotations

import zlib
from typing import Any

from aiohttp import web

from sidecar.errors import Reason, Rejection
from sidecar.jsoncodec import parse_json

_JSON_TYPES = ("application/json", "text/plain", "")
_FORM = "application/x-www-form-urlencoded"
# Whole header values SDKs send that are JSON types: one set lookup, not a parse.
_COMMON_JSON = frozenset(
    {
        "application/json",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "application/json;charset=utf-8",
        "text/plain",
        "text/plain;charset=UTF-8",
        "text/plain; charset=utf-8",
        "",
    }
)
_CHUNK = 64 * 1024


class Body:
    """A request body, decoded to bytes, parsed as JSON at most once and only on demand.
    `carried`: what a dialect made of a carried body (a declared dialect's form field
    and base64 undone) in one stage, for the next: it lives as long as the request."""

    __slots__ = ("_document", "_failure", "carried", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._document: Any = None
        self._failure: Rejection | None = None
        self.carried: Any = None

    def document(self) -> Any:
        """The parsed JSON. Rejects: malformed_payload (the same one every time)."""
        if self._failure is None and self._document is None:
            try:
                self._document = parse_json(self.raw)
            except Rejection as failure:
                self._failure = failure
        if self._failure is not None:
            raise self._failure
        return self._document

    def document_or_none(self) -> Any:
        """The parsed JSON, or None when the body is not JSON (for early, optional lookups)."""
        try:
            return self.document()
        except Rejection:
            return None


GZIP_MAGIC = b"\x1f\x8b"


async def read_body(request: web.BaseRequest, limit: int, gzip_magic: bool = False) -> Body:
    """The decoded request body. With `gzip_magic` (an endpoint whose SDK gzips
    without saying so, as posthog-js does), a body without `Content-Encoding` that
    starts with gzip's magic bytes is gzip too. Rejects: payload_too_large,
    malformed_payload."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _too_large(limit)
    raw: bytes | bytearray
    if declared is not None:
        raw = await request.read()  # the length is known and within the limit
    else:  # chunked: stop reading as soon as the limit is passed
        raw = bytearray()
        async for chunk in request.content.iter_chunked(_CHUNK):
            raw += chunk
            if len(raw) > limit:
                raise _too_large(limit)
    coding = request.headers.get("Content-Encoding")
    encoding = coding.strip().lower() if coding is not None else "identity"
    if encoding in ("identity", ""):
        if gzip_magic and raw[:2] == GZIP_MAGIC:  # never JSON: `{`, `[` or space first
            return Body(gunzip(bytes(raw), limit))
        return Body(bytes(raw))
    if encoding in ("gzip", "x-gzip"):
        return Body(gunzip(bytes(raw), limit))
    raise Rejection(
        Reason.MALFORMED_PAYLOAD,
        f"Content-Encoding {encoding!r} is not supported; send identity or gzip",
    )


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress gzip `data`, refusing output beyond `limit` bytes before producing it."""
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(data, limit + 1)
    except zlib.error:
        raise Rejection(Reason.MALFORMED_PAYLOAD, "the gzip body is corrupt") from None
    if len(out) > limit or decompressor.unconsumed_tail:
        raise _too_large(limit)
    if not decompressor.eof:
        raise Rejection(Reason.MALFORMED_PAYLOAD, "the gzip body is truncated")
    if decompressor.unused_data:
        raise Rejection(Reason.MALFORMED_PAYLOAD, "the gzip body has trailing data")
    return out


def check_content_type(content_type: str, form: bool = False) -> None:
    """Bodies are JSON sent as application/json (or +json) or text/plain (beacons);
    a `form` endpoint's (a declared dialect's `carrier.form`) are forms."""
    if content_type in _COMMON_JSON and not form:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if form:
        if media != _FORM:
            raise Rejection(
                Reason.MALFORMED_PAYLOAD,
                f"Content-Type {media!r} is not supported; send {_FORM}",
            )
        return
    if media not in _JSON_TYPES and not media.endswith("+json"):
        raise Rejection(
            Reason.MALFORMED_PAYLOAD,
            f"Content-Type {media!r} is not supported; send application/json or text/plain",
        )


def _too_large(limit: int) -> Rejection:
    return Rejection(Reason.PAYLOAD_TOO_LARGE, f"the body is larger than {limit} bytes")
