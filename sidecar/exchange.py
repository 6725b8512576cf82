"""The record of one request, filled in by the pipeline and read by metrics and logs.

It holds names, counts and codes only — never a token, secret, customer id
value or payload — so whatever reads it cannot leak one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sidecar.errors import Reason
from sidecar.rules import SetName, Stream

UNKNOWN_STREAM = "_unknown"


@dataclass(slots=True)
class Exchange:
    """What happened to one request."""

    request_id: str
    started: float  # monotonic seconds
    stream: Stream | None = None
    dialect: str = ""
    endpoint: str = ""
    status: int = 0
    reason: Reason | None = None  # the request-level rejection, if any
    token_result: str | None = None  # "valid" or a token reason, when a token was verified
    commands: int = 0  # decoded commands
    commands_forwarded: int = 0
    command_reasons: list[Reason] = field(default_factory=list)  # one per rejected command
    stripped: dict[tuple[SetName, str], int] = field(default_factory=dict)  # name → count
    would_reject: list[Reason] = field(default_factory=list)
    would_strip: dict[tuple[SetName, str], int] = field(default_factory=dict)  # mode: monitor
    upstream_status: int | None = None
    upstream_seconds: float | None = None
    preflight: bool = False  # a CORS preflight the sidecar answers itself (not forwarded)

    @property
    def stream_name(self) -> str:
        return self.stream.name if self.stream else UNKNOWN_STREAM

    @property
    def rejection_reasons(self) -> list[Reason]:
        """The request's own reason when it was rejected whole, else each rejected command's."""
        return [self.reason] if self.reason is not None else self.command_reasons

    @property
    def commands_rejected(self) -> int:
        if self.command_reasons or self.reason is None:
            return len(self.command_reasons)
        return self.commands - self.commands_forwarded  # rejected whole: none was forwarded

    @property
    def outcome(self) -> str:
        """forwarded, rejected or upstream_error (SPEC §6.3); `preflight` for a granted
        CORS preflight (SPEC §3.3): logged, never counted as a rejection."""
        if self.preflight and self.reason is None:
            return "preflight"
        if (self.reason is not None and self.reason.is_upstream_error) or (
            self.upstream_status is not None and self.upstream_status >= 500
        ):
            return "upstream_error"
        if self.upstream_status is not None:
            return "forwarded"
        return "rejected"
