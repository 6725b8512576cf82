"""The key-spelling tree a declared dialect's pointers imply (SPEC §3.3).

Every object a pointer passes through is an object the dialect interprets, so
the pointers of a shape also say which names the key-spelling guard protects
there: `SpellingTree` holds one `Fields` per such object, and its walk also
fills the values the shape reads (one pass per command).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar.dialects.carriers import Embedded
from sidecar.dialects.pointers import Opened, Pointer, show
from sidecar.errors import ConfigError
from sidecar.spelling import Fields


@dataclass(slots=True)
class _Draft:
    children: dict[str, _Draft] = field(default_factory=dict)
    extra: set[str] = field(default_factory=set)
    container: bool = False
    embedded: Embedded | None = None
    slot: int = -1


NO_VALUES: list[Any] = []  # `check` without slots to fill
MAX_KEY_SETS = 256  # key sets remembered per object of a tree (then forgotten)


class SpellingTree:
    """The objects a set of pointers passes through, each with the names read there:
    `check` runs the key-spelling guard over them (decoding embedded strings on the
    way, into `opened`) and, in the same walk, puts the value at each pointer that
    has a slot into `values` — the one pass a command's reading costs. `fill` is
    that walk's fast path for objects whose keys are all known-safe spellings."""

    __slots__ = (
        "by_name",
        "children",
        "container",
        "embedded",
        "fields",
        "names",
        "ordered",
        "pointer",
        "present",
        "safe",
        "size",
        "slot",
    )

    def __init__(
        self,
        fields: Fields,
        children: Mapping[str, SpellingTree],
        container: bool,
        embedded: Embedded | None,
        slot: int,
        *,
        pointer: Pointer = (),
    ) -> None:
        self.fields = fields
        self.safe = fields.safe  # the same set object, updated in place by `Fields`
        self.children = tuple(children.items())
        self.by_name = dict(children)
        self.names = frozenset(children)
        self.size = len(children)
        # Key sets of objects seen here, all safe spellings → the names read among them:
        # a pure function of the keys (what `Fields.check` decides depends on them only),
        # so an object with a known key set costs one lookup instead of a subset test
        # and a lookup per key.
        self.present: dict[tuple[str, ...], Collection[str]] = {}
        self.container = container
        self.embedded = embedded
        self.slot = slot
        self.pointer = pointer  # where this object is, from the tree's root
        # An embedded string below: `fill` walks in declaration order.
        self.ordered: bool = any(c.embedded is not None or c.ordered for c in children.values())

    def fill(
        self, obj: Mapping[str, Any], values: list[Any], max_names: int, opened: Opened | None
    ) -> bool:
        """`check`'s walk when every object on it is already known to pass: one subset
        test per object, no position strings, only the names present visited. False
        (values partly filled, nothing raised) when some object needs the full check:
        then `check` decides, with its messages."""
        if self.container and len(obj) > max_names:
            return False
        if self.ordered:
            return self.safe.issuperset(obj) and self._fill_ordered(obj, values, max_names, opened)
        names = self.present.get(tuple(obj)) if len(obj) <= self.size else None
        if names is None:
            if not self.safe.issuperset(obj):
                return False
            names = self._names_in(obj)
        by_name = self.by_name
        for name in names:
            value = obj[name]
            if value is None:
                continue
            child = by_name[name]
            if child.slot >= 0:
                values[child.slot] = value
            kind = type(value)
            if kind is dict:
                if not child.fill(value, values, max_names, opened):
                    return False
            elif kind is list and child.container:  # a name array: the full check
                return False
        return True

    def _names_in(self, obj: Mapping[str, Any]) -> Collection[str]:
        """The names read here among the keys of `obj` (all safe spellings): a big
        container's found at C speed; a small object's remembered by its key set for
        the next object with the same keys (bounded: forgotten all at once when full)."""
        if len(obj) > self.size:
            return self.names.intersection(obj)
        if len(self.present) >= MAX_KEY_SETS:
            self.present.clear()
        keys = tuple(obj)
        names = self.present[keys] = tuple(key for key in keys if key in self.by_name)
        return names

    def _fill_ordered(
        self, obj: Mapping[str, Any], values: list[Any], max_names: int, opened: Opened | None
    ) -> bool:
        """`fill` in declaration order, decoding embedded strings on the way as `check`
        does, so that a decoding error (a Rejection) is the one `check` would raise."""
        for name, child in self.children:
            value = obj.get(name)
            if value is None:
                continue
            if child.embedded is not None and type(value) is str and opened is not None:
                value = opened.open(child.pointer, value)
            if child.slot >= 0:
                values[child.slot] = value
            if type(value) is dict:
                if not child.fill(value, values, max_names, opened):
                    return False
            elif type(value) is list and child.container:
                return False
        return True

    def check(
        self,
        obj: Mapping[str, Any],
        where: str,
        max_names: int,
        opened: Opened | None,
        *,
        values: list[Any] = NO_VALUES,
        at: Pointer = (),
    ) -> None:
        """Rejects (KeyProblem): a look-alike key (malformed_payload), a container with
        too many names (payload_too_large); (Rejection) a bad embedded string."""
        if self.container:
            self.fields.check_names(obj, where, max_names)
        else:
            self.fields.check(obj, where)
        for name, child in self.children:  # in declaration order: deterministic messages
            found = obj.get(name)
            if found is None:
                continue
            value = found
            if child.embedded is not None and type(found) is str and opened is not None:
                value = opened.open((*at, name), found)
            if child.slot >= 0 and values is not NO_VALUES:
                values[child.slot] = value
            if type(value) is dict:
                where_ = f"{where}.{name}" if where else name
                path = (*at, name) if opened else at
                child.check(value, where_, max_names, opened, values=values, at=path)
            elif type(value) is list and child.container:  # a name array (`"$unset": [...]`)
                where_ = f"{where}.{name}" if where else name
                names = {item: None for item in value if type(item) is str}
                if len(value) > max_names:
                    names = {str(index): None for index in range(len(value))}
                child.fields.check_names(names, where_, max_names)


class TreeBuilder:
    """Collects pointers, then builds the `SpellingTree` (a `ConfigError` at `path`
    when two names read in one object fold alike)."""

    def __init__(self) -> None:
        self._root = _Draft()

    def add(
        self,
        pointer: Pointer,
        *,
        container: bool = False,
        names: Iterable[str] = (),
        embedded: Embedded | None = None,
        slot: int = -1,
    ) -> None:
        node = self._root
        for name in pointer:
            node = node.children.setdefault(name, _Draft())
        node.container |= container
        node.extra.update(names)
        if embedded is not None:
            node.embedded = embedded
        if slot >= 0:
            node.slot = slot

    def build(self, path: str) -> SpellingTree:
        return _build(self._root, path, ())


def _build(draft: _Draft, path: str, at: Pointer) -> SpellingTree:
    try:
        fields = Fields(*dict.fromkeys([*draft.children, *sorted(draft.extra)]))
    except ValueError:
        raise ConfigError(
            f"{path}: two names read in the object at {show(at) or '(the root)'!r} fold alike "
            "(a case-insensitive collector could not tell them apart)"
        ) from None
    children = {name: _build(child, path, (*at, name)) for name, child in draft.children.items()}
    return SpellingTree(fields, children, draft.container, draft.embedded, draft.slot, pointer=at)
