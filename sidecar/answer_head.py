"""The head of an HTTP/1.1 answer, read strictly (RFC 9112 §2 to §5; SPEC §5.4).

The line-level grammar `answers.py` parses collector answers with: CRLF-only
line blocks (the head, and a chunked body's trailers), the status line, header
fields, `Content-Length` and `Connection`; and the closed set of flaws an
answer can have. Strict, because whatever trackgate accepts it relays to a
client that may read it differently (a header value holding a bare LF became
an empty reply while the access log said 200):

- status line: `HTTP/1.1` or `HTTP/1.0`, SP, three ASCII digits 100 to 599, SP,
  a reason of visible characters (`re.fullmatch`, never `isdigit()`);
- every line ends in CRLF: a bare LF or CR anywhere is a flaw, found as soon
  as it arrives;
- header lines are `token ":" value` without folding; values are UTF-8 (what
  the client-facing writer emits unchanged);
- `Content-Length` is ASCII digits, the same value if repeated.

A flaw raises `InvalidAnswer` naming it, never quoting the collector's bytes.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import NamedTuple

MAX_HEAD_BYTES = 64 * 1024  # status line and headers of one answer; also the trailers
MAX_LENGTH_DIGITS = 18  # a longer Content-Length or chunk size is over any cap anyway

_STATUS = rb"HTTP/1\.([01]) ([1-5][0-9][0-9]) [\t\x20-\x7e\x80-\xff]*"
_FIELD = rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):([\t\x20-\x7e\x80-\xff]*)"
_STATUS_LINE = re.compile(_STATUS, re.ASCII)
_HEADER_LINE = re.compile(_FIELD, re.ASCII)
# The whole head in one match (one pass in C, no per-line regex on the hot path);
# the per-line patterns above only name the flaw when it fails.
_HEAD = re.compile(_STATUS + rb"((?:\r\n" + _FIELD.replace(b"(", b"(?:") + rb")*)", re.ASCII)
_DIGITS = re.compile(r"[0-9]+", re.ASCII)


class Flaw(StrEnum):
    """What made an answer invalid; the value is safe to log."""

    STATUS_LINE = "status_line"
    BARE_LINE_END = "bare_line_end"  # a line ending in LF or CR alone
    HEADER_LINE = "header_line"
    HEAD_TOO_LARGE = "head_too_large"
    CONTENT_LENGTH = "content_length"
    TRANSFER_CODING = "transfer_coding"
    CHUNK_SIZE = "chunk_size"
    CHUNK_DATA = "chunk_data"  # chunk data not followed by CRLF
    TOO_LARGE = "too_large"  # the body is over `max_body` bytes
    SWITCHED_PROTOCOLS = "switched_protocols"


class InvalidAnswer(Exception):
    """The collector's answer is not valid HTTP/1.1, or is over the size cap."""

    def __init__(self, flaw: Flaw) -> None:
        super().__init__(f"the collector's answer is invalid ({flaw.value})")
        self.flaw = flaw


class Head(NamedTuple):
    """A parsed head: what framing and reuse need besides status and headers."""

    http10: bool
    status: int
    headers: list[tuple[str, str]]
    lengths: frozenset[str]  # Content-Length values
    codings: list[str]  # Transfer-Encoding values, lower-cased
    connection: str  # Connection values, lower-cased, comma-joined


def parse_head(raw: bytes) -> Head:
    """Status line and header lines (CRLF-separated, without the blank line)."""
    found = _HEAD.fullmatch(raw)
    if found is None:
        raise InvalidAnswer(_flaw_of(raw))
    headers: list[tuple[str, str]] = []
    lengths: set[str] = set()
    codings: list[str] = []
    connection: list[str] = []
    for line in _text(found[3]).split("\r\n")[1:]:
        name, _, value = line.partition(":")  # the grammar was checked whole above
        value = value.strip(" \t")
        lowered = name.lower()
        if lowered == "content-length":
            lengths.add(value)
        elif lowered == "transfer-encoding":
            codings.extend(c.strip(" \t").lower() for c in value.split(","))
        elif lowered == "connection":
            connection.append(value.lower())
        headers.append((name, value))
    return Head(
        found[1] == b"0",
        int(found[2]),  # three ASCII digits, matched above
        headers,
        frozenset(lengths),
        codings,
        ",".join(connection),
    )


