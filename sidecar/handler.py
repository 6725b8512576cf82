"""The request pipeline, top to bottom, and the one place a rejection becomes HTTP.

    endpoint → method → body → stream → secret → decode → token → decide
             → encode → forward (or answer locally) → reply

Each stage either returns what the next one needs or raises a `Rejection`.
Any other exception is a 500 `internal_error` and nothing is forwarded.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence

import aiohttp
from aiohttp import web

from sidecar.auth import check_secret, consumed_headers, token_principal
from sidecar.body import check_content_type, parse_json, read_body
from sidecar.commands import Verdict
from sidecar.dialects import DIALECTS, Endpoint, Reply, find_endpoint
from sidecar.errors import Reason, Rejection
from sidecar.forward import forward
from sidecar.policy import decide
from sidecar.reload import RulesHolder
from sidecar.rules import Rules, SetName, Stream, StreamType
from sidecar.streams import find_stream
from sidecar.tokens import TokenVerifier

log = logging.getLogger("trackgate")

_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
_FALLBACK_DIALECT = DIALECTS["bloomreach"]


class Pipeline:
    """Handles every tracking request with the rules current when it arrived."""

    def __init__(
        self, holder: RulesHolder, session: aiohttp.ClientSession, verifier: TokenVerifier
    ) -> None:
        self.holder = holder
        self.session = session
        self.verifier = verifier

    async def handle(self, request: web.Request) -> web.Response:
        """The aiohttp handler: run the stages, turn the outcome into a response."""
        request_id = _request_id(request)
        rules = self.holder.current
        endpoint = find_endpoint(request.path)
        try:
            reply = await self._serve(rules, endpoint, request, request_id)
        except Rejection as rejection:
            reply = rejection_reply(endpoint, rejection)
        except Exception:
            log.exception("internal error while handling request %s", request_id)
            reply = rejection_reply(
                endpoint, Rejection(Reason.INTERNAL_ERROR, "internal error; nothing was forwarded")
            )
        response = web.Response(status=reply.status, body=reply.body, headers=reply.headers)
        response.headers["X-Request-Id"] = request_id
        return response

    async def _serve(
        self, rules: Rules | None, endpoint: Endpoint | None, request: web.Request, request_id: str
    ) -> Reply:
        if rules is None:
            raise Rejection(Reason.NOT_READY, "no rules are loaded yet")
        if endpoint is None:
            raise Rejection(Reason.UNKNOWN_ENDPOINT, f"{request.path} is not a tracking endpoint")
        check_method(request)
        body = await read_body(request, rules.server.max_body_bytes)
        stream = find_stream(rules, endpoint, request, body)
        if stream.type is StreamType.PRIVATE:
            check_secret(stream, request.headers)
        check_content_type(request.headers.get("Content-Type", ""))
        payload = endpoint.dialect.decode(endpoint, parse_json(body))
        principal = token_principal(stream, request.headers, self.verifier)
        decision = decide(stream, principal, payload.commands)
        if decision.rejection is not None:
            raise decision.rejection
        verdicts = decision.verdicts
        if not endpoint.is_batch and not verdicts[0].forwarded:
            raise Rejection(verdicts[0].reason or Reason.INTERNAL_ERROR, verdicts[0].message)
        if not decision.forwards_any:
            return endpoint.dialect.answer_batch(payload, verdicts, None)
        outgoing = endpoint.dialect.encode(payload, verdicts) if decision.modified else body
        upstream = await forward(
            self.session,
            rules.server.upstream,
            request,
            body=outgoing,
            consumed=consumed_headers(stream),
            request_id=request_id,
        )
        reply = upstream
        if endpoint.is_batch and any(not v.forwarded for v in verdicts):
            reply = endpoint.dialect.answer_batch(payload, verdicts, upstream)
        return with_debug_headers(stream, reply, verdicts)


def check_method(request: web.Request) -> None:
    """Tracking endpoints take POST. Rejects: method_not_allowed."""
    if request.method != "POST":
        raise Rejection(Reason.METHOD_NOT_ALLOWED, f"{request.method} is not allowed; use POST")


def rejection_reply(endpoint: Endpoint | None, rejection: Rejection) -> Reply:
    """The HTTP answer to a rejection, in the endpoint's dialect."""
    dialect = endpoint.dialect if endpoint else _FALLBACK_DIALECT
    reason = rejection.reason
    headers = {"Content-Type": "application/json"}
    if reason in (Reason.UPSTREAM_UNAVAILABLE, Reason.UPSTREAM_TIMEOUT, Reason.NOT_READY):
        headers["Retry-After"] = "1"
    if reason is Reason.METHOD_NOT_ALLOWED:
        headers["Allow"] = "POST"
    if reason.is_token_failure:  # RFC 6750 §3: the SDK refreshes its token and retries
        headers["WWW-Authenticate"] = (
            f'Bearer error="invalid_token", error_description="{rejection.message}"'
        )
    return Reply(reason.status, dialect.error_body(reason, rejection.message), headers)


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
    value = ";".join(f"{s.value}={','.join(names)}" for s, names in stripped.items())
    return Reply(reply.status, reply.body, {**reply.headers, "X-Trackgate-Stripped": value})


def _request_id(request: web.Request) -> str:
    given = request.headers.get("X-Request-Id", "")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex
