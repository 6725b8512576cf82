"""Decision → outcome: the one place that says what becomes of a judged request.

Both the pipeline (`handler`) and `trackgate explain` turn a `Decision` into an
outcome here, so what explain reports is what the sidecar does:

- `Reject`: the request is refused whole (a request-level rejection, or the only
  command of a single-command endpoint is rejected: its reason decides);
- `Answer`: nothing is left to forward (every command of a batch rejected): the
  sidecar answers as the collector would, in the dialect's form;
- `Forward`: the body the collector gets — the received bytes when nothing
  changed (or the endpoint's body holds no commands, e.g. a companion endpoint
  checked for its stream and token only), else the dialect's rewrite.
"""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.dialects import Endpoint, Payload
from sidecar.errors import Reason, Rejection
from sidecar.policy import Decision
from sidecar.reply import Reply


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


def outcome(endpoint: Endpoint, payload: Payload, decision: Decision, received: bytes) -> Outcome:
    """What becomes of a decided request whose body was `received`."""
    if decision.rejection is not None:
        return Reject(decision.rejection)
    verdicts = decision.verdicts
    if not verdicts:  # an endpoint whose body carries no commands: checked, forwarded as is
        return Forward(received)
    if not endpoint.is_batch and not verdicts[0].forwarded:
        return Reject(Rejection(verdicts[0].reason or Reason.INTERNAL_ERROR, verdicts[0].message))
    if not decision.forwards_any:
        return Answer(endpoint.dialect.answer_batch(payload, verdicts, None))
    if not decision.modified:
        return Forward(received)
    return Forward(endpoint.dialect.encode(payload, verdicts))
