"""Reading a declared dialect's commands (`declared_write` writes them back judged).

`read_command` turns one command object into a `Command` by its shape: the
key-spelling guard over every object the shape reads, the discriminator's case,
ids, event type and property names. A command that does not fit its shape is
returned `malformed` (a batch drops it; a single command is rejected); a
look-alike key anywhere rejects the request (`KeyProblem`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sidecar.commands import Command, Kind
from sidecar.dialects.declared_model import Case, Container, EventType, IdSpec, Shape, Source
from sidecar.dialects.pointers import Opened, resolve, show
from sidecar.errors import Rejection
from sidecar.spelling import KeyProblem

PASSTHROUGH = Command(Kind.PASSTHROUGH)


class Malformed(Exception):
    """A command that does not fit its shape (the message names no value)."""


class DocumentView:
    """The document's request-level values, read once per request and shared by
    every command: ids and property names that start at the document."""

    __slots__ = ("_ids", "_names", "document", "opened")

    def __init__(self, document: Any, opened: Opened) -> None:
        self.document = document
        self.opened = opened
        self._ids: dict[IdSpec, object] = {}
        self._names: dict[Container, tuple[str, ...]] = {}

    def id_value(self, spec: IdSpec) -> object:
        try:
            return self._ids[spec]
        except KeyError:
            value = self._ids[spec] = _id_value(
                spec, resolve(self.document, spec.pointer, self.opened)
            )
            return value

    def names(self, container: Container) -> tuple[str, ...]:
        try:
            return self._names[container]
        except KeyError:
            found = self._names[container] = tuple(
                names_in(container, resolve(self.document, container.pointer, self.opened))
            )
            return found


_new_command = tuple.__new__  # Command(...) without the keyword handling, as bloomreach


def read_command(source: Source, item: Any, view: DocumentView, max_names: int) -> Command:
    """One command of `source`'s shape: one walk over the objects the shape reads (the
    key-spelling guard, and the values at its pointers into slots), then lookups.
    Rejects (KeyProblem): a look-alike key, too many names."""
    shape = source.shape
    if type(item) is not dict:
        return Command(shape.case.kind, malformed="a command must be a JSON object")
    values: list[Any] = [None] * shape.slot_count
    if shape.root_slot >= 0:
        values[shape.root_slot] = item
    try:
        opened = Opened(shape.embedded) if shape.opens else None
        tree = source.tree
        if not tree.fill(item, values, max_names, opened):  # a spelling not seen yet
            tree.check(item, "", max_names, opened, values=values)
        case = shape.case
        if shape.discriminator_slot >= 0:
            value = values[shape.discriminator_slot]
            chosen = shape.by_value.get(value, shape.otherwise) if type(value) is str else None
            case = chosen if chosen is not None else _case_of(shape, value)
        kind = case.kind
        if kind is Kind.PASSTHROUGH:
            return PASSTHROUGH
        command = read_plain(case, values) if case.fast else None
        return command if command is not None else read_case(case, values, view)
    except KeyProblem:
        raise
    except (Malformed, Rejection) as problem:
        message = problem.message if isinstance(problem, Rejection) else str(problem)
        return Command(shape.case.kind, malformed=message)


def read_case(case: Case, values: list[Any], view: DocumentView) -> Command:
    """A command of `case` from the values at its shape's slots: the general path.
    Raises Malformed (or a Rejection of an embedded string) for one that does not fit."""
    kind = case.kind
    event_type = _event_type(case.event_type, values) if kind is Kind.EVENT else None
    return _new_command(
        Command,
        (
            kind,
            _ids(case, values, view),
            event_type,
            _names(case.customer_properties, values, view),
            _names(case.event_properties, values, view),
            None,
        ),
    )


def read_plain(case: Case, values: list[Any]) -> Command | None:
    """The command when it is plain (string ids and event type, objects for
    containers), read without the general path's calls; None otherwise: then the
    general path (`read_case`) reads it again, with its messages. In the general
    path's order, so a Malformed raised here is the one it would raise."""
    kind = case.kind
    event_type = None
    if kind is Kind.EVENT:
        event_type = values[case.event_slot]
        if type(event_type) is not str or not event_type:
            return None
    ids: dict[str, object] = {}
    for slot, id_type in case.id_slots:
        value = values[slot]
        if value is None:
            continue
        if type(value) is not str or not value:
            return None
        if id_type not in ids:
            ids[id_type] = value
        elif ids[id_type] != value:
            return None
    customer: tuple[str, ...] | None = ()
    span = case.customer_span  # (every customer container absent: one C-level count)
    if span is None or values[span].count(None) != len(case.customer_properties):
        customer = _object_names(case.customer_properties, values)
        if customer is None:
            return None
    event: tuple[str, ...] | None = ()
    only = case.event_container
    if only is None:
        event = _object_names(case.event_properties, values)
    elif values[only.slot] is not None:
        event = _names_of(only, values[only.slot])
    if event is None:
        return None
    return _new_command(Command, (kind, ids, event_type, customer, event, None))


