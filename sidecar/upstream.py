"""The connection pool to the collector: HTTP/1.1 keep-alive on asyncio protocols.

trackgate sends one kind of request to one origin: a POST (or a forwarded
preflight) with a body whose length is known, and reads one answer. A general
client (aiohttp's `ClientSession`) pays for cookies, redirects, tracing,
streaming payloads and URL handling on every request; on the proxy's hot path
that was a third of trackgate's CPU time (README "Performance"). This module
does only what a reverse proxy's upstream hop needs:

- a pool of keep-alive connections (most recently used first), at most
  `max_connections` open, further requests queue for a free one;
- a response parser for `Content-Length`, chunked and close-delimited bodies,
  interim 1xx answers skipped, `Connection: close` and HTTP/1.0 honoured;
- one deadline per request (connect + send + whole answer), after which the
  connection is aborted, never reused.

A connection is reused only after a complete, well-framed answer with nothing
after it. A failure never retries: the request may have reached the collector,
so the caller answers 502/504 with `Retry-After` and the SDK decides.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from typing import NamedTuple
from urllib.parse import urlsplit

IDLE_SECONDS = 15.0  # an idle connection older than this is closed, not reused
MAX_HEAD_BYTES = 64 * 1024  # status line and headers of one answer


class UpstreamError(Exception):
    """The collector could not be reached, or its answer was not valid HTTP/1.1."""


class Answer(NamedTuple):
    """The collector's answer: status, headers in order (names as sent), body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


class Origin(NamedTuple):
    """Where the collector listens, from `upstream.url`."""

    host: str
    port: int
    tls: bool
    base_path: str  # prefixed to every forwarded path
    host_header: str

    @classmethod
    def parse(cls, url: str) -> Origin:
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if tls else 80)
        return cls(host, port, tls, parts.path.rstrip("/"), parts.netloc)


class Pool:
    """Keep-alive connections to one origin, shared by every request of a process."""

    def __init__(self, url: str, max_connections: int) -> None:
        self.url = url
        self.origin = Origin.parse(url)
        self.limit = max_connections
        self._idle: list[_Connection] = []
        self._open = 0  # connections that exist or are being made
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._tls = ssl.create_default_context() if self.origin.tls else None
        self.closed = False

    async def send(self, head: bytes, body: bytes, timeout: float, *, head_request: bool) -> Answer:
        """Send one request (`head` ends with the blank line) and read its answer.
        Raises: TimeoutError past `timeout` seconds, UpstreamError otherwise."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        connection = self._take_idle()
        if connection is None:
            connection = await self._connect(loop, deadline)
        try:
            answer = await connection.request(head + body, deadline, head_request)
        except BaseException:
            connection.abort()
            self._forget()
            raise
        if connection.reusable:
            self._give_back(connection)
        else:
            connection.abort()
            self._forget()
        return answer

    def close(self) -> None:
        """Close every idle connection; busy ones close when their request ends."""
        self.closed = True
        for connection in self._idle:
            connection.abort()
        self._open -= len(self._idle)
        self._idle.clear()

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if connection.usable(now):
                return connection
            connection.abort()
            self._open -= 1
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Connection:
        while self._open >= self.limit:  # wait for a connection to come back or close
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken but leaving: pass the turn on
                raise
            connection = self._take_idle()
            if connection is not None:
                return connection
        self._open += 1
        try:
            async with asyncio.timeout_at(deadline):
                _, connection = await loop.create_connection(
                    _Connection,
                    self.origin.host,
                    self.origin.port,
                    ssl=self._tls,
                    server_hostname=self.origin.host if self._tls else None,
                )
        except BaseException as error:
            self._forget()
            if isinstance(error, OSError):
                raise UpstreamError(f"cannot connect: {error.strerror or error}") from None
            raise
        return connection

    def _give_back(self, connection: _Connection) -> None:
        if self.closed:
            connection.abort()
            self._forget()
            return
        connection.idle_since = time.monotonic()
        self._idle.append(connection)
        self._wake()

    def _forget(self) -> None:
        self._open -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class _Connection(asyncio.Protocol):
    """One keep-alive connection: sends a request, parses one answer at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self.reusable = False
        self._answer: asyncio.Future[Answer] | None = None
        self._parser: _AnswerParser | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def usable(self, now: float) -> bool:
        transport = self.transport
        return (
            not self._lost
            and transport is not None
            and not transport.is_closing()
            and now - self.idle_since < IDLE_SECONDS
        )

    def request(self, data: bytes, deadline: float, head_request: bool) -> asyncio.Future[Answer]:
        """Write one request; the future is its parsed answer."""
        transport = self.transport
        if transport is None or self._lost:
            raise UpstreamError("the connection closed")
        loop = asyncio.get_running_loop()
        self.reusable = False
        self._answer = answer = loop.create_future()
        self._parser = _AnswerParser(head_request)
        self._timer = loop.call_at(deadline, self._expire)
        transport.write(data)
        return answer

    def data_received(self, data: bytes) -> None:
        parser, answer = self._parser, self._answer
        if parser is None or answer is None or answer.done():
            self._lost = True  # bytes nobody asked for: never reuse this connection
            self.abort()
            return
        try:
            done = parser.feed(data)
        except UpstreamError as error:
            self._finish(error)
            return
        if done is not None:
            self.reusable = parser.keep_alive and not parser.trailing
            self._finish(done)

    def eof_received(self) -> bool | None:
        self._closed_by_peer()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed_by_peer()

    def abort(self) -> None:
        self._lost = True
        if self.transport is not None:
            self.transport.abort()

    def _closed_by_peer(self) -> None:
        self._lost = True
        parser, answer = self._parser, self._answer
        if parser is None or answer is None or answer.done():
            return
        done = parser.close()  # a close-delimited body ends here; anything else is cut short
        self._finish(done if done is not None else UpstreamError("the collector closed early"))

    def _expire(self) -> None:
        self._finish(TimeoutError())

    def _finish(self, outcome: Answer | BaseException) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        answer, self._answer, self._parser = self._answer, None, None
        if answer is None or answer.done():
            return
        if isinstance(outcome, BaseException):
            self.reusable = False
            answer.set_exception(outcome)
        else:
            answer.set_result(outcome)


