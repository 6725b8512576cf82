"""The connection pool to the collector: HTTP/1.1 keep-alive on asyncio protocols.

trackgate sends one kind of request to one origin: a POST (or a forwarded
preflight) with a body whose length is known, and reads one answer. A general
client (aiohttp's `ClientSession`) pays for cookies, redirects, tracing,
streaming payloads and URL handling on every request; on the proxy's hot path
that was a third of trackgate's CPU time (README "Performance"). This module
does only what a reverse proxy's upstream hop needs:

- a pool of keep-alive connections (most recently used first), at most
  `max_connections` open, further requests queue for a free one;
- the strict answer parser of `answers.py` (Content-Length, chunked and
  close-delimited bodies, at most `max_answer_bytes` of body: reading stops and
  the connection is dropped past it), `Connection: close` and HTTP/1.0 honoured;
- an idle connection is reused for at most `idle_seconds` (nginx's
  `keepalive_timeout` for upstreams, Envoy's `idle_timeout`): collectors close
  idle connections on their own timer (gunicorn after 2 s, Node and uvicorn
  after 5 s), and a request written just as the collector closes is lost;
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

from sidecar.answers import Answer, AnswerParser, InvalidAnswer

__all__ = ["Answer", "InvalidAnswer", "Origin", "Pool", "UpstreamError"]


def _tls_context(ca_pem: bytes | None) -> ssl.SSLContext:
    """Certificate and host name verified; the system's trust store plus `ca_pem`."""
    context = ssl.create_default_context()
    if ca_pem is not None:
        context.load_verify_locations(cadata=ca_pem.decode("ascii"))
    return context


class UpstreamError(Exception):
    """The collector could not be reached, or closed the connection mid-answer."""


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

    def __init__(
        self,
        url: str,
        max_connections: int,
        *,
        idle_seconds: float = 2.0,
        ca_pem: bytes | None = None,
    ) -> None:
        self.url = url
        self.origin = Origin.parse(url)
        self.limit = max_connections
        self.idle_seconds = idle_seconds
        self._idle: list[_Connection] = []
        self._open = 0  # connections that exist or are being made
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.ca_pem = ca_pem
        self._tls = _tls_context(ca_pem) if self.origin.tls else None
        self.closed = False

    async def send(
        self, head: bytes, body: bytes, timeout: float, *, head_request: bool, max_answer: int
    ) -> Answer:
        """Send one request (`head` ends with the blank line) and read its answer, whose
        body may hold at most `max_answer` bytes. Raises: TimeoutError past `timeout`
        seconds, InvalidAnswer for an answer that is not valid HTTP/1.1 or too large,
        UpstreamError when the collector cannot be reached or closes early."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        connection = self._take_idle()
        if connection is None:
            connection = await self._connect(loop, deadline)
        try:
            answer = await connection.request(head + body, deadline, head_request, max_answer)
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
        oldest = time.monotonic() - self.idle_seconds  # idle since before this: closed
        while self._idle:
            connection = self._idle.pop()
            if connection.usable(oldest):
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
        self._parser: AnswerParser | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def usable(self, oldest: float) -> bool:
        """Open, and idle since `oldest` (monotonic seconds) or later."""
        transport = self.transport
        return (
            not self._lost
            and transport is not None
            and not transport.is_closing()
            and self.idle_since > oldest
        )

    def request(
        self, data: bytes, deadline: float, head_request: bool, max_answer: int
    ) -> asyncio.Future[Answer]:
        """Write one request; the future is its parsed answer."""
        transport = self.transport
        if transport is None or self._lost:
            raise UpstreamError("the connection closed")
        loop = asyncio.get_running_loop()
        self.reusable = False
        self._answer = answer = loop.create_future()
        self._parser = AnswerParser(head_request=head_request, max_body=max_answer)
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
        except InvalidAnswer as error:
            self._finish(error)
            self.abort()  # reading stops here: nothing more of this answer is held
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
