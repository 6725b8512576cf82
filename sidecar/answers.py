"""The collector's answer, parsed strictly and without I/O (RFC 9112; SPEC §5.4).

`AnswerParser` is fed the bytes of one answer as they arrive and returns the
`Answer` once it is complete. It follows the grammar, not the lenient habits of
browsers, because whatever it accepts is relayed to a client that may parse it
differently (a header value holding a bare LF became an empty reply while the
access log said 200):

- status line: `HTTP/1.1` or `HTTP/1.0`, SP, three ASCII digits 100 to 599, SP, a
  reason of visible characters (`re.fullmatch`, never `isdigit()`);
- every line of the head (and of chunk sizes and trailers) ends in CRLF: a bare
  LF or CR anywhere is an invalid answer, found as soon as it arrives;
- header lines are `token ":" value` without folding; values are UTF-8 (what
  the client-facing writer emits unchanged);
- `Content-Length` is ASCII digits (the same value if repeated); a transfer
  coding other than `chunked`, or one beside a `Content-Length`, is invalid;
- chunk sizes are hex digits matched whole — never `int(x, 16)` on raw text,
  which takes `0x`, `+`, `_`, spaces and other scripts' digits;
- the body is bounded by `max_body` bytes whatever the framing: a larger one is
  refused as soon as it is declared or received, so memory never holds more.

Interim 1xx answers are read, checked and dropped; `101` is refused. Any flaw
raises `InvalidAnswer` naming it (never quoting the collector's bytes).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import NamedTuple

MAX_HEAD_BYTES = 64 * 1024  # status line and headers of one answer; also the trailers
MAX_CHUNK_LINE_BYTES = 4096  # a chunk-size line with its extensions
MAX_LENGTH_DIGITS = 18  # a longer Content-Length or chunk size is over any cap anyway

_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-5][0-9][0-9]) [\t\x20-\x7e\x80-\xff]*", re.ASCII)
_HEADER_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):([\t\x20-\x7e\x80-\xff]*)", re.ASCII)
_DIGITS = re.compile(rb"[0-9]+", re.ASCII)
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]+)(?:[ \t]*;[\t\x20-\x7e\x80-\xff]*)?", re.ASCII)
_NO_BODY = frozenset({204, 304})


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


class Answer(NamedTuple):
    """The collector's answer: status, headers in order (names as sent), body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


class _Head(NamedTuple):
    """A parsed head: what framing and reuse need besides status and headers."""

    http10: bool
    status: int
    headers: list[tuple[str, str]]
    lengths: frozenset[bytes]  # Content-Length values
    codings: list[bytes]  # Transfer-Encoding values, lower-cased
    connection: bytes  # Connection values, lower-cased, comma-joined


class AnswerParser:
    """Incremental parsing of one answer (RFC 9112 §6 message body length)."""

    def __init__(self, *, head_request: bool, max_body: int) -> None:
        self.head_request = head_request
        self.max_body = max_body
        self.keep_alive = False
        self.trailing = False  # bytes arrived after the answer's end
        self._buffer = bytearray()
        self._head: _Head | None = None
        self._block = _Block(MAX_HEAD_BYTES)
        self._length: int | None = None  # a Content-Length body: its length
        self._chunks: _Chunks | None = None
        self._until_close = False

    def feed(self, data: bytes) -> Answer | None:
        """Take more bytes; the answer once complete. Raises InvalidAnswer."""
        buffer = self._buffer
        buffer += data
        head = self._head
        if head is None:
            head = self._read_head()
            if head is None:
                return None
        if self._chunks is not None:
            body = self._chunks.feed(buffer)
            buffer.clear()
            if body is None:
                return None
            self.trailing = self._chunks.trailing
            return Answer(head.status, head.headers, body)
        if self._until_close:
            if len(buffer) > self.max_body:
                raise InvalidAnswer(Flaw.TOO_LARGE)
            return None
        return self._sized(head, buffer)

    def close(self) -> Answer | None:
        """The peer closed: the answer, if a close-delimited body ends here."""
        self.keep_alive = False
        if self._head is not None and self._until_close:
            return Answer(self._head.status, self._head.headers, bytes(self._buffer))
        return None

    def _sized(self, head: _Head, buffer: bytearray) -> Answer | None:
        length = self._length or 0
        if len(buffer) < length:
            return None
        self.trailing = len(buffer) > length
        # One copy, not a slice and then a copy: the body may be up to the cap.
        body = bytes(buffer) if len(buffer) == length else bytes(memoryview(buffer)[:length])
        return Answer(head.status, head.headers, body)

    def _read_head(self) -> _Head | None:
        """Heads until a final (non-1xx) one; consumed from the buffer."""
        while True:
            raw = self._block.take(self._buffer)
            if raw is None:
                return None
            head = parse_head(raw)
            if head.status == 101:
                raise InvalidAnswer(Flaw.SWITCHED_PROTOCOLS)
            if head.status >= 200:
                self._head = head
                self._frame(head)
                return head

    def _frame(self, head: _Head) -> None:
        """How the body ends (RFC 9112 §6.3), and whether the connection stays open."""
        self.keep_alive = _keeps_alive(head.http10, head.connection)
        length = _content_length(head.lengths)
        if head.codings and length is not None:
            raise InvalidAnswer(Flaw.TRANSFER_CODING)  # both: a smuggling attempt
        if head.codings and head.codings != [b"chunked"]:
            raise InvalidAnswer(Flaw.TRANSFER_CODING)  # trackgate decodes chunked only
        if self.head_request or head.status in _NO_BODY:
            self._length = 0
        elif head.codings:
            self._chunks = _Chunks(self.max_body)
        elif length is not None:
            if length > self.max_body:
                raise InvalidAnswer(Flaw.TOO_LARGE)
            self._length = length
        else:
            self._until_close, self.keep_alive = True, False


