"""The request pipeline, top to bottom, and the one place a rejection becomes HTTP.

    endpoint → method → body → stream → origin → secret → decode → token → decide
             → mode → encode → forward (or answer locally) → reply → metrics + access log

CORS preflights (`OPTIONS`) take a short path: endpoint → stream (from the URL)
→ answered by `cors`, or forwarded when no stream in play uses CORS.

Each stage either returns what the next one needs or raises a `Rejection`.
Any other exception is a 500 `internal_error` and nothing is forwarded.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict

from sidecar import logs
from sidecar.auth import Credentials, check_secret, credentials, token_principal
from sidecar.body import Body, check_content_type, read_body
from sidecar.commands import Verdict
from sidecar.cors import (
    allow_headers,
    check_origin,
    preflight_origins,
    preflight_reply,
    unknown_stream_cors,
)
from sidecar.dialects import BUILTIN_ROUTER, Dialect, Endpoint
from sidecar.errors import Reason, Rejection
from sidecar.exchange import Exchange
from sidecar.forward import Outgoing, forward, upstream_pool
from sidecar.metrics import Metrics
from sidecar.outcome import Answer, Reject, in_mode, outcome
from sidecar.policy import Decision, decide
from sidecar.principal import Principal
from sidecar.reload import RulesHolder
from sidecar.reply import Reply
from sidecar.request_head import continue_if_expected
from sidecar.response import Response
from sidecar.rules import Rules, SetName, Stream, StreamType, Upstream
from sidecar.sidechannels import cookie_rule, identity_drops
from sidecar.streams import find_stream, named_stream
from sidecar.tokens import TokenVerifier
from sidecar.upstream import Pool

_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
_ID_FORMAT = secrets.token_hex(8) + "%016x"  # a random per-process prefix, then a counter
_ID_COUNTER = itertools.count()


@dataclass(frozen=True, slots=True)
class Judged:
    """A judged request to forward: all `_serve` keeps while the collector answers.
    Not the parsed body: under load dozens of requests wait on the collector at
    once, and their documents and commands would stay alive (and crowd the CPU
    caches) until then; freed at once, their memory serves the next request."""

    stream: Stream
    body: bytes  # what the collector gets
    sent: Outgoing
    verdicts: Sequence[Verdict]


class Pipeline:
    """Handles every tracking request with the rules current when it arrived."""

    def __init__(
        self,
        holder: RulesHolder,
        pool: Pool,
        verifier: TokenVerifier,
        metrics: Metrics,
    ) -> None:
        self.holder = holder
        self.pool = pool
        self.verifier = verifier
        self.metrics = metrics
        self._pool_upstream: Upstream | None = None  # what `_pool` last checked `pool` against

    async def handle(self, request: web.BaseRequest) -> Response:
        """The aiohttp handler: run the stages, turn the outcome into a response."""
        exchange = Exchange(_request_id(request), time.monotonic())
        rules = self.holder.current  # read once: this request sees one rules version
        router = rules.router if rules is not None else BUILTIN_ROUTER
        endpoint = router.match(request.path)
        self.metrics.started()
        try:
            reply = await self._serve(rules, endpoint, request, exchange)
        except Rejection as rejection:
            exchange.reason = rejection.reason
            reply = rejection_reply(endpoint, rejection, router.fallback)
        except Exception:
            logs.event("internal_error", logging.ERROR, request_id=exchange.request_id)
            logs.EVENTS.debug("internal error", exc_info=True)
            exchange.reason = Reason.INTERNAL_ERROR
            failure = Rejection(Reason.INTERNAL_ERROR, "internal error; nothing was forwarded")
            reply = rejection_reply(endpoint, failure, router.fallback)
        finally:
            self.metrics.finished()
        exchange.status = reply.status
        self._record(exchange)
        response = Response(status=reply.status, body=reply.body, headers=reply.headers)
        stream = exchange.stream
        grant: Mapping[str, str] | None = None
        if exchange.preflight or (stream is not None and stream.cors is not None):
            grant = allow_headers(stream, request, preflight=exchange.preflight)
        if not grant and exchange.reason is Reason.UNKNOWN_STREAM:
            grant = unknown_stream_cors(rules, endpoint, request, exchange.reason)
        if grant:
            response.headers.update(grant)
        response.headers["X-Request-Id"] = exchange.request_id
        return response

    def _record(self, exchange: Exchange) -> None:
        """Metrics and the access log. Their failure never changes the answer: the
        request was decided (and maybe accepted by the collector) already."""
        try:
            if not exchange.preflight or exchange.reason:  # a denied preflight: a rejection
                self.metrics.observe(exchange)
            logs.access(exchange)
        except Exception:
            logs.event("bookkeeping_error", logging.ERROR, request_id=exchange.request_id)

    async def _serve(
        self,
        rules: Rules | None,
        endpoint: Endpoint | None,
        request: web.BaseRequest,
        exchange: Exchange,
    ) -> Reply:
        if rules is None:
            raise Rejection(Reason.NOT_READY, "no rules are loaded yet")
        if endpoint is None:
            raise Rejection(Reason.UNKNOWN_ENDPOINT, f"{request.path} is not a tracking endpoint")
        exchange.dialect, exchange.endpoint = endpoint.dialect.name, endpoint.name
        if request.method == "OPTIONS":
            return await self._preflight(rules, endpoint, request, exchange)
        check_method(request)
        continue_if_expected(request, rules.server.max_body_bytes)
        body = await read_body(request, rules.server.max_body_bytes, endpoint.gzip_magic)
        judged = await self._judge(rules, endpoint, request, exchange, body)
        del body  # nothing parsed outlives the judging (`Judged`)
        if isinstance(judged, Reply):
            return judged
        upstream = await self._forward(
            rules, request, body=judged.body, sent=judged.sent, exchange=exchange
        )
        verdicts = judged.verdicts
        reply = upstream
        if endpoint.is_batch and any(not v.forwarded for v in verdicts):
            reply = endpoint.dialect.answer_batch(verdicts, upstream)
        return with_debug_headers(judged.stream, reply, verdicts)

    async def _judge(
        self,
        rules: Rules,
        endpoint: Endpoint,
        request: web.BaseRequest,
        exchange: Exchange,
        body: Body,
    ) -> Reply | Judged:
        """Stream, credentials, decoding and the policy: the answer when nothing is
        forwarded, else what to send. Rejects: every reason of those stages."""
        stream = exchange.stream = find_stream(rules, endpoint, request, body)
        presented = credentials(stream, request.headers, endpoint.secret_from)
        if stream.cors is not None:
            check_origin(stream, request)
        if stream.type is StreamType.PRIVATE:
            check_secret(stream, presented)
        check_content_type(request.headers.get("Content-Type", ""), endpoint.form)
        payload = endpoint.dialect.decode(endpoint, body, stream, rules.server.limits)
        exchange.commands = len(payload.commands)
        principal = await token_principal(stream, presented, self.verifier)
        exchange.token_result = principal.result
        decision = in_mode(stream, decide(stream, principal, payload.commands), payload.commands)
        record_decision(exchange, decision)
        then = outcome(endpoint, payload, decision, body.raw)
        if isinstance(then, Reject):
            raise then.rejection
        if isinstance(then, Answer):
            return then.reply
        sent = outgoing_headers(
            rules,
            endpoint.dialect,
            stream,
            request,
            presented=presented,
            principal=principal,
            decision=decision,
        )
        return Judged(stream, then.body, sent, decision.verdicts)

    async def _preflight(
        self, rules: Rules, endpoint: Endpoint, request: web.BaseRequest, exchange: Exchange
    ) -> Reply:
        """A CORS preflight: answered for streams with `cors`, forwarded otherwise.
        Rejects: stream_id_conflict, unknown_stream, origin_not_allowed."""
        exchange.preflight = True
        stream_id = endpoint.dialect.stream_id(request, endpoint, Body(b""))
        stream = None
        if stream_id is not None:
            stream = exchange.stream = named_stream(rules, endpoint, stream_id)
        origins = preflight_origins(rules, endpoint.dialect.name, stream)
        if origins is None:
            exchange.preflight = False  # forwarded like any request, and counted so
            sent = preflight_headers(rules, endpoint.dialect, stream)
            return await self._forward(rules, request, body=b"", sent=sent, exchange=exchange)
        return preflight_reply(origins, request)

    async def _forward(
        self,
        rules: Rules,
        request: web.BaseRequest,
        *,
        body: bytes,
        sent: Outgoing,
        exchange: Exchange,
    ) -> Reply:
        started = time.monotonic()
        try:
            upstream = await forward(
                self._pool(rules.server.upstream),
                rules.server.upstream,
                request,
                body=body,
                outgoing=sent,
                request_id=exchange.request_id,
            )
        finally:
            exchange.upstream_seconds = time.monotonic() - started
        exchange.upstream_status = upstream.status
        return upstream

    def _pool(self, upstream: Upstream) -> Pool:
        """The collector's pool; a reload that moves the collector starts a new one."""
        pool = self.pool
        if upstream is self._pool_upstream:
            return pool  # the settings it was checked against last time (one rules version)
        if (pool.url, pool.limit, pool.ca_pem) != (
            upstream.url,
            upstream.max_connections,
            upstream.ca_pem,
        ):
            pool.close()  # idle connections now; busy ones as their requests end
            pool = self.pool = upstream_pool(upstream)
        pool.idle_seconds = upstream.idle_seconds  # a reload may change it; no new pool
        self._pool_upstream = upstream
        return pool


