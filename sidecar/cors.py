"""Browser CORS for streams with `cors.allowed_origins` (SPEC §3.3), for any dialect.

- Preflights (`OPTIONS`) are answered by the sidecar when the URL's stream has
  `cors`; a URL that names no stream (e.g. RudderStack's `/v1/identify`, whose
  write key travels in a header the preflight does not carry) is checked
  against the union of the dialect's streams' origins. With no `cors` in play
  the preflight is forwarded like any request.
- Requests whose `Origin` is not allowed get `403 origin_not_allowed`; allowed
  ones get `Access-Control-Allow-Origin` (the origin itself, never `*`, since
  credentials are allowed) on every response, and `Access-Control-Expose-Headers`
  so page scripts can read `X-Request-Id` and `X-Trackgate-Rejected`.
- Every preflight answer (granted or not) says what it depends on: `Vary: Origin,
  Access-Control-Request-Headers`, so no cache serves one origin's answer to another.
"""

from __future__ import annotations

import re

from aiohttp import web

from sidecar.dialects.base import Endpoint
from sidecar.errors import Reason, Rejection
from sidecar.reply import Reply
from sidecar.rules import Rules, Stream

MAX_ALLOWED_HEADERS = 1024  # bytes of Access-Control-Request-Headers echoed back
MAX_AGE_SECONDS = 600
EXPOSED = "X-Request-Id, X-Trackgate-Rejected"
PREFLIGHT_VARY = "Origin, Access-Control-Request-Headers"
_HEADER_LIST = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*$")


def check_origin(stream: Stream, request: web.BaseRequest) -> None:
    """A browser request's origin. Rejects: origin_not_allowed."""
    origin = request.headers.get("Origin")
    if stream.cors is None or origin is None or origin in stream.cors.allowed_origins:
        return
    raise Rejection(
        Reason.ORIGIN_NOT_ALLOWED, f"origin {origin!r} may not send to stream {stream.name!r}"
    )


def allow_headers(
    stream: Stream | None, request: web.BaseRequest, *, preflight: bool = False
) -> dict[str, str]:
    """The CORS headers of a response: for a preflight answer, what it varies by (its
    grant is in the answer itself); else the grant to an allowed origin, if any."""
    if preflight:
        return {"Vary": PREFLIGHT_VARY}
    origin = request.headers.get("Origin")
    if stream is None or stream.cors is None or origin not in stream.cors.allowed_origins:
        return {}
    return {**_allow(origin), "Access-Control-Expose-Headers": EXPOSED}


def unknown_stream_cors(
    rules: Rules | None, endpoint: Endpoint | None, request: web.BaseRequest, reason: Reason | None
) -> dict[str, str]:
    """The grant on an `unknown_stream` answer, for an origin allowed by any stream of
    the endpoint's dialect (as preflights are granted): the page's SDK must be able to
    read that answer (Braze's drops the batch on `invalid_api_key`, SPEC §3.4)."""
    if reason is not Reason.UNKNOWN_STREAM or rules is None or endpoint is None:
        return {}
    origin = request.headers.get("Origin")
    origins = preflight_origins(rules, endpoint.dialect.name, None)
    if origin is None or origins is None or origin not in origins:
        return {}
    return {**_allow(origin), "Access-Control-Expose-Headers": EXPOSED}


def preflight_origins(rules: Rules, dialect: str, stream: Stream | None) -> frozenset[str] | None:
    """The origins a preflight may come from; None when no stream in play uses CORS."""
    if stream is not None:
        return stream.cors.allowed_origins if stream.cors else None
    origins = frozenset(
        origin
        for s in rules.streams
        if s.dialect == dialect and s.cors is not None
        for origin in s.cors.allowed_origins
    )
    return origins or None


def preflight_reply(origins: frozenset[str], request: web.BaseRequest) -> Reply:
    """204 with the CORS grant for an allowed origin. Rejects: origin_not_allowed."""
    origin = request.headers.get("Origin")
    if origin is None or origin not in origins:
        raise Rejection(Reason.ORIGIN_NOT_ALLOWED, f"origin {origin!r} is not allowed")
    headers = {
        **_allow(origin),
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Max-Age": str(MAX_AGE_SECONDS),
    }
    requested = request.headers.get("Access-Control-Request-Headers", "").strip()
    if requested and len(requested) <= MAX_ALLOWED_HEADERS and _HEADER_LIST.match(requested):
        headers["Access-Control-Allow-Headers"] = requested
    return Reply(204, b"", headers)


def _allow(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }
