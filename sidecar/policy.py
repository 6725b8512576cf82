"""The decision: a pure function of (stream, principal, commands) — SPEC §5.2, §5.3.

`decide` first applies the request-level token rules (a failed token on a
request that needs a signature, identifiers that contradict the token), then
judges each command in order: event type, customer ids, properties. It knows
nothing of HTTP or wire formats.

How `signed_only` behaves depends on the stream's JWT enforcement:
- `off` (or no `jwt` block): it acts as `allow`;
- `monitor`: it acts as `allow`, and what `enforce` would reject is recorded;
- `enforce`: it needs a valid token (for customer ids: one that signs that id).
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from sidecar.commands import FORWARD, Command, Kind, Verdict
from sidecar.errors import Reason, Rejection
from sidecar.principal import ANONYMOUS, Principal, TokenState
from sidecar.rules import Access, Enforcement, Permissions, PermissionSet, SetName, Stream


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens to a request: rejected whole, or a verdict per command."""

    verdicts: tuple[Verdict, ...]
    rejection: Rejection | None = None  # the whole request is rejected
    would_reject: tuple[Reason, ...] = field(default=())  # monitor mode, request level
    # Each distinct verdict once, with how many commands got it (commands of one
    # shape share one verdict object), so summaries need not walk every command.
    tally: tuple[tuple[Verdict, int], ...] = field(init=False)

    def __post_init__(self) -> None:
        verdicts = self.verdicts
        if len(verdicts) == 1:
            tally: tuple[tuple[Verdict, int], ...] = ((verdicts[0], 1),)
        else:
            distinct = {id(v): v for v in verdicts}
            tally = tuple((distinct[k], n) for k, n in Counter(map(id, verdicts)).items())
        object.__setattr__(self, "tally", tally)

    @property
    def forwards_any(self) -> bool:
        return self.rejection is None and any(v.forwarded for v, _ in self.tally)

    @property
    def modified(self) -> bool:
        """True when the forwarded body differs from the received one."""
        return any(not v.forwarded or v.modified for v, _ in self.tally)


def decide(stream: Stream, principal: Principal, commands: Sequence[Command]) -> Decision:
    """Judge a request. Rejects (whole request): token_* (401), ids_mismatch.
    Per command: event_type_denied, signature_required, no_customer_ids, malformed_payload."""
    mode = stream.enforcement
    if mode is Enforcement.OFF:
        principal = ANONYMOUS  # tokens play no part in the decision
    rejection = None
    if principal.token is not TokenState.ABSENT:
        rejection = _request_rejection(stream, principal, commands)
        if rejection is not None and mode is Enforcement.ENFORCE:
            return Decision((), rejection)
        if principal.token is TokenState.INVALID:
            principal = ANONYMOUS  # a failed token signs nothing
    judge = _Judge(stream, principal, mode)
    # Without a contradicting id, a signed id type's value always equals the
    # command's, so names and the token's id types decide: the memo applies.
    memo = not principal.signed or rejection is None
    verdicts = tuple(map(judge.memoized if memo else judge.command, commands))
    if rejection is not None:  # monitor: enforce would have stopped at the request level
        verdicts = tuple(replace(v, would_reject=()) for v in verdicts)
        return Decision(verdicts, would_reject=(rejection.reason,))
    return Decision(verdicts)


def needs_signature(permissions: Permissions, command: Command) -> bool:
    """True when the command uses any `signed_only` item."""
    if command.kind is Kind.PASSTHROUGH or command.malformed:
        return False
    signed_only = Access.SIGNED_ONLY
    return (
        (command.event_type is not None
         and permissions.event_types.access(command.event_type) is signed_only)
        or any(permissions.customer_ids.access(t) is signed_only for t in command.customer_ids)
        or any(permissions.customer_properties.access(n) is signed_only
               for n in command.customer_properties)
        or any(permissions.event_properties.access(n) is signed_only
               for n in command.event_properties)
    )  # fmt: skip


def _request_rejection(
    stream: Stream, principal: Principal, commands: Sequence[Command]
) -> Rejection | None:
    """ids_mismatch, or the token's failure when some command needs a signature."""
    if principal.token is TokenState.VALID and _contradicts(principal.signed_ids, commands):
        return Rejection(
            Reason.IDS_MISMATCH,
            "a customer id in the request differs from the one the token signs",
        )
    if principal.token is TokenState.INVALID and any(
        needs_signature(stream.permissions, c) for c in commands
    ):
        return principal.failure
    return None


def _contradicts(signed: Mapping[str, str], commands: Sequence[Command]) -> bool:
    """True when a command carries an id of a type the token signs, with another value."""
    for command in commands:
        for id_type, value in command.customer_ids.items():
            if signed.get(id_type, value) != value:
                return True
    return False


MEMO_SIZE = 4096  # distinct command shapes remembered per stream
# Verdicts by command shape, per stream: a pure function's memo. Keyed weakly by the
# compiled stream, so a reload (new Stream objects) starts afresh and the old memo
# goes with the old rules version; the compiled rules themselves stay immutable.
_MEMOS: weakref.WeakKeyDictionary[Stream, dict[Any, Verdict]] = weakref.WeakKeyDictionary()


def verdict_memo(stream: Stream) -> dict[Any, Verdict]:
    """The stream's verdict memo (created on first use)."""
    memo = _MEMOS.get(stream)
    if memo is None:
        memo = _MEMOS[stream] = {}
    return memo


class _Judge:
    """Judges the commands of one request against one stream's permissions."""

    def __init__(self, stream: Stream, principal: Principal, mode: Enforcement) -> None:
        self.stream = stream
        self.principal = principal
        self.mode = mode
        # What the principal contributes to a verdict when no id contradicts it:
        # whether it is signed, and which id types it signs.
        self.signs = principal.signs
        self.memo = verdict_memo(stream)

    def memoized(self, command: Command) -> Verdict:
        """`command`, judged once per shape: for an unsigned principal, or a signed
        one whose ids no command contradicts, the verdict depends only on names and
        the signed id types, so commands of one shape (a batch of page views, the
        same event from the same signed user) share one verdict."""
        key = (
            command.kind,
            command.event_type,
            tuple(command.customer_ids),
            command.customer_properties,
            command.event_properties,
            command.malformed,
            self.signs,
        )
        memo = self.memo
        verdict: Verdict | None = memo.get(key)
        if verdict is None:
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            verdict = memo[key] = self.command(command)
        return verdict

    def command(self, command: Command) -> Verdict:
        """One command: event type → customer ids → properties; the first rejection wins."""
        if command.malformed:
            return Verdict(Reason.MALFORMED_PAYLOAD, command.malformed)
        if command.kind is Kind.PASSTHROUGH:
            return FORWARD
        would: list[Reason] = []  # monitor mode: only the first, as enforce would stop there
        rejection = self._event_type(command, would)
        stripped: dict[SetName, tuple[str, ...]] = {}
        if rejection is None:
            ids, rejection = self._customer_ids(command, would)
            if ids:
                stripped[SetName.CUSTOMER_IDS] = ids
        if rejection is not None:
            return Verdict(*rejection, would_reject=tuple(would))
        for name, names in (
            (SetName.CUSTOMER_PROPERTIES, command.customer_properties),
            (SetName.EVENT_PROPERTIES, command.event_properties),
        ):
            removed = self._properties(self.stream.permissions.of(name), names, would)
            if removed:
                stripped[name] = removed
        return Verdict(stripped=MappingProxyType(stripped), would_reject=tuple(would))

    def _event_type(self, command: Command, would: list[Reason]) -> tuple[Reason, str] | None:
        if command.event_type is None:
            return None
        access = self.stream.permissions.event_types.access(command.event_type)
        if access is Access.DENY:
            return (
                Reason.EVENT_TYPE_DENIED,
                f"event type {command.event_type!r} is not allowed on stream {self.stream.name!r}",
            )
        if access is Access.SIGNED_ONLY and not self._satisfied(self.principal.signed, would):
            return (
                Reason.SIGNATURE_REQUIRED,
                f"event type {command.event_type!r} needs a signed token "
                f"on stream {self.stream.name!r}",
            )
        return None

    def _customer_ids(
        self, command: Command, would: list[Reason]
    ) -> tuple[tuple[str, ...], tuple[Reason, str] | None]:
        permissions = self.stream.permissions.customer_ids
        stripped: list[str] = []
        for id_type, value in command.customer_ids.items():
            access = permissions.access(id_type)
            if access is Access.DENY:
                stripped.append(id_type)
            elif access is Access.SIGNED_ONLY:
                signed = self.principal.signed_ids.get(id_type) == value
                if not self._satisfied(signed, would):
                    return tuple(stripped), (
                        Reason.SIGNATURE_REQUIRED,
                        f"customer id {id_type!r} needs a token that signs it "
                        f"on stream {self.stream.name!r}",
                    )
        if len(stripped) == len(command.customer_ids):
            return tuple(stripped), (
                Reason.NO_CUSTOMER_IDS,
                f"no allowed customer id is left on stream {self.stream.name!r}",
            )
        return tuple(stripped), None

    def _properties(
        self, permissions: PermissionSet, names: Sequence[str], would: list[Reason]
    ) -> tuple[str, ...]:
        removed = []
        for name in names:
            access = permissions.access(name)
            if access is Access.DENY or (
                access is Access.SIGNED_ONLY and not self._satisfied(self.principal.signed, would)
            ):
                removed.append(name)
        return tuple(removed)

    def _satisfied(self, signed: bool, would: list[Reason]) -> bool:
        """Whether a `signed_only` item passes: always unless enforcing; recorded in monitor."""
        if signed or self.mode is Enforcement.OFF:
            return True
        if self.mode is Enforcement.MONITOR:
            if not would:
                would.append(Reason.SIGNATURE_REQUIRED)
            return True
        return False
