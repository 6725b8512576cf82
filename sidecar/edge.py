"""The connection edge: what a client connection may cost before and between
requests (SPEC §2 `server.limits`, §6.3 connection metrics; findings 2, 3, 10).

`EdgeProtocol`, the protocol of aiohttp's low-level server, adds what aiohttp
leaves open:

    accept ──head──▶ request ──body──▶ handler ──answer──▶ idle ──head──▶ …
      cap            size, fields,     body deadline       keep-alive
      (connections)  coding, deadline                      deadline

- head: its bytes are counted as they arrive; past `max_header_bytes` it is
  answered 431 and the connection closed, so an unfinished head never holds
  more. Fields, size and coding of a complete head: `sidecar.request_head`. It must
  arrive within `header_timeout_seconds` of the accept (or of its first byte
  after a keep-alive answer).
- body: within `body_timeout_seconds` of its head, else the request is
  cancelled (nothing is forwarded before the body is whole) and closed.
- idle: a keep-alive connection with no new request for
  `keepalive_timeout_seconds` is closed.

One timer per connection, re-armed lazily: a later deadline only moves a
number and the timer re-arms itself when it fires early (as aiohttp's own
keep-alive timer does), so a keep-alive request costs no timer work. Closes are
FINs, counted by reason. Answers given here never echo the request and are
logged as a JSON event with a reason class only (finding 5).
"""

from __future__ import annotations

import asyncio
from enum import Enum
from typing import Any

from aiohttp import web
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_protocol import RequestHandler, _ErrInfo

from sidecar.connections import Connections
from sidecar.errors import Reason, Rejection
from sidecar.request_head import (
    HEAD_TOO_LARGE,
    CloseReason,
    Refusal,
    RefusedHead,
    check_head,
    check_parse_error,
    error_answer,
    parser_max_headers,
)
from sidecar.rules import EdgeLimits

# aiohttp's own idle timer is replaced by the deadlines here; set past any of
# them, it never fires first.
_AIOHTTP_KEEPALIVE_SECONDS = 10.0**9


class Phase(Enum):
    """Where a connection is between requests, and which deadline applies."""

    HEAD = "head"  # accepted, or a head is arriving: header_timeout
    BODY = "body"  # the newest head is complete, its body is not: body_timeout
    BUSY = "busy"  # a request is being handled and nothing new arrives: none
    IDLE = "idle"  # answered, kept alive, nothing new yet: keepalive_timeout


_EXPIRY = {
    Phase.HEAD: CloseReason.HEADER_TIMEOUT,
    Phase.BODY: CloseReason.BODY_TIMEOUT,
    Phase.IDLE: CloseReason.IDLE,
}