def _flaw_of(raw: bytes) -> Flaw:
    """Which part of a head that failed the whole-head match is wrong."""
    lines = raw.split(b"\r\n")
    if any(b"\r" in line or b"\n" in line for line in lines):
        return Flaw.BARE_LINE_END
    if _STATUS_LINE.fullmatch(lines[0]) is None:
        return Flaw.STATUS_LINE
    return Flaw.HEADER_LINE


def header_line(line: bytes) -> tuple[bytes, bytes]:
    """`name: value` with optional whitespace around the value; no obs-fold."""
    found = _HEADER_LINE.fullmatch(line)
    if found is None:
        bare = b"\r" in line or b"\n" in line
        raise InvalidAnswer(Flaw.BARE_LINE_END if bare else Flaw.HEADER_LINE)
    return found[1], found[2].strip(b" \t")


def _text(value: bytes) -> str:
    """Header values as the client-facing writer will emit them (UTF-8, unchanged)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidAnswer(Flaw.HEADER_LINE) from None


def content_length(lengths: frozenset[str]) -> int | None:
    """The body length the `Content-Length` values declare (None: not declared)."""
    if not lengths:
        return None
    if len(lengths) > 1:
        raise InvalidAnswer(Flaw.CONTENT_LENGTH)
    (value,) = lengths
    if _DIGITS.fullmatch(value) is None:
        raise InvalidAnswer(Flaw.CONTENT_LENGTH)
    if len(value) > MAX_LENGTH_DIGITS:
        raise InvalidAnswer(Flaw.TOO_LARGE)
    return int(value)


def keeps_alive(http10: bool, connection: str) -> bool:
    """Whether the connection stays open after this answer (RFC 9112 §9.3)."""
    if not connection:
        return not http10
    tokens = {token.strip(" \t") for token in connection.split(",")}
    if "close" in tokens:
        return False
    return not http10 or "keep-alive" in tokens


class Block:
    """A head or trailer section: CRLF-terminated lines up to an empty one, at most
    `limit` bytes. Each byte is looked at once however the bytes arrive (a collector
    sending its head byte by byte costs linear time, not quadratic)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._checked = 0  # bytes of the buffer whose line ends are known good

    def take(self, buffer: bytearray) -> bytes | None:
        """The lines, taken from `buffer` without the final blank line; None while
        incomplete. Raises on a bare LF or CR, or past `limit` bytes."""
        checked = self._checked
        end = buffer.find(b"\r\n\r\n", max(checked - 3, 0), self.limit + 4)
        if end < 0:
            # Incomplete: a bare LF or CR is found now, not when a blank line that
            # may never come arrives. (A complete block's lines are checked whole
            # by their grammar, whose character classes hold no CR or LF.)
            scanned = min(len(buffer), self.limit + 4)
            _check_line_ends(buffer, checked, scanned)
            if len(buffer) > self.limit:
                raise InvalidAnswer(Flaw.HEAD_TOO_LARGE)
            self._checked = scanned
            return None
        scanned = end + 4
        block = bytes(memoryview(buffer)[:end])  # one copy, not a slice and a copy
        del buffer[:scanned]
        self._checked = 0
        return block


def _check_line_ends(buffer: bytearray, start: int, end: int) -> None:
    """Every LF and CR in `buffer[start:end]` is part of a CRLF, except a CR that ends
    the buffer (its LF may still be on its way; the next call starts at that CR)."""
    if start > 0 and buffer[start - 1] == 13:  # "\r": the one a previous call let pass
        start -= 1
    pairs = buffer.count(b"\r\n", start, end)
    trailing_cr = end > start and buffer[end - 1] == 13 and end == len(buffer)
    if (
        buffer.count(b"\n", start, end) != pairs
        or buffer.count(b"\r", start, end) != pairs + trailing_cr
    ):
        raise InvalidAnswer(Flaw.BARE_LINE_END)
