"""JSON pointers through object members, and the key-spelling tree they imply.

A declared dialect addresses everything it reads with RFC 6901 pointers (no
array indices: arrays of commands are named by the endpoint). Compiled once to
tuples of names, they are resolved per command with dictionary lookups; a
member declared *embedded* (a string holding JSON, e.g. Snowplow's `ue_pr`) is
decoded on the way, once per command (`Opened`).

Every object a pointer passes through is an object the dialect interprets, so
the pointers of a shape also say which names the key-spelling guard protects
there (SPEC §3.3): `SpellingTree` holds one `Fields` per such object.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar.dialects.carriers import Embedded
from sidecar.errors import ConfigError
from sidecar.spelling import Fields

Pointer = tuple[str, ...]


def parse_pointer(text: str) -> Pointer:
    """`/a/b~1c` → ("a", "b/c"); "" is the object itself."""
    if not text:
        return ()
    return tuple(s.replace("~1", "/").replace("~0", "~") for s in text[1:].split("/"))


def show(pointer: Pointer) -> str:
    """The pointer as written (`/a/b~1c`)."""
    return "".join("/" + s.replace("~", "~0").replace("/", "~1") for s in pointer)


class Opened:
    """One command's (or document's) embedded members, decoded at most once each."""

    __slots__ = ("decoded", "embedded")

    def __init__(self, embedded: Mapping[Pointer, Embedded]) -> None:
        self.embedded = embedded
        self.decoded: dict[Pointer, Any] = {}

    def open(self, at: Pointer, text: str) -> Any:
        """The document inside the embedded string `text` at `at`. Rejects: malformed_payload."""
        try:
            return self.decoded[at]
        except KeyError:
            pass
        document = self.decoded[at] = self.embedded[at].read(text, show(at) or "the command")
        return document


def resolve(obj: Any, pointer: Pointer, opened: Opened | None = None) -> Any:
    """The value at `pointer` in `obj` (None when absent), through embedded strings."""
    value = obj
    embedded = opened.embedded if opened is not None else None
    for index, name in enumerate(pointer):
        if embedded and type(value) is str and pointer[:index] in embedded:
            value = opened.open(pointer[:index], value)  # type: ignore[union-attr]
        if type(value) is not dict:
            return None
        value = value.get(name)
    if embedded and type(value) is str and pointer in embedded:
        value = opened.open(pointer, value)  # type: ignore[union-attr]
    return value


def edit(
    value: Any,
    pointer: Pointer,
    change: Callable[[Any], Any],
    embedded: Mapping[Pointer, Embedded],
    at: Pointer = (),
) -> Any:
    """`value` with `change` applied at `pointer`, copied along the way only where
    something changed (the same object back otherwise); an embedded string on the
    way is decoded, changed and written back in the form it had."""
    if embedded and type(value) is str and at in embedded:
        inner = embedded[at].read(value, show(at))
        changed = _edit_inner(inner, pointer, change, embedded, at)
        return value if changed is inner else embedded[at].write(changed, value)
    return _edit_inner(value, pointer, change, embedded, at)


def _edit_inner(
    value: Any,
    pointer: Pointer,
    change: Callable[[Any], Any],
    embedded: Mapping[Pointer, Embedded],
    at: Pointer,
) -> Any:
    if not pointer:
        return change(value)
    if type(value) is not dict or pointer[0] not in value:
        return value
    name = pointer[0]
    child = value[name]
    new = edit(child, pointer[1:], change, embedded, (*at, name))
    if new is child:
        return value
    out = dict(value)
    out[name] = new
    return out


@dataclass(slots=True)
class _Draft:
    children: dict[str, _Draft] = field(default_factory=dict)
    extra: set[str] = field(default_factory=set)
    container: bool = False
    embedded: Embedded | None = None


class SpellingTree:
    """The objects a set of pointers passes through, each with the names read there:
    `check` runs the key-spelling guard over them (decoding embedded strings on the
    way, into `opened`)."""

    __slots__ = ("children", "container", "embedded", "fields")

    def __init__(
        self,
        fields: Fields,
        children: Mapping[str, SpellingTree],
        container: bool,
        embedded: Embedded | None,
    ) -> None:
        self.fields = fields
        self.children = tuple(children.items())
        self.container = container
        self.embedded = embedded

    def check(
        self, obj: Mapping[str, Any], where: str, max_names: int, opened: Opened, at: Pointer = ()
    ) -> None:
        """Rejects (KeyProblem): a look-alike key (malformed_payload), a container with
        too many names (payload_too_large); (Rejection) a bad embedded string."""
        if self.container:
            self.fields.check_names(obj, where, max_names)
        else:
            self.fields.check(obj, where)
        for name, child in self.children:
            value = obj.get(name)
            if value is None:
                continue
            path = (*at, name)
            if child.embedded is not None and type(value) is str:
                value = opened.open(path, value)
            if type(value) is dict:
                child.check(value, f"{where}.{name}" if where else name, max_names, opened, path)


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
    ) -> None:
        node = self._root
        for name in pointer:
            node = node.children.setdefault(name, _Draft())
        node.container |= container
        node.extra.update(names)
        if embedded is not None:
            node.embedded = embedded

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
    return SpellingTree(fields, children, draft.container, draft.embedded)
