"""Writing a declared dialect's commands back judged.

`rewrite_command` removes what a verdict stripped from one command: ids at their
pointers, names from their containers (inside operator objects and name arrays
too). A shape without embedded JSON strings is edited in place (the document is
the request's own, read by nothing after `encode`, as bloomreach's `_strip`):
a few `dict.pop` per command. A shape with them (Snowplow's `ue_pr`) is edited
by copying along the way, each embedded string decoded, changed and written
back in the form it had (`pointers.edit`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.commands import Verdict
from sidecar.dialects.declared_model import Case, Container, Shape
from sidecar.dialects.declared_read import Malformed
from sidecar.dialects.pointers import Opened, Pointer, edit, resolve, show
from sidecar.rules import SetName

Plan = tuple[tuple[Pointer, Any], ...]  # (pointer, change) in the order they apply


@dataclass(frozen=True, slots=True)
class Removal:
    """What leaves one object of a command, in place: `keys` popped when it is an
    object, `items` filtered out when it is a name array, and `inner`: names
    removed from its members holding update operators (`$set`: an object or a
    name array)."""

    at: Pointer  # the object, from the command
    keys: frozenset[str] = frozenset()
    items: frozenset[str] = frozenset()
    inner: tuple[tuple[str, frozenset[str]], ...] = ()


InPlace = tuple[Removal, ...]


def kept_commands(shape: Shape, items: Sequence[Any], verdicts: Sequence[Verdict]) -> list[Any]:
    """The forwarded commands of `items`, each without what its verdict stripped."""
    if shape.embedded:
        plans: dict[tuple[int, int], Any] = {}
        return [
            rewrite_command(shape, item, verdict, plans)
            for item, verdict in zip(items, verdicts, strict=True)
            if verdict.forwarded
        ]
    head = shape.discriminator_head
    removals: dict[tuple[object, int], InPlace] = {}  # by (discriminator value, verdict)
    kept = []
    for item, verdict in zip(items, verdicts, strict=True):
        if not verdict.forwarded:
            continue
        kept.append(item)
        if not verdict.modified or type(item) is not dict:
            continue
        if head is not None:  # the case, told by a member's value: the key is that value
            value = item.get(head)
            chooser: object = value if type(value) is str else None
        else:
            chooser = id(_case(shape, item, None))
        key = (chooser, id(verdict))
        plan = removals.get(key)
        if plan is None:
            plan = removals[key] = _in_place(_case(shape, item, None), verdict)
        for removal in plan:
            _remove(item, removal)
    return kept


def rewrite_command(
    shape: Shape, item: Any, verdict: Verdict, plans: dict[tuple[int, int], Any] | None = None
) -> Any:
    """`item` without what `verdict` stripped: the same object, changed in place
    (a shape without embedded strings), or a changed copy (the same object when
    nothing is stripped). `plans` remembers, for one request, the edits of each
    (case, verdict): the commands of a batch mostly share both."""
    if not verdict.modified or type(item) is not dict:
        return item
    embedded = shape.embedded
    case = _case(shape, item, Opened(embedded) if embedded else None)
    plans = plans if plans is not None else {}
    key = (id(case), id(verdict))
    if not embedded:
        removals: InPlace | None = plans.get(key)
        if removals is None:
            removals = plans[key] = _in_place(case, verdict)
        for removal in removals:
            _remove(item, removal)
        return item
    changes: Plan | None = plans.get(key)
    if changes is None:
        changes = plans[key] = _plan(case, verdict)
    for pointer, change in changes:
        item = edit(item, pointer, change, embedded)
    return item


def _remove(item: dict[str, Any], removal: Removal) -> None:
    target: Any = item
    for name in removal.at:
        if type(target) is not dict:
            return
        target = target.get(name)
    if type(target) is list:
        if removal.items and not removal.items.isdisjoint(target):
            target[:] = [name for name in target if name not in removal.items]
        return
    if type(target) is not dict:
        return
    for name in removal.keys:
        target.pop(name, None)
    for member, names in removal.inner:
        _drop_in_place(target, member, names)


def _drop_in_place(parent: dict[str, Any], member: str, names: frozenset[str]) -> None:
    """`names` out of an operator's object or name array (`_drop`, in place)."""
    value = parent.get(member)
    if type(value) is dict:
        for name in names:
            value.pop(name, None)
    elif type(value) is list and not names.isdisjoint(value):
        value[:] = [item for item in value if item not in names]


def _in_place(case: Case, verdict: Verdict) -> InPlace:
    """`_plan`'s edits as in-place removals, merged per object."""
    by_object: dict[Pointer, Removal] = {}

    def add(removal: Removal) -> None:
        found = by_object.get(removal.at)
        if found is not None:
            inner: dict[str, frozenset[str]] = dict(found.inner)
            for member, names in removal.inner:
                inner[member] = inner.get(member, frozenset()) | names
            removal = Removal(
                removal.at,
                found.keys | removal.keys,
                found.items | removal.items,
                tuple(inner.items()),
            )
        by_object[removal.at] = removal

    for pointer, container, names in _stripped_places(case, verdict):
        if container is None:
            add(Removal(pointer[:-1], keys=frozenset(pointer[-1:])))
        else:
            add(_container_removal(container, names))
    return tuple(by_object.values())


def _stripped_places(
    case: Case, verdict: Verdict
) -> Iterator[tuple[Pointer, Container | None, frozenset[str]]]:
    """Where a command of `case` holds what `verdict` stripped: each id member
    (its pointer, None, no names), then each property container with the names
    stripped from it (both `_in_place` and `_plan` remove these)."""
    ids = set(verdict.stripped.get(SetName.CUSTOMER_IDS, ()))
    for spec in case.ids:
        if spec.type in ids and not spec.document and spec.pointer:
            yield spec.pointer, None, frozenset()
    for set_name, containers in (
        (SetName.CUSTOMER_PROPERTIES, case.customer_properties),
        (SetName.EVENT_PROPERTIES, case.event_properties),
    ):
        names = frozenset(verdict.stripped.get(set_name, ()))
        for container in containers if names else ():
            if not container.document:
                yield container.pointer, container, names


def _container_removal(container: Container, names: frozenset[str]) -> Removal:
    """`without_names(container, names)` as a removal."""
    keys = names - container.exclude - container.operators
    if container.only is not None:
        keys &= container.only
    inner = tuple((operator, names) for operator in sorted(container.operators))
    return Removal(container.pointer, keys, names, inner)


def _case(shape: Shape, item: Mapping[str, Any], opened: Opened | None) -> Case:
    """The case of a command (for the rewrite: its pointers say what to strip)."""
    if shape.discriminator is None:
        return shape.case
    value = resolve(item, shape.discriminator, opened)
    case = shape.case_of(value)
    if case is None:
        raise Malformed(f"{show(shape.discriminator)} is none of the declared cases")
    return case


def _plan(case: Case, verdict: Verdict) -> Plan:
    """The edits that remove what `verdict` stripped from a command of `case`."""
    plan: list[tuple[Pointer, Any]] = []
    for pointer, container, names in _stripped_places(case, verdict):
        if container is None:
            plan.append((pointer[:-1], _without_key(pointer[-1])))
        else:
            plan.append((pointer, without_names(container, names)))
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
