"""`trackgate explain`: the decision for a body, without sending anything (SPEC §7).

It runs the same stages as the handler — decode, token, decide, mode, encode —
on a body from a file, and reports per command what would be forwarded,
rejected or stripped, and the exact body the collector would receive; for a
stream in shadow mode (`mode: monitor`) both outcomes, what it does and what
`enforce` would do. Stream secrets are not checked (explain is for the rules,
not for credentials).
"""

from __future__ import annotations

from typing import Any

from sidecar.auth import principal_for
from sidecar.body import Body
from sidecar.commands import Verdict
from sidecar.dialects import Endpoint, Payload
from sidecar.errors import Rejection
from sidecar.jsoncodec import parse_json
from sidecar.outcome import Answer, Reject, in_mode, outcome
from sidecar.policy import Decision, decide
from sidecar.principal import Principal, TokenState
from sidecar.rules import Rules, Stream
from sidecar.tokens import TokenVerifier


class ExplainError(Exception):
    """The arguments do not name something explain can evaluate."""


def explain(
    rules: Rules, stream_name: str, body: bytes, endpoint: str | None, token: str | None
) -> dict[str, Any]:
    """The decision for `body` sent by `stream_name` to `endpoint`, as a JSON-able dict:
    what the sidecar does (`request`, `commands`, `forwarded_body`), for a `mode:
    monitor` stream also what `mode: enforce` would do (`enforce`), and in `would`
    every rejection and strip enforce would make (for `--fail-on`)."""
    stream = _stream(rules, stream_name)
    report: dict[str, Any] = {
        "stream": stream.name,
        "rules_version": rules.version,
        "mode": stream.mode.value,
    }
    try:
        parsed = Body(body)
        matched = _endpoint(rules, stream, endpoint, parsed.document_or_none())
        report["endpoint"] = matched.name
        payload = matched.dialect.decode(matched, parsed, stream, rules.server.limits)
        principal = principal_for(stream, token, TokenVerifier())
        report.update(_token(principal))
    except Rejection as rejection:
        report["would"] = {"reject": {rejection.reason.value: 1}, "strip": {}}
        return {**report, **_rejected(rejection), "commands": [], "forwarded_body": None}
    enforced = decide(stream, principal, payload.commands)
    applied = in_mode(stream, enforced, payload.commands)
    report.update(_applied(matched, payload, applied, body))
    if applied is not enforced:
        report["enforce"] = _applied(matched, payload, enforced, body)
    report["would"] = _would(enforced)
    return report


def _applied(
    endpoint: Endpoint, payload: Payload, decision: Decision, body: bytes
) -> dict[str, Any]:
    """What becomes of the request under `decision`: the request's fate, each
    command's, and the body the collector would receive."""
    report: dict[str, Any] = {
        "commands": [_command(i, v) for i, v in enumerate(decision.verdicts)],
        "would_reject": [r.value for r in decision.would_reject],
    }
    then = outcome(endpoint, payload, decision, body)
    if isinstance(then, Reject):
        return {**report, **_rejected(then.rejection), "forwarded_body": None}
    if isinstance(then, Answer):
        answered = {"outcome": "answered", "status": then.reply.status}
        return {**report, "request": answered, "forwarded_body": None}
    forwarded = {"outcome": "forwarded", "status": None}
    return {**report, "request": forwarded, "forwarded_body": _shown(then.body)}


def _shown(body: bytes) -> Any:
    """The forwarded body as JSON, or as text when it is not JSON (a form body)."""
    try:
        return parse_json(body)
    except Rejection:
        return body.decode("utf-8", "replace")


def _would(decision: Decision) -> dict[str, Any]:
    """Every rejection (with its count) and every stripped name of an enforced decision,
    the would-rejects of JWT `monitor` included."""
    reasons = [decision.rejection.reason] if decision.rejection else []
    reasons.extend(decision.would_reject)
    stripped: dict[str, set[str]] = {}
    for verdict in decision.verdicts:
        reasons.extend([verdict.reason] if verdict.reason else [])
        reasons.extend(verdict.would_reject)
        for set_name, names in verdict.stripped.items():
            stripped.setdefault(set_name.value, set()).update(names)
    counts = {r.value: reasons.count(r) for r in dict.fromkeys(reasons)}
    return {"reject": counts, "strip": {s: sorted(n) for s, n in stripped.items()}}


def failures(report: dict[str, Any], kinds: list[str]) -> list[str]:
    """`--fail-on`: one message per kind (`reject`, `strip`) enforce would do."""
    messages = []
    for kind in dict.fromkeys(kinds):
        found = report["would"][kind]
        if found:
            listed = (f"{k}: {v if kind == 'reject' else ', '.join(v)}" for k, v in found.items())
            messages.append(f"--fail-on {kind}: enforce would {kind} ({'; '.join(listed)})")
    return messages


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
        "would_strip": {s.value: list(names) for s, names in verdict.would_strip.items()},
    }