def parse_head(raw: bytes) -> _Head:
    """Status line and header lines (CRLF-separated, without the blank line)."""
    lines = raw.split(b"\r\n")
    status_line = _STATUS_LINE.fullmatch(lines[0])
    if status_line is None:
        raise InvalidAnswer(Flaw.STATUS_LINE)
    headers: list[tuple[str, str]] = []
    lengths: set[bytes] = set()
    codings: list[bytes] = []
    connection: list[bytes] = []
    for line in lines[1:]:
        name, value = _header_line(line)
        lowered = name.lower()
        if lowered == b"content-length":
            lengths.add(value)
        elif lowered == b"transfer-encoding":
            codings.extend(c.strip().lower() for c in value.split(b","))
        elif lowered == b"connection":
            connection.append(value.lower())
        headers.append((name.decode("ascii"), _text(value)))
    return _Head(
        status_line[1] == b"0",
        int(status_line[2]),  # three ASCII digits, matched above
        headers,
        frozenset(lengths),
        codings,
        b",".join(connection),
    )


def _header_line(line: bytes) -> tuple[bytes, bytes]:
    """`name: value` with optional whitespace around the value; no obs-fold."""
    found = _HEADER_LINE.fullmatch(line)
    if found is None:
        raise InvalidAnswer(Flaw.HEADER_LINE)
    return found[1], found[2].strip(b" \t")


def _text(value: bytes) -> str:
    """A header value as the client-facing writer will emit it (UTF-8, unchanged)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidAnswer(Flaw.HEADER_LINE) from None


def _content_length(lengths: frozenset[bytes]) -> int | None:
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


def _keeps_alive(http10: bool, connection: bytes) -> bool:
    tokens = {token.strip() for token in connection.split(b",")}
    if b"close" in tokens:
        return False
    return not http10 or b"keep-alive" in tokens


class _Block:
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
        scanned = end + 4 if end >= 0 else min(len(buffer), self.limit + 4)
        _check_line_ends(buffer, checked, scanned)
        if end < 0:
            if len(buffer) > self.limit:
                raise InvalidAnswer(Flaw.HEAD_TOO_LARGE)
            self._checked = scanned
            return None
        block = bytes(buffer[:end])
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


class _Chunks:
    """Chunked transfer coding: collects the data (at most `max_body` bytes), checks
    and drops extensions and trailers."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.trailing = False
        self._pending = bytearray()
        self._body = bytearray()
        self._need = -1  # bytes of chunk data (+ CRLF) still expected; -1: a size line
        self._in_trailers = False
        self._trailer_block = _Block(MAX_HEAD_BYTES)

    def feed(self, data: bytearray) -> bytes | None:
        pending = self._pending
        pending += data
        while True:
            if self._in_trailers:
                return self._trailers(pending)
            if self._need < 0:
                if not self._size_line(pending):
                    return None
                continue
            if len(pending) < self._need:
                return None
            if pending[self._need - 2 : self._need] != b"\r\n":
                raise InvalidAnswer(Flaw.CHUNK_DATA)
            self._body += memoryview(pending)[: self._need - 2]
            del pending[: self._need]
            self._need = -1

    def _size_line(self, pending: bytearray) -> bool:
        """Reads one chunk-size line; False while it is incomplete."""
        end = pending.find(b"\n", 0, MAX_CHUNK_LINE_BYTES)
        if end < 0:
            if len(pending) > MAX_CHUNK_LINE_BYTES:
                raise InvalidAnswer(Flaw.CHUNK_SIZE)
            if b"\r" in pending[:-1]:
                raise InvalidAnswer(Flaw.BARE_LINE_END)
            return False
        if end == 0 or pending[end - 1] != 13 or b"\r" in pending[: end - 1]:
            raise InvalidAnswer(Flaw.BARE_LINE_END)
        found = _CHUNK_LINE.fullmatch(pending, 0, end - 1)
        if found is None:
            raise InvalidAnswer(Flaw.CHUNK_SIZE)
        digits = found[1]
        if len(digits) > MAX_LENGTH_DIGITS:
            raise InvalidAnswer(Flaw.TOO_LARGE)
        size = int(digits, 16)  # hex digits only, matched whole above
        if len(self._body) + size > self.max_body:
            raise InvalidAnswer(Flaw.TOO_LARGE)
        del pending[: end + 1]
        self._need = size + 2
        self._in_trailers = size == 0
        return True

    def _trailers(self, pending: bytearray) -> bytes | None:
        """The trailer section after the last chunk: checked, then dropped."""
        if pending[:2] == b"\r\n":  # no trailers: the usual end
            self.trailing = len(pending) > 2
            return bytes(self._body)
        if len(pending) < 2 and not pending.startswith(b"\n"):
            return None
        block = self._trailer_block.take(pending)
        if block is None:
            return None
        for line in block.split(b"\r\n"):
            _header_line(line)
        self.trailing = bool(pending)
        return bytes(self._body)