def _object_names(containers: tuple[Container, ...], values: list[Any]) -> tuple[str, ...] | None:
    """`_names` of command-level containers holding objects (None: some holds
    anything else, for the general path)."""
    found: tuple[str, ...] = ()
    unique = True  # no name twice in `found`
    for container in containers:
        value = values[container.slot]
        if value is None:
            continue
        names = _names_of(container, value)
        if names is None:
            return None
        unique = unique and container.unique
        if names:
            if found:
                found, unique = found + names, False
            else:
                found = names
    return tuple(dict.fromkeys(found)) if not unique and len(found) > 1 else found


def _names_of(container: Container, value: object) -> tuple[str, ...] | None:
    """The names in one container's object, each once when it has no operators
    (None: not an object, for the general path)."""
    if type(value) is not dict:
        return None
    if container.plain:
        return tuple(value)
    if container.unique and container.only is None:
        exclude = container.exclude
        return tuple([key for key in value if key not in exclude])
    names = tuple(names_in(container, value))
    return names if container.unique else tuple(dict.fromkeys(names))


def _case_of(shape: Shape, value: object) -> Case:
    case = shape.cases.get(value) if type(value) is str else None
    if case is None:
        case = shape.otherwise
    if case is None:
        raise Malformed(f"{show(shape.discriminator or ())} is none of the declared cases")
    return case


def _id_value(spec: IdSpec, value: object) -> object:
    """An id's value: None when absent, a string (an integer written in decimal)."""
    if value is None or value == "":
        return None
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    raise Malformed(f"{show(spec.pointer)} must be a string")


def _ids(case: Case, values: list[Any], view: DocumentView) -> dict[str, object]:
    ids: dict[str, object] = {}
    for spec in case.ids:
        value = view.id_value(spec) if spec.document else values[spec.slot]
        if value is None or value == "":
            continue
        if type(value) is not str:
            value = _id_value(spec, value)
        if ids.setdefault(spec.type, value) != value:
            raise Malformed(f"two {spec.type} ids of the command differ")
    return ids


def _event_type(spec: EventType | None, values: list[Any]) -> str:
    if spec is None:
        raise Malformed("the command has no event type")
    value: object = spec.value
    present = False
    for slot in spec.slots:  # the first present; another present one must agree
        if values[slot] is not None:
            if present and values[slot] != value:
                raise Malformed("two event types of the command differ")
            value, present = values[slot], True
    if type(value) is not str or not value:
        raise Malformed("the event type must be a non-empty string")
    if spec.pattern is None:
        return value
    found = spec.pattern.search(value)
    if found is None or not found[1]:
        raise Malformed("the event type does not match its pattern")
    return found[1]


def _names(
    containers: tuple[Container, ...], values: list[Any], view: DocumentView
) -> tuple[str, ...]:
    found: tuple[str, ...] = ()
    for container in containers:
        if container.document:
            names = view.names(container)
        else:
            value = values[container.slot]
            if value is None:
                continue
            names = tuple(names_in(container, value))
        if names:
            found = found + names if found else names
    return tuple(dict.fromkeys(found)) if len(found) > 1 else found


def names_in(container: Container, value: object) -> Iterable[str]:
    """The property names a container's value holds."""
    if value is None:
        return ()
    if type(value) is list:
        return _strings(value, container)
    if type(value) is not dict:
        raise Malformed(f"{show(container.pointer)} must be an object")
    if container.plain:
        return value.keys()
    names: list[str] = []
    for key, inner in value.items():
        if key in container.operators:
            if type(inner) is dict:
                names.extend(inner)
            elif type(inner) is list:
                names.extend(_strings(inner, container))
        elif key not in container.exclude and (container.only is None or key in container.only):
            names.append(key)
    return names


def _strings(items: list[Any], container: Container) -> list[str]:
    if not all(type(item) is str for item in items):
        raise Malformed(f"the names in {show(container.pointer)} must be strings")
    return items
