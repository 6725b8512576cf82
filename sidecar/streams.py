"""Which stream a request belongs to."""

from __future__ import annotations

from aiohttp import web

from sidecar.body import Body
from sidecar.dialects import Endpoint
from sidecar.errors import Reason, Rejection
from sidecar.rules import Rules, Stream


def find_stream(rules: Rules, endpoint: Endpoint, request: web.BaseRequest, body: Body) -> Stream:
    """The configured stream the request names, speaking the endpoint's dialect.
    Rejects: stream_id_conflict, unknown_stream, unknown_endpoint (dialect mismatch)."""
    stream_id = endpoint.dialect.stream_id(request, endpoint, body)
    if stream_id is None:
        raise Rejection(Reason.UNKNOWN_STREAM, "the request names no stream ID")
    return named_stream(rules, endpoint, stream_id)


def named_stream(rules: Rules, endpoint: Endpoint, stream_id: str) -> Stream:
    """The stream with `stream_id`. Rejects: unknown_stream, unknown_endpoint."""
    stream = rules.find(stream_id)
    if stream is None:
        raise Rejection(Reason.UNKNOWN_STREAM, "the stream ID is not configured")
    if stream.dialect != endpoint.dialect.name:
        raise Rejection(
            Reason.UNKNOWN_ENDPOINT,
            f"stream {stream.name!r} speaks the {stream.dialect} dialect; "
            f"this is a {endpoint.dialect.name} endpoint",
        )
    return stream
