"""The upstream client: sends the decided body to the collector, relays its answer.

Headers follow SPEC §3.3: hop-by-hop headers, `Host` and the credentials the
sidecar consumed are dropped; `X-Forwarded-*` and `X-Request-Id` are added.
The collector's body is relayed byte for byte (no decompression).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, MultiMapping
from yarl import URL

from sidecar.dialects import Reply
from sidecar.errors import Reason, Rejection
from sidecar.rules import Upstream

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
    {"host", "content-length", "content-encoding", "expect", "x-request-id"}
)
_RESPONSE_REPLACED = frozenset({"content-length", "x-request-id"})
_REQUEST_DROPPED = HOP_BY_HOP | _REQUEST_REPLACED
_RESPONSE_DROPPED = HOP_BY_HOP | _RESPONSE_REPLACED
_PLAIN_CONNECTION = frozenset({"keep-alive", "close"})  # values that name no other header


def client_session(upstream: Upstream) -> aiohttp.ClientSession:
    """One shared keep-alive pool to the collector; bodies relayed undecoded."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=upstream.max_connections),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
    )


async def forward(
    session: aiohttp.ClientSession,
    upstream: Upstream,
    request: web.Request,
    *,
    body: bytes,
    consumed: frozenset[str],
    extra: Mapping[str, str],
    request_id: str,
) -> Reply:
    """Send `body` to the collector with the request's method, path and query; `extra`
    headers are set over the forwarded ones.
    Rejects: upstream_unavailable (502), upstream_timeout (504)."""
    headers = forward_headers(request, consumed, request_id)
    headers.update(extra)
    try:
        async with session.request(
            request.method,
            URL(upstream.url + request.raw_path, encoded=True),
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=_timeout(upstream.timeout_seconds),
        ) as response:
            content = await response.read()
            return Reply(response.status, content, response_headers(response.headers))
    except TimeoutError:
        raise Rejection(
            Reason.UPSTREAM_TIMEOUT,
            f"the collector did not answer within {upstream.timeout_seconds:g}s",
        ) from None
    except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError):
        raise Rejection(Reason.UPSTREAM_UNAVAILABLE, "the collector is unreachable") from None


@functools.lru_cache(maxsize=8)
def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds)


def forward_headers(
    request: web.Request, consumed: frozenset[str], request_id: str
) -> CIMultiDict[str]:
    """The request headers the collector gets."""
    dropped = _REQUEST_DROPPED | consumed | _connection_listed(request.headers)
    headers: CIMultiDict[str] = CIMultiDict()
    prior = []
    for name, value in request.headers.items():
        lowered = name.lower()
        if lowered == "x-forwarded-for":
            prior.append(value)
        elif lowered not in dropped:
            headers.add(name, value)
    peer = request.remote or ""
    headers["X-Forwarded-For"] = ", ".join([*prior, peer]) if prior else peer
    headers.setdefault("X-Forwarded-Proto", request.scheme)
    headers.setdefault("X-Forwarded-Host", request.host)
    headers["X-Request-Id"] = request_id
    return headers


def response_headers(headers: MultiMapping[str]) -> CIMultiDict[str]:
    """The collector's response headers the client gets."""
    dropped = _RESPONSE_DROPPED | _connection_listed(headers)
    return CIMultiDict((n, v) for n, v in headers.items() if n.lower() not in dropped)


def _connection_listed(headers: MultiMapping[str]) -> frozenset[str]:
    """Headers the `Connection` header names are hop-by-hop too (RFC 9110 §7.6.1)."""
    value = headers.get("Connection")
    if value is None or value.lower() in _PLAIN_CONNECTION:
        return frozenset()
    values = headers.getall("Connection", ())
    return frozenset(token.strip().lower() for value in values for token in value.split(","))
