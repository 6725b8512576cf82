"""What a request head calls for before its body is read (SPEC §2 `server.limits`, §3.3).

Sans-IO: these functions read a head aiohttp's parser produced (or the error it
raised) and the number of bytes the head took on the wire, and say whether the
connection layer (`sidecar.edge`) must answer it itself (`error_answer`) and
close. They never quote what the client sent: a head carries secrets and tokens.
`continue_if_expected`, called by the pipeline, writes the interim answer
`Expect: 100-continue` asks for.

    too many header fields                  → 431 (Envoy's max_request_headers_count)
    a head over max_header_bytes            → 431 (Envoy's max_request_headers_kb)
    a coding besides `chunked` (`gzip`,
      `gzip, chunked`, `identity`)          → 501 (nginx; RFC 9112 §6.1)
    any other parse error (also `chunked`
      not last, or twice: RFC 9112 §6.3)    → 400
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from http import HTTPStatus

from aiohttp import web
from aiohttp.http import HttpVersion11
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError
from aiohttp.http_parser import RawRequestMessage

from sidecar import logs
from sidecar.response import Response
from sidecar.rules import EdgeLimits

# A header line is at least 4 bytes ("a:" CRLF), so a head within max_header_bytes
# has at most a quarter as many lines; aiohttp's own count, set to that, never
# refuses a head before the byte limit does.
_MIN_FIELD_LINE = 4
# llhttp's reason for a request whose codings do not include `chunked` (`gzip`,
# `identity`): its HPE_INVALID_TRANSFER_ENCODING, which aiohttp passes on only as
# message text. `chunked` followed by another coding, or twice, is a framing
# error instead ("Invalid `Transfer-Encoding` header value"), and stays 400.
_CODING_ERROR = "Request has invalid `Transfer-Encoding`"
_REQUEST_LINE_EXTRA = len("  HTTP/1.1\r\n")  # two spaces, the version and CRLF
_FIELD_LINE_EXTRA = len(": \r\n")
_HEAD_END = len("\r\n")
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class CloseReason(StrEnum):
    """Why trackgate closed a client connection (`trackgate_connections_closed_total`)."""

    HEADER_TIMEOUT = "header_timeout"
    BODY_TIMEOUT = "body_timeout"
    IDLE = "idle"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    HEAD_TOO_LARGE = "head_too_large"


@dataclass(frozen=True, slots=True)
class Refusal:
    """An answer the connection layer gives itself, then closes the connection."""

    status: int
    reason: str  # the log field: a fixed name or the parser error's class, never its text
    closes_as: CloseReason | None = None  # counted in connections_closed_total, if any


class RefusedHead(Exception):
    """Carries a `Refusal` through aiohttp's error answer path."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


TOO_MANY_HEADERS = Refusal(431, "too_many_headers", CloseReason.HEAD_TOO_LARGE)
HEAD_TOO_LARGE = Refusal(431, "head_too_large", CloseReason.HEAD_TOO_LARGE)
UNSUPPORTED_CODING = Refusal(501, "transfer_coding_not_implemented")


def parser_max_headers(limits: EdgeLimits) -> int:
    """The field count for aiohttp's own parser: a backstop past `max_headers`,
    so that too many fields are refused here, with 431, and not by aiohttp (400)."""
    return max(limits.max_headers + 1, limits.max_header_bytes // _MIN_FIELD_LINE)


def check_head(message: RawRequestMessage, limits: EdgeLimits, wire_bytes: int) -> Refusal | None:
    """A parsed head's verdict. `wire_bytes` counts the reads the head arrived in
    (with whatever followed it in the last one); only when they pass the limit is
    the head measured itself. Rejects: too_many_headers, head_too_large (431),
    transfer_coding_not_implemented (501)."""
    if len(message.raw_headers) > limits.max_headers:
        return TOO_MANY_HEADERS
    if wire_bytes > limits.max_header_bytes and head_size(message) > limits.max_header_bytes:
        return HEAD_TOO_LARGE
    if message.chunked and not is_plain_chunked(message.headers.getall("Transfer-Encoding", ())):
        return UNSUPPORTED_CODING
    return None


def check_parse_error(error: BaseException, limits: EdgeLimits, wire_bytes: int) -> Refusal:
    """The answer to a head aiohttp's parser refused. Past the byte limit every
    failure is the head's size (a line or field over it, more fields than fit);
    codings without `chunked` are 501; anything else 400."""
    if wire_bytes > limits.max_header_bytes:
        return HEAD_TOO_LARGE
    if isinstance(error, BadHttpMessage) and error.message.startswith(_CODING_ERROR):
        return UNSUPPORTED_CODING
    status = error.code if isinstance(error, HttpProcessingError) and error.code else 400
    return Refusal(status, type(error).__name__)


def head_size(message: RawRequestMessage) -> int:
    """The head's size as its request line and field lines (`name: value` CRLF),
    without optional whitespace: what Envoy's max_request_headers_kb counts, and
    what is forwarded."""
    target = message.path.encode("utf-8", "surrogateescape")
    size = len(message.method) + len(target) + _REQUEST_LINE_EXTRA + _HEAD_END
    for name, value in message.raw_headers:
        size += len(name) + len(value) + _FIELD_LINE_EXTRA
    return size


def is_plain_chunked(values: tuple[str, ...] | list[str]) -> bool:
    """True when the Transfer-Encoding fields name exactly one coding, `chunked`
    (the only one trackgate decodes; nginx accepts nothing else either)."""
    codings = [c.strip().lower() for value in values for c in value.split(",")]
    return codings == ["chunked"]


def error_answer(status: int, error: BaseException | None) -> Response:
    """The answer to a refused head, or to any request aiohttp itself fails: the
    status and its phrase, then close. Logged as `bad_request` with the reason or
    the error's class, never its text (it quotes the request)."""
    reason = error.refusal.reason if isinstance(error, RefusedHead) else type(error).__name__
    logs.event("bad_request", logging.INFO, status=status, reason=reason)
    response = Response(status=status, text=f"{status} {HTTPStatus(status).phrase}\n")
    response.force_close()
    return response


def continue_if_expected(request: web.BaseRequest, max_body_bytes: int) -> None:
    """Answer `Expect: 100-continue` with the interim 100, so the client sends its
    body now instead of after its own wait (curl: 1 s). Called once the endpoint
    and method are known good; a declared body over the limit gets no 100 (the
    413 follows at once, and the body never needs sending). HTTP/1.0 ignores it
    (RFC 9110 §10.1.1)."""
    expect = request.headers.get("Expect")
    if expect is None or request.version != HttpVersion11 or request.transport is None:
        return
    declared = request.content_length
    if expect.lower() == "100-continue" and (declared is None or declared <= max_body_bytes):
        # Straight to the socket: nothing of the answer proper is written or buffered
        # yet, and the interim answer is not the response (aiohttp's own
        # expect handler writes it the same way, then resets the output size).
        request.transport.write(_CONTINUE)
