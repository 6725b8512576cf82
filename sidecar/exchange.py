"""The record of one request, filled in by the pipeline and read by metrics and logs.

It holds names, counts and codes only — never a token, secret, customer id
value or payload — so whatever reads it cannot leak one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from sidecar.errors import Reason
from sidecar.rules import SetName, Stream

UNKNOWN_STREAM = "_unknown"
_NO_NAMES: Mapping[tuple[SetName, str], int] = MappingProxyType({})


class Exchange:
    """What happened to one request. (A plain slotted class: the collections start as
    shared empty immutables, replaced — never mutated — by `handler.record_decision`
    when a request has something to put in them; most have nothing, and a dataclass
    would build a new list or dict for each.)"""

    __slots__ = (
        "command_reasons",
        "commands",
        "commands_forwarded",
        "dialect",
        "endpoint",
        "preflight",
        "reason",
        "request_id",
        "started",
        "status",
        "stream",
        "stripped",
        "token_result",
        "upstream_seconds",
        "upstream_status",
        "would_reject",
        "would_strip",
    )

    def __init__(self, request_id: str, started: float) -> None:
        self.request_id = request_id
        self.started = started  # monotonic seconds
        self.stream: Stream | None = None
        self.dialect = ""
        self.endpoint = ""
        self.status = 0
        self.reason: Reason | None = None  # the request-level rejection, if any
        self.token_result: str | None = None  # "valid" or a token reason, when one was verified
        self.commands = 0  # decoded commands
        self.commands_forwarded = 0
        self.command_reasons: Sequence[Reason] = ()  # one per rejected command
        self.stripped: Mapping[tuple[SetName, str], int] = _NO_NAMES  # (set, name) → count
        self.would_reject: Sequence[Reason] = ()
        self.would_strip: Mapping[tuple[SetName, str], int] = _NO_NAMES  # mode: monitor
        self.upstream_status: int | None = None
        self.upstream_seconds: float | None = None
        self.preflight = False  # a CORS preflight the sidecar answers itself (not forwarded)

    @property
    def stream_name(self) -> str:
        stream = self.stream
        return stream.name if stream is not None else UNKNOWN_STREAM

    @property
    def rejection_reasons(self) -> Sequence[Reason]:
        """The request's own reason when it was rejected whole, else each rejected command's."""
        return (self.reason,) if self.reason is not None else self.command_reasons

    @property
    def commands_rejected(self) -> int:
        if self.command_reasons or self.reason is None:
            return len(self.command_reasons)
        return self.commands - self.commands_forwarded  # rejected whole: none was forwarded

    @property
    def outcome(self) -> str:
        """forwarded, rejected or upstream_error (SPEC §6.3); `preflight` for a granted
        CORS preflight (SPEC §3.3): logged, never counted as a rejection."""
        reason, upstream = self.reason, self.upstream_status
        if reason is None:
            if self.preflight:
                return "preflight"
            if upstream is None:
                return "rejected"
            return "upstream_error" if upstream >= 500 else "forwarded"
        if reason.is_upstream_error or (upstream is not None and upstream >= 500):
            return "upstream_error"
        return "forwarded" if upstream is not None else "rejected"