class _AnswerParser:
    """Incremental HTTP/1.1 response parsing (RFC 9112 §6 message body length)."""

    def __init__(self, head_request: bool) -> None:
        self.head_request = head_request
        self.keep_alive = False
        self.trailing = False  # bytes arrived after the answer's end
        self._buffer = bytearray()
        self._status = 0
        self._headers: list[tuple[str, str]] = []
        self._length: int | None = None  # Content-Length still to come; None: not known
        self._chunked = False
        self._until_close = False
        self._head_done = False
        self._chunks: _Chunks | None = None

    def feed(self, data: bytes) -> Answer | None:
        """Take more bytes; the answer once complete. Raises UpstreamError."""
        self._buffer += data
        if not self._head_done and not self._read_head():
            return None
        if self._until_close:
            return None
        if self._chunks is not None:
            body = self._chunks.feed(self._buffer)
            self._buffer.clear()
            if body is None:
                return None
            self.trailing = self._chunks.trailing
            return Answer(self._status, self._headers, body)
        length = self._length or 0
        if len(self._buffer) < length:
            return None
        self.trailing = len(self._buffer) > length
        return Answer(self._status, self._headers, bytes(self._buffer[:length]))

    def close(self) -> Answer | None:
        """The peer closed: the answer, if a close-delimited body ends here."""
        self.keep_alive = False
        if self._head_done and self._until_close:
            return Answer(self._status, self._headers, bytes(self._buffer))
        return None

    def _read_head(self) -> bool:
        while True:  # interim 1xx answers are read and dropped
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    raise UpstreamError("the collector's response headers are too large")
                return False
            head = bytes(self._buffer[:end]).decode("utf-8", "surrogateescape")
            del self._buffer[: end + 4]
            if self._parse_head(head):
                return True

    def _parse_head(self, head: str) -> bool:
        lines = head.split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit():
            raise UpstreamError("the collector's answer is not HTTP/1.x")
        status = int(code)
        if 100 <= status < 200:
            if status == 101:
                raise UpstreamError("the collector switched protocols")
            return False
        headers = []
        connection, lengths, codings = "", set(), ""
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip() or line[0] in " \t":
                raise UpstreamError("the collector sent a malformed header line")
            value = value.strip()
            lowered = name.lower()
            if lowered == "content-length":
                lengths.add(value)
            elif lowered == "transfer-encoding":
                codings = f"{codings},{value}" if codings else value
            elif lowered == "connection":
                connection = f"{connection},{value.lower()}"
            headers.append((name, value))
        self._status, self._headers, self._head_done = status, headers, True
        self.keep_alive = _keeps_alive(version, connection)
        self._frame(status, lengths, codings)
        return True

    def _frame(self, status: int, lengths: set[str], codings: str) -> None:
        """How the body ends (RFC 9112 §6.3)."""
        if self.head_request or status in (204, 304):
            self._length = 0
        elif codings:
            if codings.rsplit(",", 1)[-1].strip().lower() != "chunked":
                self._until_close, self.keep_alive = True, False
            else:
                self._chunks = _Chunks()
        elif lengths:
            if len(lengths) > 1 or not next(iter(lengths)).isdigit():
                raise UpstreamError("the collector sent an invalid Content-Length")
            self._length = int(next(iter(lengths)))
        else:
            self._until_close, self.keep_alive = True, False


def _keeps_alive(version: str, connection: str) -> bool:
    tokens = {token.strip() for token in connection.split(",")}
    if "close" in tokens:
        return False
    return version == "HTTP/1.1" or "keep-alive" in tokens


class _Chunks:
    """Chunked transfer coding: collects the data, skips extensions and trailers."""

    def __init__(self) -> None:
        self.trailing = False
        self._pending = bytearray()
        self._body = bytearray()
        self._need = -1  # bytes of chunk data (+ CRLF) still expected; -1: a size line
        self._in_trailers = False

    def feed(self, data: bytearray) -> bytes | None:
        pending = self._pending
        pending += data
        while True:
            if self._in_trailers:
                end = pending.find(b"\r\n")
                if end < 0:
                    return None
                del pending[: end + 2]
                if end == 0:  # the empty line after the trailers
                    self.trailing = bool(pending)
                    return bytes(self._body)
                continue
            if self._need < 0:
                end = pending.find(b"\r\n")
                if end < 0:
                    if len(pending) > MAX_HEAD_BYTES:
                        raise UpstreamError("the collector sent an invalid chunk size")
                    return None
                size = bytes(pending[:end]).split(b";", 1)[0].strip()
                del pending[: end + 2]
                try:
                    self._need = int(size, 16) + 2
                except ValueError:
                    raise UpstreamError("the collector sent an invalid chunk size") from None
                if self._need == 2:
                    self._in_trailers = True
                continue
            if len(pending) < self._need:
                return None
            if pending[self._need - 2 : self._need] != b"\r\n":
                raise UpstreamError("the collector sent a malformed chunk")
            self._body += pending[: self._need - 2]
            del pending[: self._need]
            self._need = -1
