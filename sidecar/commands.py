"""What dialects decode to and what the policy decides about it.

A `Command` is one unit of tracking in dialect-neutral terms; a `Verdict` is
the policy's answer for it. Dialects produce commands and apply verdicts; the
policy reads commands and produces verdicts. Neither knows the other's code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple

from sidecar.errors import Reason
from sidecar.rules import SetName

_EMPTY: Mapping[SetName, tuple[str, ...]] = MappingProxyType({})
_NO_IDS: Mapping[str, object] = MappingProxyType({})


class Kind(StrEnum):
    """What a command does."""

    EVENT = "event"  # customer ids + event type + event properties
    CUSTOMER = "customer"  # customer ids + customer properties
    PASSTHROUGH = "passthrough"  # e.g. bloomreach `system/time`: forwarded untouched


class Command(NamedTuple):
    """One decoded command. Property collections hold names; ids keep their values.
    (A NamedTuple rather than a frozen dataclass: immutable too, and a batch makes
    fifty of them per request.)"""

    kind: Kind
    customer_ids: Mapping[str, object] = _NO_IDS
    event_type: str | None = None
    customer_properties: tuple[str, ...] = ()
    event_properties: tuple[str, ...] = ()
    malformed: str | None = None  # why this command (in a batch) could not be decoded


@dataclass(frozen=True, slots=True)
class Verdict:
    """The policy's decision for one command."""

    reason: Reason | None = None  # None: forward it
    message: str = ""
    stripped: Mapping[SetName, tuple[str, ...]] = field(default_factory=lambda: _EMPTY)
    would_reject: tuple[Reason, ...] = ()  # monitor mode: what enforce would have done
    # `mode: monitor`: what enforce would have stripped (nothing is, SPEC §5.2a)
    would_strip: Mapping[SetName, tuple[str, ...]] = field(default_factory=lambda: _EMPTY)
    forwarded: bool = field(init=False)  # reason is None
    modified: bool = field(init=False)  # something is stripped

    def __post_init__(self) -> None:  # derived once: verdicts are shared and read per command
        object.__setattr__(self, "forwarded", self.reason is None)
        object.__setattr__(self, "modified", any(self.stripped.values()))


FORWARD = Verdict()