def check_method(request: web.BaseRequest) -> None:
    """Tracking endpoints take POST. Rejects: method_not_allowed."""
    if request.method != "POST":
        raise Rejection(Reason.METHOD_NOT_ALLOWED, f"{request.method} is not allowed; use POST")


def outgoing_headers(
    rules: Rules,
    dialect: Dialect,
    stream: Stream,
    request: web.BaseRequest,
    *,
    presented: Credentials,
    principal: Principal,
    decision: Decision,
) -> Outgoing:
    """What the forwarded head leaves out and sets: consumed credentials, identity
    headers judged unfit (SPEC §3.3 side channels), the stream's cookie rule."""
    forwarded = dialect.forwarded_credentials
    consumed = presented.consumed - forwarded if forwarded else presented.consumed
    if dialect.identity_headers:
        consumed |= identity_drops(
            dialect.identity_headers, stream, principal, decision, request.headers
        )
    extra = dialect.upstream_headers(stream, consumed)
    return Outgoing(consumed, extra, cookie_rule(stream), rules.server.trusted_proxies)


def preflight_headers(rules: Rules, dialect: Dialect, stream: Stream | None) -> Outgoing:
    """What a forwarded preflight's head leaves out: identity headers (no body to judge
    them by) and the cookies the stream does not forward."""
    unjudged = frozenset(name.lower() for name in dialect.identity_headers)
    return Outgoing(
        unjudged, cookies=cookie_rule(stream), trusted_proxies=rules.server.trusted_proxies
    )


