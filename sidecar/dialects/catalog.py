"""Which dialects a rules version knows, and the router over the ones it uses.

A rules version may name the coded dialects (`BUILTIN`), the built-in declared
ones (`posthog`, `amplitude`, `mixpanel`, `snowplow`: YAML shipped in
`declared/`, compiled on first use) and the ones its own `dialects:` declares.
Its router holds the coded dialects (their paths never overlap) and every
declared dialect a stream uses; two routed dialects may not take the same path
(the load fails naming both), so a path always names one dialect.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from types import MappingProxyType
from typing import Any

from sidecar.dialects import BUILTIN, Dialect, Router
from sidecar.dialects.declared import Declared
from sidecar.dialects.declared_compile import compile_declaration
from sidecar.errors import ConfigError

DECLARED_BUILTIN = ("posthog", "amplitude", "mixpanel", "snowplow")
_PARAMETER = re.compile(r"^\{stream_id\}$")


@functools.cache
def declared_builtins() -> Mapping[str, Declared]:
    """The built-in declared dialects, compiled once (a broken one fails loudly: it is
    package data, checked by the test suite)."""
    from sidecar.config import parse_yaml  # noqa: PLC0415 - config imports this module
    from sidecar.schema import declaration_errors  # noqa: PLC0415 - schema imports dialects

    found: dict[str, Declared] = {}
    folder = resources.files("sidecar.dialects") / "declared"
    for name in DECLARED_BUILTIN:
        resource = folder / f"{name}.yaml"
        raw = parse_yaml(resource.read_bytes(), resource)  # type: ignore[arg-type]
        problems = declaration_errors(raw, name)
        if problems or not isinstance(raw, dict):
            raise ConfigError(*problems)
        found[name] = Declared(compile_declaration(raw, name))
    return MappingProxyType(found)


def available_dialects(declarations: Sequence[Mapping[str, Any]]) -> Mapping[str, Dialect]:
    """Every dialect a rules file may name: built-in ones and its `dialects:`."""
    available: dict[str, Dialect] = {**BUILTIN, **declared_builtins()}
    problems: list[str] = []
    declared_at: dict[str, int] = {}
    for index, raw in enumerate(declarations):
        path = f"dialects[{index}]"
        name = raw["name"]
        if name in declared_at:
            problems.append(
                f"{path}.name: {name!r} is already declared by dialects[{declared_at[name]}]"
            )
            continue
        if name in available:
            problems.append(f"{path}.name: {name!r} is a built-in dialect; choose another name")
            continue
        declared_at[name] = index
        try:
            available[name] = Declared(compile_declaration(raw, path))
        except ConfigError as error:
            problems.extend(error.problems)
    if problems:
        raise ConfigError(*problems)
    return MappingProxyType(available)


def router_for(available: Mapping[str, Dialect], used: Iterable[str]) -> Router:
    """The router over the coded dialects and the declared ones in `used`.
    Raises ConfigError when two of them take the same path."""
    declared = [available[n] for n in dict.fromkeys(used) if n not in BUILTIN]
    routed: list[Dialect] = [*BUILTIN.values(), *declared]
    problems: list[str] = []
    for index, first in enumerate(routed):
        for second in routed[index + 1 :]:
            declared_one, other = (
                (first, second) if isinstance(first, Declared) else (second, first)
            )
            if not isinstance(declared_one, Declared):
                continue  # two coded dialects: their paths never overlap
            problems.extend(
                f"streams: the {declared_one.name} and {other.name} dialects both take "
                f"{route.path}; the streams of one rules file may use only one of them"
                for route in declared_one.routes
                if _takes(other, route.path)
            )
    if problems:
        raise ConfigError(*dict.fromkeys(problems))
    return Router(routed)


def _takes(dialect: Dialect, template: str) -> bool:
    """Whether `dialect` takes some path the template `template` matches."""
    if isinstance(dialect, Declared):
        return any(_overlap(template, route.path) for route in dialect.routes)
    return dialect.match(template.replace("{stream_id}", "x")) is not None


def _overlap(first: str, second: str) -> bool:
    ones, twos = first.split("/"), second.split("/")
    return len(ones) == len(twos) and all(
        a == b or _PARAMETER.match(a) or _PARAMETER.match(b)
        for a, b in zip(ones, twos, strict=True)
    )
