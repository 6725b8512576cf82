"""`trackgate explain`: the decision for a body, without sending anything (SPEC §7).

It runs the same stages as the handler — decode, token, decide, encode — on a
body from a file, and reports per command what would be forwarded, rejected or
stripped, and the exact body the collector would receive. Stream secrets are
not checked (explain is for the rules, not for credentials).
"""

from __future__ import annotations

from typing import Any

from sidecar.auth import Principal, TokenState, principal_for
from sidecar.body import Body
from sidecar.commands import Verdict
from sidecar.dialects import Endpoint
from sidecar.errors import Rejection
from sidecar.jsoncodec import parse_json
from sidecar.outcome import Answer, Reject, outcome
from sidecar.policy import decide
from sidecar.rules import Rules, Stream
from sidecar.tokens import TokenVerifier


class ExplainError(Exception):
    """The arguments do not name something explain can evaluate."""


def explain(
    rules: Rules, stream_name: str, body: bytes, endpoint: str | None, token: str | None
) -> dict[str, Any]:
    """The decision for `body` sent by `stream_name` to `endpoint`, as a JSON-able dict."""
    stream = _stream(rules, stream_name)
    report: dict[str, Any] = {"stream": stream.name, "rules_version": rules.version}
    try:
        parsed = Body(body)
        matched = _endpoint(rules, stream, endpoint, parsed.document())
        report["endpoint"] = matched.name
        payload = matched.dialect.decode(matched, parsed, stream, rules.server.limits)
        principal = principal_for(stream, token, TokenVerifier())
        report.update(_token(principal))
    except Rejection as rejection:
        return {**report, **_rejected(rejection), "commands": [], "forwarded_body": None}
    decision = decide(stream, principal, payload.commands)
    report["commands"] = [_command(i, v) for i, v in enumerate(decision.verdicts)]
    report["would_reject"] = [r.value for r in decision.would_reject]
    then = outcome(matched, payload, decision, body)
    if isinstance(then, Reject):
        return {**report, **_rejected(then.rejection), "forwarded_body": None}
    if isinstance(then, Answer):
        answered = {"outcome": "answered", "status": then.reply.status}
        return {**report, "request": answered, "forwarded_body": None}
    forwarded = {"outcome": "forwarded", "status": None}
    return {**report, "request": forwarded, "forwarded_body": parse_json(then.body)}


def _token(principal: Principal) -> dict[str, str]:
    if principal.token is TokenState.VALID:
        return {"token": "valid"}
    if principal.failure is not None:
        return {"token": principal.failure.reason.value}
    return {}


def _stream(rules: Rules, name: str) -> Stream:
    for stream in rules.streams:
        if stream.name == name:
            return stream
    names = ", ".join(s.name for s in rules.streams)
    raise ExplainError(f"no stream named {name!r}; the rules have {names}")


def _endpoint(rules: Rules, stream: Stream, path: str | None, document: object) -> Endpoint:
    dialect = rules.router.dialects[stream.dialect]
    if path is None:
        path = dialect.default_path(document)
    endpoint = rules.router.match(path)
    if endpoint is None or endpoint.dialect is not dialect:
        raise ExplainError(f"{path} is not a {stream.dialect} endpoint")
    return endpoint


def _rejected(rejection: Rejection) -> dict[str, Any]:
    reason = rejection.reason
    return {
        "request": {
            "outcome": "rejected",
            "status": reason.status,
            "reason": reason.value,
            "message": rejection.message,
        }
    }


def _command(index: int, verdict: Verdict) -> dict[str, Any]:
    return {
        "index": index,
        "outcome": "forwarded" if verdict.forwarded else "rejected",
        "reason": verdict.reason.value if verdict.reason else None,
        "message": verdict.message or None,
        "stripped": {s.value: list(names) for s, names in verdict.stripped.items()},
        "would_reject": [r.value for r in verdict.would_reject],
    }
