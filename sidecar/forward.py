"""Forwarding: the request the collector gets, and the answer the client gets back.

Headers follow SPEC §3.3: hop-by-hop headers, `Host`, the credentials the
sidecar consumed, identity headers it judged unfit and header names with `_`
are dropped; cookies are forwarded only as the stream's rule says. From a peer
outside `server.trusted_proxies`, client-sent `Forwarded`, `X-Forwarded-*` and
`X-Real-IP` are dropped and trackgate sets `X-Forwarded-For` (the peer),
`-Proto` and `-Host` itself; a trusted proxy's are kept and the peer appended
to `X-Forwarded-For`. `X-Request-Id` is added. The target is sent in
origin-form. The request head is written from the client's raw header bytes
(no decoding and re-encoding); the collector's body is relayed byte for byte.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import NamedTuple

from aiohttp import web
from multidict import CIMultiDict

from sidecar import cookies, logs
from sidecar.cookies import NO_COOKIES, CookieRule
from sidecar.errors import Reason, Rejection
from sidecar.reply import Reply
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
    {"host", "content-length", "content-encoding", "expect", "x-request-id", "cookie"}
)
_PROXY_HEADERS = frozenset({b"forwarded", b"x-real-ip"})  # and every `x-forwarded-*`
_RESPONSE_REPLACED = frozenset({"content-length", "x-request-id"})
_RESPONSE_DROPPED = HOP_BY_HOP | _RESPONSE_REPLACED
_PLAIN_CONNECTION = frozenset({"keep-alive", "close"})  # values that name no other header
_NONE: frozenset[str] = frozenset()
_NO_EXTRA: Mapping[str, str] = MappingProxyType({})
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Outgoing(NamedTuple):
    """What the forwarded head leaves out or sets, beyond the fixed rules above. (A
    NamedTuple rather than a frozen dataclass: immutable too, made once per request,
    and a third of the cost to build.)"""

    consumed: frozenset[str] = _NONE  # lower-case header names never forwarded
    extra: Mapping[str, str] = _NO_EXTRA  # set over the forwarded headers
    cookies: CookieRule = NO_COOKIES  # which cookies the collector gets
    trusted_proxies: tuple[Network, ...] = ()  # peers whose proxy headers are kept


def upstream_pool(upstream: Upstream) -> Pool:
    """One shared keep-alive pool to the collector."""
    return Pool(
        upstream.url,
        upstream.max_connections,
        idle_seconds=upstream.idle_seconds,
        ca_pem=upstream.ca_pem,
    )


async def forward(
    pool: Pool,
    upstream: Upstream,
    request: web.BaseRequest,
    *,
    body: bytes,
    outgoing: Outgoing,
    request_id: str,
) -> Reply:
    """Send `body` to the collector with the request's method, path and query.
    Rejects: upstream_unavailable (502), upstream_invalid (502: not HTTP/1.1, or over
    `max_answer_bytes`), upstream_timeout (504)."""
    head = request_head(pool, request, length=len(body), outgoing=outgoing, request_id=request_id)
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
    pool: Pool, request: web.BaseRequest, *, length: int, outgoing: Outgoing, request_id: str
) -> bytes:
    """The request line and headers the collector gets, ending with the blank line."""
    origin = pool.origin
    target = f"{request.method} {origin.base_path}{origin_form(request)} HTTP/1.1\r\n"
    parts = [target.encode("utf-8", "surrogateescape"), b"Host: ", origin.host_header.encode()]
    extra = outgoing.extra
    dropped = _DROPPED.get(outgoing.consumed) if not extra else None
    if dropped is None:
        dropped = _dropped(outgoing.consumed, frozenset(n.lower() for n in extra))
    trusted = bool(outgoing.trusted_proxies) and is_trusted(
        request.remote or "", outgoing.trusted_proxies
    )
    prior, proto, host = _copy_headers(parts, request, dropped, trusted)
    # What trackgate sets, as text encoded once (the client's own headers above stay bytes).
    peer = request.remote or ""
    if prior:
        parts += (b"\r\nX-Forwarded-For: ", b", ".join([*prior, peer.encode()]))
        tail = ""
    else:
        tail = "\r\nX-Forwarded-For: " + peer
    if not proto:
        tail += "\r\nX-Forwarded-Proto: " + request.scheme
    if not host:
        tail += "\r\nX-Forwarded-Host: " + request.host
    if outgoing.cookies.keep:
        kept = cookies.kept(request.headers.getall("Cookie", ()), outgoing.cookies)
        if kept is not None:
            tail += "\r\nCookie: " + kept
    tail += "\r\nX-Request-Id: " + request_id
    if not extra:
        parts.append(
            f"{tail}\r\nContent-Length: {length}\r\n\r\n".encode("utf-8", "surrogateescape")
        )
        return b"".join(parts)
    parts.append(tail.encode("utf-8", "surrogateescape"))
    for extra_name, extra_value in extra.items():
        parts += (b"\r\n", extra_name.encode(), b": ", extra_value.encode())
    parts.append(b"\r\nContent-Length: %d\r\n\r\n" % length)
    return b"".join(parts)


def origin_form(request: web.BaseRequest) -> str:
    """The target as path and query. An absolute-form target (`POST http://host/p?q`)
    loses its scheme and authority: the client does not pick the collector's virtual
    host. An origin-form one is forwarded exactly as received."""
    raw = request.raw_path
    return raw if raw.startswith("/") else request.rel_url.raw_path_qs


def _copy_headers(
    parts: list[bytes], request: web.BaseRequest, dropped: frozenset[bytes], trusted: bool
) -> tuple[list[bytes], bool, bool]:
    """Appends the client's headers that are forwarded as they are, from its raw bytes.
    Returns the X-Forwarded-For values a trusted proxy sent, and whether it sent
    X-Forwarded-Proto and X-Forwarded-Host."""
    connection = request.headers.getall("Connection", ())
    listed = _connection_listed(connection) if connection else _NONE
    prior: list[bytes] = []
    proto = host = False
    for name, value in request.raw_headers:
        known = _NAMES.get(name)
        if known is None:
            known = _name(name)
        lowered, proxy, underscore = known
        if proxy:
            if not trusted:
                continue  # set by trackgate from the connection instead
            if lowered == b"x-forwarded-for":
                prior.append(value)
                continue
            proto = proto or lowered == b"x-forwarded-proto"
            host = host or lowered == b"x-forwarded-host"
        # `_` in a name: dropped, as CGI/WSGI collectors read `X_Stream_Id` as X-Stream-Id
        # (Envoy's headers_with_underscores_action: DROP_HEADER).
        if underscore or lowered in dropped or (listed and lowered.decode() in listed):
            continue
        parts += (b"\r\n", name, b": ", value)
    return prior, proto, host


_NAMES_SIZE = 1024
# Raw header names, lower-cased and classified, remembered (bounded): clients send
# the same few names on every request, and one lookup costs less than the checks.
_NAMES: dict[bytes, tuple[bytes, bool, bool]] = {}


def _name(name: bytes) -> tuple[bytes, bool, bool]:
    """A raw header name: lower-cased, whether it is a proxy header, whether it has a `_`."""
    lowered = name.lower()
    proxy = lowered in _PROXY_HEADERS or lowered.startswith(b"x-forwarded-")
    if len(_NAMES) >= _NAMES_SIZE:
        _NAMES.clear()
    found = _NAMES[name] = (lowered, proxy, name.find(b"_") >= 0)
    return found


@functools.lru_cache(maxsize=1024)
def is_trusted(peer: str, networks: tuple[Network, ...]) -> bool:
    """Whether the connection's peer is in `server.trusted_proxies`. Remembered per
    peer (bounded): the same proxies connect again and again."""
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False  # not an IP peer (e.g. a unix socket): never trusted
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack listener's view of an IPv4 peer
    return any(address in network for network in networks)


_DROPPED: dict[frozenset[str], frozenset[bytes]] = {}  # `_dropped` of no overrides, by consumed


def _dropped(consumed: frozenset[str], overridden: frozenset[str]) -> frozenset[bytes]:
    """Lower-case header names (as bytes) never copied from the client's request:
    remembered for each set of consumed names when nothing is overridden (a few per
    rules version)."""
    names = frozenset(n.encode() for n in HOP_BY_HOP | _REQUEST_REPLACED | consumed | overridden)
    if not overridden:
        if len(_DROPPED) >= 64:
            _DROPPED.clear()
        _DROPPED[consumed] = names
    return names


def response_headers(headers: list[tuple[str, str]]) -> CIMultiDict[str]:
    """The collector's response headers the client gets."""
    kept = []
    connection = []
    for pair in headers:
        lowered = pair[0].lower()
        if lowered not in _RESPONSE_DROPPED:
            kept.append(pair)
        elif lowered == "connection":
            connection.append(pair[1])
    listed = _connection_listed(connection) if connection else _NONE
    if listed:
        kept = [pair for pair in kept if pair[0].lower() not in listed]
    return CIMultiDict(kept)


def _connection_listed(values: Iterable[str]) -> frozenset[str]:
    """The header names `Connection` values list: hop-by-hop too (RFC 9110 §7.6.1).
    Empty for the usual `keep-alive` or `close`."""
    return frozenset(
        token.strip().lower()
        for value in values
        if value.lower() not in _PLAIN_CONNECTION
        for token in value.split(",")
    )
