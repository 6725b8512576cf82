"""JSON pointers through object members.

A declared dialect addresses everything it reads with RFC 6901 pointers (no
array indices: arrays of commands are named by the endpoint). Compiled once to
tuples of names, they are resolved per command with dictionary lookups; a
member declared *embedded* (a string holding JSON, e.g. Snowplow's `ue_pr`) is
decoded on the way, once per command (`Opened`).

The key-spelling tree those pointers imply is `spelling_tree.SpellingTree`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sidecar.dialects.carriers import Embedded

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
    if opened is None:  # the common case, per id and container of every command: lean
        for name in pointer:
            if type(value) is not dict:
                return None
            value = value.get(name)
        return value
    embedded = opened.embedded
    for index, name in enumerate(pointer):
        if embedded and type(value) is str and pointer[:index] in embedded:
            value = opened.open(pointer[:index], value)
        if type(value) is not dict:
            return None
        value = value.get(name)
    if embedded and type(value) is str and pointer in embedded:
        value = opened.open(pointer, value)
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
