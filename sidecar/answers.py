"""The collector's answer, parsed without I/O (RFC 9112 §6; SPEC §5.4).

`AnswerParser` is fed the bytes of one answer as they arrive and returns the
`Answer` once it is complete. Its head is read by `answer_head.py`'s strict grammar;
this module decides how the body ends and reads it:

- `Content-Length`, a single `chunked` transfer coding, or the connection's
  close; any other coding, or a coding beside a `Content-Length`, is invalid;
- chunk sizes are hex digits matched whole — never `int(x, 16)` on raw text,
  which takes `0x`, `+`, `_`, spaces and other scripts' digits; chunk
  extensions and trailers are checked, then dropped;
- the body is bounded by `max_body` bytes whatever the framing: a larger one is
  refused as soon as it is declared or received, so memory never holds more.

Interim 1xx answers are read, checked and dropped; `101` is refused. Any flaw
raises `InvalidAnswer` naming it.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from sidecar.answer_head import (
    MAX_HEAD_BYTES,
    MAX_LENGTH_DIGITS,
    Block,
    Flaw,
    Head,
    InvalidAnswer,
    content_length,
    header_line,
    keeps_alive,
    parse_head,
)

__all__ = ["Answer", "AnswerParser", "Flaw", "InvalidAnswer"]

MAX_CHUNK_LINE_BYTES = 4096  # a chunk-size line with its extensions

_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]+)(?:[ \t]*;[\t\x20-\x7e\x80-\xff]*)?", re.ASCII)
_NO_BODY = frozenset({204, 304})


class Answer(NamedTuple):
    """The collector's answer: status, headers in order (names as sent), body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


class AnswerParser:
    """Incremental parsing of one answer (RFC 9112 §6 message body length)."""

    def __init__(self, *, head_request: bool, max_body: int) -> None:
        self.head_request = head_request
        self.max_body = max_body
        self.keep_alive = False
        self.trailing = False  # bytes arrived after the answer's end
        self._buffer = bytearray()
        self._head: Head | None = None
        self._block = Block(MAX_HEAD_BYTES)
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

    def _sized(self, head: Head, buffer: bytearray) -> Answer | None:
        length = self._length or 0
        if len(buffer) < length:
            return None
        self.trailing = len(buffer) > length
        # One copy, not a slice and then a copy: the body may be up to the cap.
        body = bytes(buffer) if len(buffer) == length else bytes(memoryview(buffer)[:length])
        return Answer(head.status, head.headers, body)

    def _read_head(self) -> Head | None:
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

    def _frame(self, head: Head) -> None:
        """How the body ends (RFC 9112 §6.3), and whether the connection stays open."""
        self.keep_alive = keeps_alive(head.http10, head.connection)
        length = content_length(head.lengths)
        if head.codings and length is not None:
            raise InvalidAnswer(Flaw.TRANSFER_CODING)  # both: a smuggling attempt
        if head.codings and head.codings != ["chunked"]:
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
        self._trailer_block = Block(MAX_HEAD_BYTES)

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
            header_line(line)
        self.trailing = bool(pending)
        return bytes(self._body)
