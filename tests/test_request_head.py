"""Sans-IO: the verdicts of `sidecar.request_head` on heads aiohttp's real parser made.

Bytes in, a parsed head (or the parser's error) out, then the verdict: no
sockets. The end-to-end behaviour is in tests/test_edge.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.http_parser import HttpRequestParser, RawRequestMessage
from hypothesis import given
from hypothesis import strategies as st

from sidecar.request_head import (
    HEAD_TOO_LARGE,
    TOO_MANY_HEADERS,
    UNSUPPORTED_CODING,
    CloseReason,
    check_head,
    check_parse_error,
    head_size,
    is_plain_chunked,
    parser_max_headers,
)
from sidecar.rules import EdgeLimits

LIMITS = EdgeLimits()  # 32 KiB, 100 fields
START = b"POST /track/u/v1/customers/events?stream_id=s HTTP/1.1\r\nHost: h\r\n"


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    running = asyncio.new_event_loop()
    yield running
    running.close()


def feed(loop: asyncio.AbstractEventLoop, data: bytes) -> Any:
    """What aiohttp's parser, set up as the edge sets it up, makes of `data`: the
    first head, or the error it raised."""
    parser = HttpRequestParser(
        None, loop, 2**16,
        max_line_size=LIMITS.max_header_bytes, max_field_size=LIMITS.max_header_bytes,
        max_headers=parser_max_headers(LIMITS),
    )  # fmt: skip
    try:
        messages, _, _ = parser.feed_data(data)
    except Exception as error:
        return error
    return messages[0][0]


def fields(count: int, size: int = 10) -> bytes:
    return b"".join(b"X-F%d: %s\r\n" % (i, b"v" * size) for i in range(count))


@pytest.mark.parametrize(
    ("name", "head", "wire_bytes", "verdict"),
    [
        ("an ordinary head", START + b"\r\n", 100, None),
        ("100 fields (Host and 99)", START + fields(99) + b"\r\n", 2000, None),
        ("101 fields", START + fields(100) + b"\r\n", 2000, TOO_MANY_HEADERS),
        ("two 20 KB fields that arrived in one read", START + fields(2, 20_000) + b"\r\n", 41_000, HEAD_TOO_LARGE),
        ("a large read whose head is small (a body followed)", START + b"\r\n", 1_000_000, None),
        ("90 fields of 400 bytes: 36 KB", START + fields(89, 400) + b"\r\n", 37_000, HEAD_TOO_LARGE),
        ("chunked", START + b"Transfer-Encoding: chunked\r\n\r\n", 200, None),
        ("Chunked, any case", START + b"Transfer-Encoding: ChUnKeD\r\n\r\n", 200, None),
        ("gzip, chunked", START + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 200, UNSUPPORTED_CODING),
        ("deflate,chunked", START + b"Transfer-Encoding: deflate,chunked\r\n\r\n", 200, UNSUPPORTED_CODING),
    ],
)  # fmt: skip
def test_check_head(
    loop: asyncio.AbstractEventLoop, name: str, head: bytes, wire_bytes: int, verdict: Any
) -> None:
    message = feed(loop, head)
    assert isinstance(message, RawRequestMessage), (name, message)
    assert check_head(message, LIMITS, wire_bytes) == verdict, name


@pytest.mark.parametrize(
    ("name", "head", "wire_bytes", "status", "reason"),
    [
        ("a 40 KB field line (the parser's own limit)", START + b"X-Big: " + b"b" * 40_000, 41_000, 431, "head_too_large"),
        ("more fields than can fit in the limit", START + fields(9000, 0), 60_000, 431, "head_too_large"),
        ("gzip alone", START + b"Transfer-Encoding: gzip\r\n\r\n", 200, 501, "transfer_coding_not_implemented"),
        ("chunked, then gzip: chunked not last stays a framing error", START + b"Transfer-Encoding: chunked, gzip\r\n\r\n", 200, 400, "BadHttpMessage"),
        ("identity", START + b"Transfer-Encoding: identity\r\n\r\n", 200, 501, "transfer_coding_not_implemented"),
        ("Content-Length beside Transfer-Encoding stays a framing error", START + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 200, 400, "BadHttpMessage"),
        ("two Transfer-Encoding fields stay a framing error", START + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 200, 400, "BadHttpMessage"),
        ("a bad request line", b"POST /a b c HTTP/1.1\r\n\r\n", 100, 400, "BadStatusLine"),
        ("a control character in a value", START + b"X-Stream-Secret: a\x01b\r\n\r\n", 100, 400, "BadHttpMessage"),
        ("bad chunk framing", START + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 200, 400, "BadHttpMessage"),
    ],
)  # fmt: skip
def test_check_parse_error(
    loop: asyncio.AbstractEventLoop,
    name: str,
    head: bytes,
    wire_bytes: int,
    status: int,
    reason: str,
) -> None:
    error = feed(loop, head)
    assert isinstance(error, Exception), (name, error)
    refusal = check_parse_error(error, LIMITS, wire_bytes)
    assert (refusal.status, refusal.reason) == (status, reason), name
    assert refusal.closes_as == (CloseReason.HEAD_TOO_LARGE if status == 431 else None), name


def test_refusals_never_quote_the_request(loop: asyncio.AbstractEventLoop) -> None:
    secret = "s3cret-value-in-a-header"
    error = feed(loop, START + f"X-Stream-Secret: {secret}\x01\r\n\r\n".encode())
    assert secret in str(error)  # aiohttp's message quotes the line...
    assert secret not in repr(check_parse_error(error, LIMITS, 200))  # ...the verdict does not


@pytest.mark.parametrize(
    ("values", "plain"),
    [
        (["chunked"], True),
        ([" Chunked "], True),
        (["gzip, chunked"], False),
        (["gzip", "chunked"], False),
        (["chunked", "chunked"], False),
        (["chunked,"], False),
        ([""], False),
        ([], False),
    ],
)
def test_is_plain_chunked(values: list[str], plain: bool) -> None:
    assert is_plain_chunked(values) is plain


_TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
_VALUE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60)


@given(
    path=st.text(alphabet="abcdefghijklmnopqrstuvwxyz/?=&%0123456789", max_size=80),
    lines=st.lists(st.tuples(_TOKEN, _VALUE), max_size=30),
)
def test_head_size_is_the_length_of_a_head_without_optional_whitespace(
    loop: asyncio.AbstractEventLoop, path: str, lines: list[tuple[str, str]]
) -> None:
    head = f"POST /{path} HTTP/1.1\r\nHost: h\r\n" + "".join(f"{n}: {v}\r\n" for n, v in lines)
    data = (head + "\r\n").encode()
    message = feed(loop, data)
    if isinstance(message, RawRequestMessage):  # a duplicate singleton field is an error
        assert head_size(message) == len(data)


def test_the_parsers_own_field_count_never_refuses_before_the_edge() -> None:
    for limits in (EdgeLimits(), EdgeLimits(max_header_bytes=1024, max_headers=500)):
        assert parser_max_headers(limits) > limits.max_headers
        assert parser_max_headers(limits) * 4 >= limits.max_header_bytes
