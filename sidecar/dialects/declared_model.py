"""A compiled wire-format declaration: what `declared_compile` builds and the
`Declared` dialect reads per request. Frozen, built once per rules version."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from sidecar.commands import Kind
from sidecar.dialects.carriers import Embedded, Wrapping
from sidecar.dialects.pointers import Pointer
from sidecar.dialects.spelling_tree import SpellingTree
from sidecar.rules import SecretPlace


class PlaceKind(StrEnum):
    """Where a stream ID travels (SPEC §3.5)."""

    HEADER = "header"
    QUERY = "query"
    PATH = "path"
    BASIC = "basic"
    BODY = "body"
    COMMAND = "command"


@dataclass(frozen=True, slots=True)
class Place:
    """One place of the stream ID: a header or query name, or a body/command pointer."""

    kind: PlaceKind
    name: str = ""
    pointer: Pointer = ()


class Layout(StrEnum):
    """What a command source holds."""

    ARRAY = "array"
    OBJECT = "object"
    EITHER = "either"


@dataclass(frozen=True, slots=True)
class IdSpec:
    """A customer id: its pointer and id type; `document`: the pointer starts at the
    document (an id of every command) instead of the command."""

    pointer: Pointer
    type: str
    document: bool = False
    slot: int = -1  # where a command's reading walk puts its value (`Shape.slots`)
    head: str | None = field(init=False)  # the one name of a one-name pointer (a fast path)

    def __post_init__(self) -> None:
        object.__setattr__(self, "head", self.pointer[0] if len(self.pointer) == 1 else None)


@dataclass(frozen=True, slots=True)
class Container:
    """A property container: an object whose keys (an array whose strings) are names."""

    pointer: Pointer
    document: bool = False
    exclude: frozenset[str] = frozenset()  # keys that are not properties
    only: frozenset[str] | None = None  # the only keys that are properties
    operators: frozenset[str] = frozenset()  # keys holding update operators (`$set`)
    slot: int = -1  # where a command's reading walk puts its value (`Shape.slots`)
    plain: bool = field(init=False)  # every key is a name (no exclude, only, operators)
    unique: bool = field(init=False)  # no operators: an object's names are its keys, once each
    head: str | None = field(init=False)  # the one name of a one-name pointer (a fast path)

    def __post_init__(self) -> None:
        plain = not self.operators and not self.exclude and self.only is None
        object.__setattr__(self, "plain", plain)
        object.__setattr__(self, "unique", not self.operators)
        object.__setattr__(self, "head", self.pointer[0] if len(self.pointer) == 1 else None)


@dataclass(frozen=True, slots=True)
class EventType:
    """Where a command's event type is: a fixed value, or the first pointer present
    (any other present must hold the same value); `pattern`'s first group, when
    given, is the event type."""

    pointers: tuple[Pointer, ...] = ()
    value: str | None = None
    pattern: re.Pattern[str] | None = None
    slots: tuple[int, ...] = ()  # the pointers' slots, in order


@dataclass(frozen=True, slots=True)
class Read:
    """A pointer the dialect reads, for the key-spelling tree: `container` when its
    object's keys are names, `names` the field names read in that object."""

    pointer: Pointer
    container: bool = False
    names: frozenset[str] = frozenset()
    embedded: Embedded | None = None


@dataclass(frozen=True, slots=True)
class Case:
    """How a command is read (a shape's own keys, or one discriminator case's over them)."""

    kind: Kind
    ids: tuple[IdSpec, ...]
    event_type: EventType | None
    event_properties: tuple[Container, ...]
    customer_properties: tuple[Container, ...]
    # For the reading's fast path (`declared_read.read_plain`): whether it applies (every
    # id and container is the command's, the event type one pointer without a
    # pattern), the ids' (slot, type) and the event type's slot.
    fast: bool = field(init=False)
    id_slots: tuple[tuple[int, str], ...] = field(init=False)
    event_slot: int = field(init=False)
    # The customer containers' slots when they are a run (a slice, unhashable: not compared).
    customer_span: slice | None = field(init=False, compare=False)
    event_container: Container | None = field(init=False)  # the one event container, if one

    def __post_init__(self) -> None:
        event_type = self.event_type
        event_slot = -1
        if event_type is not None and len(event_type.slots) == 1 and event_type.pattern is None:
            event_slot = event_type.slots[0]
        fast = (
            not any(spec.document for spec in self.ids)
            and not any(c.document for c in (*self.event_properties, *self.customer_properties))
            and (self.kind is not Kind.EVENT or event_slot >= 0)
        )
        object.__setattr__(self, "fast", fast)
        object.__setattr__(self, "id_slots", tuple((spec.slot, spec.type) for spec in self.ids))
        object.__setattr__(self, "event_slot", event_slot)
        slots = [c.slot for c in self.customer_properties]
        run = len(slots) > 1 and slots == list(range(slots[0], slots[0] + len(slots)))
        span = slice(slots[0], slots[0] + len(slots)) if run else None
        object.__setattr__(self, "customer_span", span)
        events = self.event_properties
        object.__setattr__(self, "event_container", events[0] if len(events) == 1 else None)


