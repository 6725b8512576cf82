"""Decision → outcome: the one place that says what becomes of a judged request.

Both the pipeline (`handler`) and `trackgate explain` turn a `Decision` into an
outcome here, so what explain reports is what the sidecar does. First the
stream's mode applies (`in_mode`): `enforce` keeps the decision; `monitor`
(shadow mode, SPEC §5.2a) turns it into one that forwards every command
unchanged and carries what enforce would have done. Then:

- `Reject`: the request is refused whole (a request-level rejection, or the only
  command of a single-command endpoint is rejected: its reason decides);
- `Answer`: nothing is left to forward (every command of a batch rejected): the
  sidecar answers as the collector would, in the dialect's form;
- `Forward`: the body the collector gets — the received bytes when nothing
  changed (or the endpoint's body holds no commands, e.g. a companion endpoint
  checked for its stream and token only), else the dialect's rewrite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sidecar.commands import FORWARD, Command, Verdict
from sidecar.dialects import Endpoint, Payload
from sidecar.errors import Reason, Rejection
from sidecar.policy import Decision
from sidecar.reply import Reply
from sidecar.rules import Mode, Stream


@dataclass(frozen=True, slots=True)
class Forward:
    """Send `body` to the collector."""

    body: bytes


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer the client with `reply`; nothing is forwarded."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the request with `rejection`; nothing is forwarded."""

    rejection: Rejection


Outcome = Forward | Answer | Reject


def in_mode(stream: Stream, decision: Decision, commands: Sequence[Command]) -> Decision:
    """The decision as `stream.mode` applies it. `monitor`: every command is forwarded
    as received — nothing stripped, no command dropped, no request rejected — and
    what `enforce` would have rejected or stripped moves to `would_reject` /
    `would_strip`. Rejects: nothing of its own; a malformed command stays
    rejected (`malformed_payload`): that is §5.1's check, in every mode."""
    if stream.mode is Mode.ENFORCE:
        return decision
    if decision.rejection is not None:  # enforce stops the whole request
        verdicts = tuple(_malformed(c) or FORWARD for c in commands)
        return Decision(verdicts, would_reject=(decision.rejection.reason,))
    shadows: dict[int, Verdict] = {}  # one per distinct verdict (commands of a shape share one)
    for verdict, _ in decision.tally:
        shadows[id(verdict)] = _shadow(verdict)
    verdicts = tuple(shadows[id(v)] for v in decision.verdicts)
    return Decision(verdicts, would_reject=decision.would_reject)


def _shadow(verdict: Verdict) -> Verdict:
    """What `monitor` does with one command `enforce` judged as `verdict`."""
    if verdict.reason is Reason.MALFORMED_PAYLOAD:
        return verdict
    if verdict.reason is not None:
        return Verdict(would_reject=(verdict.reason, *verdict.would_reject))
    if not verdict.modified and not verdict.would_reject:
        return FORWARD
    return Verdict(would_reject=verdict.would_reject, would_strip=verdict.stripped)


def _malformed(command: Command) -> Verdict | None:
    if command.malformed is None:
        return None
    return Verdict(Reason.MALFORMED_PAYLOAD, command.malformed)


def outcome(endpoint: Endpoint, payload: Payload, decision: Decision, received: bytes) -> Outcome:
    """What becomes of a decided request whose body was `received`."""
    if decision.rejection is not None:
        return Reject(decision.rejection)
    verdicts = decision.verdicts
    if not verdicts:  # an endpoint whose body carries no commands: checked, forwarded as is
        return Forward(received)
    if not endpoint.is_batch and not verdicts[0].forwarded:
        return Reject(Rejection(verdicts[0].reason or Reason.INTERNAL_ERROR, verdicts[0].message))
    if len(verdicts) == 1 and verdicts[0].forwarded:  # a single command: no tally to read
        modified = verdicts[0].modified
    elif not decision.forwards_any:
        return Answer(endpoint.dialect.answer_batch(verdicts, None))
    else:
        modified = decision.modified
    return Forward(endpoint.dialect.encode(payload, verdicts) if modified else received)
