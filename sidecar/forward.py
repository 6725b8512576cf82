"""Forwarding: the request the collector gets, and the answer the client gets back.

Headers follow SPEC §3.3: hop-by-hop headers, `Host` and the credentials the
sidecar consumed are dropped; `X-Forwarded-*` and `X-Request-Id` are added.
The request head is written from the client's raw header bytes (no decoding
and re-encoding); the collector's body is relayed byte for byte.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping

from aiohttp import web
from multidict import CIMultiDict

from sidecar import logs
from sidecar.dialects import Reply
from sidecar.errors import Reason, Rejection
from sidecar.rules import Upstream
from sidecar.upstream import InvalidAnswer, Pool, UpstreamError

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Recomputed for the forwarded body, or set by the sidecar itself.
_REQUEST_REPLACED = frozenset(
    {"host", "content-length", "content-encoding", "expect", "x-request-id", "x-forwarded-for"}
)
_RESPONSE_REPLACED = frozenset({"content-length", "x-request-id"})
_RESPONSE_DROPPED = HOP_BY_HOP | _RESPONSE_REPLACED
_PLAIN_CONNECTION = frozenset({"keep-alive", "close"})  # values that name no other header
_NONE: frozenset[str] = frozenset()


def upstream_pool(upstream: Upstream) -> Pool:
    """One shared keep-alive pool to the collector."""
    return Pool(upstream.url, upstream.max_connections, idle_seconds=upstream.idle_seconds)


async def forward(
    pool: Pool,
    upstream: Upstream,
    request: web.BaseRequest,
    *,
    body: bytes,
    consumed: frozenset[str],
    extra: Mapping[str, str],
    request_id: str,
) -> Reply:
    """Send `body` to the collector with the request's method, path and query; `extra`
    headers are set over the forwarded ones.
    Rejects: upstream_unavailable (502), upstream_invalid (502: not HTTP/1.1, or over
    `max_answer_bytes`), upstream_timeout (504)."""
    head = request_head(
        pool, request, length=len(body), consumed=consumed, extra=extra, request_id=request_id
    )
    try:
        answer = await pool.send(
            head,
            body,
            upstream.timeout_seconds,
            head_request=request.method == "HEAD",
            max_answer=upstream.max_answer_bytes,
        )
    except InvalidAnswer as invalid:
        logs.event("upstream_invalid", logging.WARNING, flaw=invalid.flaw.value)
        raise Rejection(
            Reason.UPSTREAM_INVALID,
            f"the collector's answer was not valid HTTP/1.1 or was larger than "
            f"{upstream.max_answer_bytes} bytes ({invalid.flaw.value}); nothing was relayed",
        ) from None
    except TimeoutError:
        raise Rejection(
            Reason.UPSTREAM_TIMEOUT,
            f"the collector did not answer within {upstream.timeout_seconds:g}s",
        ) from None
    except (UpstreamError, OSError):
        raise Rejection(Reason.UPSTREAM_UNAVAILABLE, "the collector is unreachable") from None
    return Reply(answer.status, answer.body, response_headers(answer.headers))


def request_head(
    pool: Pool,
    request: web.BaseRequest,
    *,
    length: int,
    consumed: frozenset[str],
    extra: Mapping[str, str],
    request_id: str,
) -> bytes:
    """The request line and headers the collector gets, ending with the blank line."""
    origin = pool.origin
    target = f"{request.method} {origin.base_path}{request.raw_path} HTTP/1.1\r\n"
    parts = [target.encode("utf-8", "surrogateescape"), b"Host: ", origin.host_header.encode()]
    dropped = _dropped(consumed, frozenset(name.lower() for name in extra) if extra else _NONE)
    listed = _connection_listed(request.headers.getall("Connection", ()))
    prior: list[bytes] = []
    proto = host = False
    for name, value in request.raw_headers:
        lowered = name.lower()
        if lowered in dropped or (listed and lowered.decode() in listed):
            if lowered == b"x-forwarded-for":
                prior.append(value)
            continue
        proto = proto or lowered == b"x-forwarded-proto"
        host = host or lowered == b"x-forwarded-host"
        parts += (b"\r\n", name, b": ", value)
    peer = (request.remote or "").encode()
    parts += (b"\r\nX-Forwarded-For: ", b", ".join([*prior, peer]) if prior else peer)
    if not proto:
        parts += (b"\r\nX-Forwarded-Proto: ", request.scheme.encode())
    if not host:
        parts += (b"\r\nX-Forwarded-Host: ", request.host.encode("utf-8", "surrogateescape"))
    parts += (b"\r\nX-Request-Id: ", request_id.encode())
    for extra_name, extra_value in extra.items():
        parts += (b"\r\n", extra_name.encode(), b": ", extra_value.encode())
    parts.append(b"\r\nContent-Length: %d\r\n\r\n" % length)
    return b"".join(parts)


@functools.lru_cache(maxsize=64)
def _dropped(consumed: frozenset[str], overridden: frozenset[str]) -> frozenset[bytes]:
    """Lower-case header names (as bytes) never copied from the client's request."""
    names = HOP_BY_HOP | _REQUEST_REPLACED | consumed | overridden
    return frozenset(name.encode() for name in names)


def response_headers(headers: list[tuple[str, str]]) -> CIMultiDict[str]:
    """The collector's response headers the client gets."""
    listed = _connection_listed([v for n, v in headers if n.lower() == "connection"])
    dropped = _RESPONSE_DROPPED | listed if listed else _RESPONSE_DROPPED
    return CIMultiDict([(n, v) for n, v in headers if n.lower() not in dropped])


def _connection_listed(values: Iterable[str]) -> frozenset[str]:
    """The header names `Connection` values list: hop-by-hop too (RFC 9110 §7.6.1).
    Empty for the usual `keep-alive` or `close`."""
    return frozenset(
        token.strip().lower()
        for value in values
        if value.lower() not in _PLAIN_CONNECTION
        for token in value.split(",")
    )