@dataclass(frozen=True, slots=True)
class Shape:
    """One kind of command of a dialect."""

    name: str
    case: Case  # without a discriminator, or before one is applied
    discriminator: Pointer | None
    cases: Mapping[str, Case]  # discriminator value → case
    otherwise: Case | None  # any other value (None: the command is malformed)
    embedded: Mapping[Pointer, Embedded]  # members holding JSON strings
    reads: tuple[Read, ...]  # every pointer a command of this shape is read through
    # Each pointer read has a slot: the spelling walk fills a list with the values
    # found, so a command's ids, event type and containers cost an index each.
    slots: Mapping[Pointer, int]
    discriminator_slot: int = -1
    root_slot: int = -1  # the slot of pointer "" (a container of the command itself)
    slot_count: int = field(init=False)
    # The discriminator's one name when it is a member of the command (a fast path).
    discriminator_head: str | None = field(init=False)
    opens: bool = field(init=False)  # some member holds an embedded string
    by_value: dict[str, Case] = field(init=False, compare=False)  # `cases`, a plain dict

    def __post_init__(self) -> None:
        object.__setattr__(self, "slot_count", len(self.slots))
        object.__setattr__(self, "opens", bool(self.embedded))
        object.__setattr__(self, "by_value", dict(self.cases))
        chooser = self.discriminator
        head = chooser[0] if chooser is not None and len(chooser) == 1 else None
        object.__setattr__(self, "discriminator_head", head)

    def case_of(self, discriminator: object) -> Case | None:
        """The case for a discriminator value (the shape's own without a discriminator)."""
        if self.discriminator is None:
            return self.case
        found = self.cases.get(discriminator) if type(discriminator) is str else None
        return found if found is not None else self.otherwise


@dataclass(frozen=True, slots=True)
class Source:
    """Where an endpoint's commands are, and their shape."""

    pointer: Pointer
    shape: Shape
    layout: Layout
    tree: SpellingTree  # the shape's reads and the endpoint's per-command stream ID places


@dataclass(frozen=True, slots=True)
class CommandPlaces:
    """A route's per-command stream ID pointers, sorted for one pass over the
    commands: one-name pointers (`/api_key`) are dictionary lookups behind one
    C-level test, two-name ones (`/properties/token`) two lookups, longer ones walked."""

    heads: tuple[str, ...] = ()  # the names of the one-name pointers
    head_set: frozenset[str] = frozenset()
    pairs: tuple[tuple[str, str], ...] = ()  # the two-name pointers
    deeper: tuple[Pointer, ...] = ()  # the longer ones

    @classmethod
    def of(cls, places: tuple[Place, ...]) -> CommandPlaces:
        pointers = [p.pointer for p in places if p.kind is PlaceKind.COMMAND and p.pointer]
        heads = tuple(dict.fromkeys(p[0] for p in pointers if len(p) == 1))
        return cls(
            heads,
            frozenset(heads),
            tuple((p[0], p[1]) for p in pointers if len(p) == 2),
            tuple(p for p in pointers if len(p) > 2),
        )

    @property
    def any(self) -> bool:
        return bool(self.heads or self.pairs or self.deeper)


@dataclass(frozen=True, slots=True)
class Route:
    """One compiled endpoint."""

    name: str
    path: str
    pattern: re.Pattern[str] | None  # for a path with a `{stream_id}` segment
    form: str | None  # the form field holding the document (None: the body is it)
    wrapping: Wrapping  # base64 around the document
    gzip_magic: bool  # a body with gzip's magic bytes is gzip without Content-Encoding
    sources: tuple[Source, ...]
    stream_id: tuple[Place, ...]
    secret_from: tuple[SecretPlace, ...]  # () : SPEC §5.1's places
    document_tree: SpellingTree  # the objects of the document read outside commands
    document_embedded: Mapping[Pointer, Embedded]
    document_ids: tuple[IdSpec, ...]  # ids (of every shape) that start at the document
    document_containers: tuple[tuple[Container, bool], ...]  # (container, is customer)
    command_places: CommandPlaces = field(init=False)  # `stream_id`'s command pointers
    body_pointers: tuple[Pointer, ...] = field(init=False)  # `stream_id`'s body pointers

    def __post_init__(self) -> None:
        object.__setattr__(self, "command_places", CommandPlaces.of(self.stream_id))
        body = tuple(p.pointer for p in self.stream_id if p.kind is PlaceKind.BODY)
        object.__setattr__(self, "body_pointers", body)

    @property
    def single(self) -> bool:
        """True when the body is exactly one command."""
        return len(self.sources) == 1 and self.sources[0].layout is Layout.OBJECT