def record_decision(exchange: Exchange, decision: Decision) -> None:
    """Copy what metrics and logs need from the decision (names and codes only)."""
    would_reject = [*decision.would_reject]
    reasons: list[Reason] = []
    stripped: dict[tuple[SetName, str], int] = {}
    would_strip: dict[tuple[SetName, str], int] = {}
    forwarded = 0
    for verdict, count in decision.tally:
        if verdict.would_reject:
            would_reject.extend(verdict.would_reject * count)
        if verdict.would_strip:
            _count_names(would_strip, verdict.would_strip, count)
        if not verdict.forwarded:
            reasons.extend([verdict.reason or Reason.INTERNAL_ERROR] * count)
            continue
        forwarded += count
        if verdict.modified:
            _count_names(stripped, verdict.stripped, count)
    exchange.commands_forwarded = forwarded
    if reasons:
        exchange.command_reasons = reasons
    if stripped:
        exchange.stripped = stripped
    if would_reject:
        exchange.would_reject = would_reject
    if would_strip:
        exchange.would_strip = would_strip


def _count_names(
    counts: dict[tuple[SetName, str], int], names: Mapping[SetName, tuple[str, ...]], times: int
) -> None:
    for set_name, listed in names.items():
        for name in listed:
            key = (set_name, name)
            counts[key] = counts.get(key, 0) + times


def rejection_reply(endpoint: Endpoint | None, rejection: Rejection, fallback: Dialect) -> Reply:
    """The HTTP answer to a rejection, in the endpoint's dialect (`fallback`'s for a
    path that is no endpoint)."""
    dialect = endpoint.dialect if endpoint else fallback
    return dialect.error_reply(rejection)


def with_debug_headers(stream: Stream, reply: Reply, verdicts: Sequence[Verdict]) -> Reply:
    """Adds `X-Trackgate-Stripped` when the stream has `debug_headers: true`."""
    if not stream.debug_headers:
        return reply
    stripped: dict[SetName, dict[str, None]] = {}
    for verdict in verdicts:
        for set_name, names in verdict.stripped.items():
            stripped.setdefault(set_name, {}).update(dict.fromkeys(names))
    if not stripped:
        return reply
    headers = CIMultiDict(reply.headers)
    headers["X-Trackgate-Stripped"] = ";".join(
        f"{s.value}={','.join(names)}" for s, names in stripped.items()
    )
    return Reply(reply.status, reply.body, headers)


def _request_id(request: web.BaseRequest) -> str:
    """The client's X-Request-Id when it is sane, else a new one: a random
    per-process prefix and a counter (unique, and cheaper than uuid4)."""
    given = request.headers.get("X-Request-Id")
    if given is not None and _REQUEST_ID.match(given):
        return given
    return _ID_FORMAT % next(_ID_COUNTER)
