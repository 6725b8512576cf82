"""Reading a declared dialect's commands, and writing them back judged.

`read_command` turns one command object into a `Command` by its shape: the
key-spelling guard over every object the shape reads, the discriminator's case,
ids, event type and property names. A command that does not fit its shape is
returned `malformed` (a batch drops it; a single command is rejected); a
look-alike key anywhere rejects the request (`KeyProblem`).

`rewrite_command` removes what a verdict stripped: ids at their pointers, names
from their containers (inside operator objects and name arrays too, inside
embedded JSON strings written back in their own form).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sidecar.commands import Command, Kind, Verdict
from sidecar.dialects.declared_model import Case, Container, EventType, IdSpec, Shape, Source
from sidecar.dialects.pointers import Opened, Pointer, edit, resolve, show
from sidecar.errors import Rejection
from sidecar.rules import SetName
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
        opened = Opened(shape.embedded) if shape.embedded else None
        source.tree.check(item, "", max_names, opened, values=values)
        case = shape.case
        if shape.discriminator is not None:
            case = _case_of(shape, values[shape.discriminator_slot])
        kind = case.kind
        if kind is Kind.PASSTHROUGH:
            return PASSTHROUGH
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
    except KeyProblem:
        raise
    except (Malformed, Rejection) as problem:
        message = problem.message if isinstance(problem, Rejection) else str(problem)
        return Command(shape.case.kind, malformed=message)


def _case_of(shape: Shape, value: object) -> Case:
    case = shape.cases.get(value) if type(value) is str else None
    if case is None:
        case = shape.otherwise
    if case is None:
        raise Malformed(f"{show(shape.discriminator or ())} is none of the declared cases")
    return case


def _case(shape: Shape, item: Mapping[str, Any], opened: Opened | None) -> Case:
    """The case of a command (for the rewrite: its pointers say what to strip)."""
    if shape.discriminator is None:
        return shape.case
    value = resolve(item, shape.discriminator, opened)
    case = shape.case_of(value)
    if case is None:
        raise Malformed(f"{show(shape.discriminator)} is none of the declared cases")
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


# -- writing back ---------------------------------------------------------------------------


Plan = tuple[tuple[Pointer, Any], ...]  # (pointer, change) in the order they apply


def rewrite_command(
    shape: Shape, item: Any, verdict: Verdict, plans: dict[tuple[int, int], Plan] | None = None
) -> Any:
    """`item` without what `verdict` stripped (the same object when nothing is).
    `plans` remembers, for one request, the edits of each (case, verdict): the
    commands of a batch mostly share both."""
    if not verdict.modified or type(item) is not dict:
        return item
    case = _case(shape, item, Opened(shape.embedded) if shape.embedded else None)
    key = (id(case), id(verdict))
    plan = plans.get(key) if plans is not None else None
    if plan is None:
        plan = _plan(case, verdict)
        if plans is not None:
            plans[key] = plan
    embedded = shape.embedded
    for pointer, change in plan:
        item = edit(item, pointer, change, embedded)
    return item


def _plan(case: Case, verdict: Verdict) -> Plan:
    """The edits that remove what `verdict` stripped from a command of `case`."""
    plan: list[tuple[Pointer, Any]] = []
    ids = set(verdict.stripped.get(SetName.CUSTOMER_IDS, ()))
    for spec in case.ids:
        if spec.type in ids and not spec.document and spec.pointer:
            plan.append((spec.pointer[:-1], _without_key(spec.pointer[-1])))
    for set_name, containers in (
        (SetName.CUSTOMER_PROPERTIES, case.customer_properties),
        (SetName.EVENT_PROPERTIES, case.event_properties),
    ):
        names = frozenset(verdict.stripped.get(set_name, ()))
        for container in containers if names else ():
            if not container.document:
                plan.append((container.pointer, without_names(container, names)))
    return _merged(plan)


def _merged(plan: list[tuple[Pointer, Any]]) -> Plan:
    """Changes at one pointer made one (one copy of the object instead of several)."""
    by_pointer: dict[Pointer, list[Any]] = {}
    for pointer, change in plan:
        by_pointer.setdefault(pointer, []).append(change)
    return tuple((p, c[0] if len(c) == 1 else _chain(c)) for p, c in by_pointer.items())


def _chain(changes: list[Any]) -> Any:
    def change(value: Any) -> Any:
        for one in changes:
            value = one(value)
        return value

    return change


def _without_key(name: str) -> Any:
    def change(parent: Any) -> Any:
        if type(parent) is not dict or name not in parent:
            return parent
        return {key: value for key, value in parent.items() if key != name}

    return change


def without_names(container: Container, names: frozenset[str]) -> Any:
    """A change removing `names` from a container's value."""

    def change(value: Any) -> Any:
        if type(value) is not dict:
            return _drop(value, names)
        out: dict[str, Any] = {}
        changed = False
        for key, inner in value.items():
            if key in container.operators:
                new = _drop(inner, names)
                changed |= new is not inner
                out[key] = new
            elif (
                key in names
                and key not in container.exclude
                and (container.only is None or key in container.only)
            ):
                changed = True
            else:
                out[key] = inner
        return out if changed else value

    return change


def _drop(value: Any, names: frozenset[str]) -> Any:
    """An operator's object or name array without `names` (the same object if none is in it)."""
    if type(value) is list:
        kept = [item for item in value if item not in names]
        return value if len(kept) == len(value) else kept
    if type(value) is dict and not names.isdisjoint(value):
        return {key: inner for key, inner in value.items() if key not in names}
    return value