class EdgeServer(web.Server):
    """aiohttp's low-level server whose connections are `EdgeProtocol`s."""

    def __init__(self, handler: Any, connections: Connections, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.edge = connections

    def __call__(self) -> RequestHandler:
        """A protocol for a new connection, with the current rules' limits."""
        limits = self.edge.limits
        return EdgeProtocol(
            self,
            self.edge,
            limits,
            loop=self._loop,
            keepalive_timeout=_AIOHTTP_KEEPALIVE_SECONDS,
            max_line_size=limits.max_header_bytes,
            max_field_size=limits.max_header_bytes,
            max_headers=parser_max_headers(limits),
            **self._kwargs,
        )


class EdgeProtocol(RequestHandler):
    """One client connection: aiohttp's request handler plus the edge's limits."""

    __slots__ = (
        "_body",
        "_deadline",
        "_edge",
        "_head_bytes",
        "_limits",
        "_phase",
        "_refused",
        "_released",
        "_timer",
    )

    def __init__(
        self, manager: web.Server, edge: Connections, limits: EdgeLimits, **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self._edge = edge
        self._limits = limits
        self._phase = Phase.HEAD
        self._head_bytes = 0  # bytes of the head being received, read so far
        self._body: StreamReader | None = None  # the body being received
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._refused = False  # answered here: nothing more is read
        self._released = False  # out of the connection table

    @property
    def is_idle(self) -> bool:
        return self._phase is Phase.IDLE

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._edge.admit(self):
            self._arm(Phase.HEAD, self._limits.header_timeout_seconds)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._phase is Phase.BODY and self._body is not None:
            self._cancel_body()  # the client left mid-body: nothing was forwarded
        super().connection_lost(exc)
        self._release(None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def data_received(self, data: bytes) -> None:
        """Feed aiohttp's parser, then judge what it made of the bytes."""
        if self._refused:
            return  # answered already; the connection closes after the answer
        messages = self._messages
        queued = len(messages)
        phase = self._phase
        self._head_bytes += len(data)
        super().data_received(data)
        if len(messages) > queued:
            self._heads_arrived(queued)
        elif data:  # (aiohttp feeds b"" to re-parse what it held back)
            self._partial(phase)

    def _heads_arrived(self, queued: int) -> None:
        """Judge each head the parser completed; then time the newest one's body."""
        messages = self._messages
        limits = self._limits
        for index in range(queued, len(messages)):
            message = messages[index][0]
            refusal: Refusal | None
            if isinstance(message, _ErrInfo):
                refusal = check_parse_error(message.exc, limits, self._head_bytes)
            else:
                refusal = check_head(message, limits, self._head_bytes)
            if refusal is not None:
                self._refuse(refusal, index)
                return
        self._head_bytes = 0
        body = messages[-1][1]
        if not body.is_eof():
            self._body = body
            self._arm(Phase.BODY, limits.body_timeout_seconds)
        elif self._phase is not Phase.BUSY:
            self._phase = Phase.BUSY  # (inlined `_set_phase`: every request passes here)
            if not self._released:
                self._edge.waiting.pop(self, None)

    def _partial(self, phase: Phase) -> None:
        """Bytes that completed no head: more of a body, or of a head."""
        if phase is Phase.BODY:
            self._head_bytes = 0  # those were body bytes
            if self._body is not None and self._body.is_eof():
                self._set_phase(Phase.BUSY)
        elif self._head_bytes > self._limits.max_header_bytes:
            self._refuse(HEAD_TOO_LARGE, len(self._messages))
        elif phase is not Phase.HEAD:  # the first bytes of a head after an answer
            self._arm(Phase.HEAD, self._limits.header_timeout_seconds)

    def _refuse(self, refusal: Refusal, index: int) -> None:
        """Answer `refusal` in place of the queued request at `index` (dropping any
        after it), read nothing more, close after the answer."""
        self._refused = True
        messages = self._messages
        while len(messages) > index:
            messages.pop()
        body = self._body
        if self._phase is Phase.BODY and body is not None and not body.is_eof():
            self._fail_body(body)
            return
        error = _ErrInfo(status=refusal.status, exc=RefusedHead(refusal), message=refusal.reason)
        messages.append((error, EMPTY_PAYLOAD))
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self._set_phase(Phase.BUSY)
        if refusal.closes_as is not None:
            self._release(refusal.closes_as)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse or handle: `error_answer`,
        not aiohttp's traceback log line and echo of the request (finding 5)."""
        if request.writer.output_size > 0:  # an answer has begun: only closing is left
            raise ConnectionError("the answer has begun")
        return error_answer(status, exc)

    def log_access(
        self, request: web.BaseRequest, response: web.StreamResponse, time: float | None
    ) -> None:
        """Called by aiohttp once an answer is sent (the access log itself is the
        pipeline's): a kept-alive connection with nothing queued now waits idle."""
        if self._phase is Phase.BUSY and not self._messages and response.keep_alive:
            self._arm(Phase.IDLE, self._limits.keepalive_timeout_seconds)

    def expire(self, reason: CloseReason) -> None:
        """Close for `reason` (a deadline, the cap, the drain): a request in
        progress finishes first unless its body is what is missing."""
        self._release(reason)
        if self._phase is Phase.BODY:
            self._cancel_body()
        if self._phase is not Phase.BODY and (self._current_request or self._messages):
            self.close()  # aiohttp answers the request in progress, then closes
        else:
            self.force_close()

    def _fail_body(self, body: StreamReader) -> None:
        """The parser failed inside a body (its chunked framing): that request, whose
        handler is reading it, ends as `malformed_payload`; then the connection closes."""
        body.set_exception(
            Rejection(Reason.MALFORMED_PAYLOAD, "the body's chunked framing is invalid")
        )
        self._body = None
        self._set_phase(Phase.BUSY)
        self.close()

    def _cancel_body(self) -> None:
        """End the request whose body is missing, as aiohttp's handler_cancellation
        would: safe here, the pipeline forwards nothing before the body is whole."""
        if self._body is not None and not self._body.is_eof():
            self._body.set_exception(asyncio.CancelledError())
        self._body = None

    def _set_phase(self, phase: Phase) -> None:
        """Enter `phase`; a waiting connection moves to the end of the eviction order
        (the table's dict used directly: this runs twice a request)."""
        self._phase = phase
        if self._released:
            return
        waiting = self._edge.waiting
        waiting.pop(self, None)
        if phase is Phase.HEAD or phase is Phase.IDLE:
            waiting[self] = None

    def _arm(self, phase: Phase, seconds: float) -> None:
        """Enter `phase` with its deadline; the timer moves only if it must fire sooner."""
        self._set_phase(phase)
        loop = self._loop
        self._deadline = deadline = loop.time() + seconds
        timer = self._timer
        if timer is None or timer.when() > deadline:  # else it fires early and re-arms
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(deadline, self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        if self._released or self._phase is Phase.BUSY:
            return
        if self._loop.time() < self._deadline:  # the deadline moved on: wait for it
            self._timer = self._loop.call_at(self._deadline, self._on_deadline)
            return
        self.expire(_EXPIRY[self._phase])

    def _release(self, reason: CloseReason | None) -> None:
        if not self._released:
            self._released = True
            self._edge.release(self, reason)
