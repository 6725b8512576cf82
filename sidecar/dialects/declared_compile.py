"""A declaration (one item of the rules file's `dialects:`) → its compiled parts.

Runs at load time only. The JSON Schema (`declared_schema`) has already checked
types and keys; this checks what ties the parts together, each problem a
`ConfigError` naming its path (`dialects[0].endpoints[1].commands[0].shape: …`):
shapes that exist, one `{stream_id}` segment, a `path` place only where the
path has one, a discriminator with its cases, an event type for every event,
patterns with a group, names read in one object that fold alike, reasons that
exist, an anonymous id the shapes produce.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from sidecar.commands import Kind
from sidecar.dialects.base import Template
from sidecar.dialects.carriers import Base64Use, Embedded, Wrapping
from sidecar.dialects.declared_answers import Answer, Answers, BodyTemplate
from sidecar.dialects.declared_model import (
    Case,
    Container,
    EventType,
    IdSpec,
    Layout,
    Place,
    PlaceKind,
    Read,
    Route,
    Shape,
    Source,
)
from sidecar.dialects.pointers import Pointer, parse_pointer
from sidecar.dialects.spelling_tree import SpellingTree, TreeBuilder
from sidecar.errors import ConfigError, Reason
from sidecar.rules import BEARER, SecretPlace, TokenPlace

_STREAM_SEGMENT = "{stream_id}"


@dataclass(frozen=True, slots=True)
class Compiled:
    """Everything a `Declared` dialect is made of."""

    name: str
    anonymous_id: str
    id_types: frozenset[str]
    token_from: tuple[TokenPlace, ...]
    routes: tuple[Route, ...]
    answers: Answers
    templates: Mapping[str, Template]


def compile_declaration(raw: Mapping[str, Any], path: str) -> Compiled:
    """Compile one structurally valid declaration found at `path` (`dialects[i]`)."""
    shapes = _shapes(raw["shapes"], f"{path}.shapes")
    id_types = frozenset(
        spec.type
        for shape in shapes.values()
        for case in (shape.case, *shape.cases.values(), *filter(None, [shape.otherwise]))
        for spec in case.ids
    )
    if raw["anonymous_id"] not in id_types:
        have = ", ".join(sorted(id_types)) or "none"
        raise ConfigError(
            f"{path}.anonymous_id: {raw['anonymous_id']!r} is not an id type of the shapes ({have})"
        )
    places = _places(raw["stream_id"], f"{path}.stream_id")
    secrets = _secret_places(raw.get("secret_from", ()))
    routes = tuple(
        _route(item, f"{path}.endpoints[{i}]", shapes, places, secrets)
        for i, item in enumerate(raw["endpoints"])
    )
    _unique([r.name for r in routes], f"{path}.endpoints", "name")
    _unique([r.path for r in routes], f"{path}.endpoints", "path")
    return Compiled(
        name=raw["name"],
        anonymous_id=raw["anonymous_id"],
        id_types=id_types,
        token_from=_token_places(raw.get("token_from")),
        routes=routes,
        answers=_answers(raw.get("answers", {}), f"{path}.answers"),
        templates=_templates(raw.get("templates"), raw["anonymous_id"], id_types),
    )


def _unique(values: Sequence[str], path: str, key: str) -> None:
    seen: dict[str, int] = {}
    for index, value in enumerate(values):
        if value in seen:
            raise ConfigError(
                f"{path}[{index}].{key}: {value!r} is already used by {path}[{seen[value]}]"
            )
        seen[value] = index


def _token_places(raw: Sequence[Mapping[str, str]] | None) -> tuple[TokenPlace, ...]:
    if raw is None:
        return (BEARER,)
    return tuple(TokenPlace(p.get("header"), p.get("scheme"), p.get("cookie")) for p in raw)


def _secret_places(raw: Sequence[Mapping[str, str]]) -> tuple[SecretPlace, ...]:
    return tuple(SecretPlace(item.get("header"), item.get("basic")) for item in raw)


def _places(raw: Sequence[Mapping[str, str]], path: str) -> tuple[Place, ...]:
    places = []
    for item in raw:
        ((key, value),) = item.items()
        kind = PlaceKind(key)
        if kind in (PlaceKind.BODY, PlaceKind.COMMAND):
            places.append(Place(kind, pointer=parse_pointer(value)))
        else:
            places.append(Place(kind, name=value))
    return tuple(places)


# -- shapes ------------------------------------------------------------------------------


def _shapes(raw: Sequence[Mapping[str, Any]], path: str) -> Mapping[str, Shape]:
    _unique([item["name"] for item in raw], path, "name")
    return {item["name"]: _shape(item, f"{path}[{i}]") for i, item in enumerate(raw)}


def _shape(raw: Mapping[str, Any], path: str) -> Shape:
    embedded = {
        parse_pointer(item["pointer"]): Embedded(_wrapping(item))
        for item in raw.get("embedded", ())
    }
    base = _case(raw, None, path)
    discriminator = raw.get("discriminator")
    cases: dict[str, Case] = {}
    if (discriminator is None) != ("cases" not in raw):
        raise ConfigError(f"{path}: `discriminator` and `cases` go together")
    if "otherwise" in raw and discriminator is None:
        raise ConfigError(f"{path}.otherwise: only a shape with a `discriminator` has cases")
    for index, item in enumerate(raw.get("cases", ())):
        case = _case(item, base, f"{path}.cases[{index}]")
        for value in item["when"]:
            if value in cases:
                raise ConfigError(f"{path}.cases[{index}].when: {value!r} is already a case")
            cases[value] = case
    otherwise = _case(raw["otherwise"], base, f"{path}.otherwise") if "otherwise" in raw else None
    if discriminator is None:
        _check_event_type(base, path)
    chooser = parse_pointer(discriminator) if discriminator is not None else None
    reads = _command_reads([base, *cases.values(), *filter(None, [otherwise])], chooser, embedded)
    slots: dict[Pointer, int] = {}
    for read in reads:
        slots.setdefault(read.pointer, len(slots))
    _tree(reads, path, slots)  # names that fold alike fail here, at the shape's path
    slotted: dict[int, Case] = {}  # one slotted copy per case (cases share objects)
    return Shape(
        name=raw["name"],
        case=_slotted(base, slots, slotted),
        discriminator=chooser,
        cases=MappingProxyType({v: _slotted(c, slots, slotted) for v, c in cases.items()}),
        otherwise=_slotted(otherwise, slots, slotted) if otherwise is not None else None,
        embedded=MappingProxyType(embedded),
        reads=reads,
        slots=MappingProxyType(slots),
        discriminator_slot=slots[chooser] if chooser is not None else -1,
        root_slot=slots.get((), -1),
    )


def _slotted(case: Case, slots: Mapping[Pointer, int], done: dict[int, Case]) -> Case:
    """`case` with the slot of each command-level pointer it reads."""
    if id(case) in done:
        return done[id(case)]
    event_type = case.event_type
    if event_type is not None:
        event_type = replace(event_type, slots=tuple(slots[p] for p in event_type.pointers))
    found = done[id(case)] = replace(
        case,
        ids=tuple(s if s.document else replace(s, slot=slots[s.pointer]) for s in case.ids),
        event_type=event_type,
        event_properties=_slotted_containers(case.event_properties, slots),
        customer_properties=_slotted_containers(case.customer_properties, slots),
    )
    return found


def _slotted_containers(
    containers: tuple[Container, ...], slots: Mapping[Pointer, int]
) -> tuple[Container, ...]:
    return tuple(c if c.document else replace(c, slot=slots[c.pointer]) for c in containers)


def _case(raw: Mapping[str, Any], base: Case | None, path: str) -> Case:
    """A case's keys over the shape's (`base`), or the shape's own keys."""
    kind = Kind(raw["kind"]) if "kind" in raw else (base.kind if base else Kind.EVENT)
    event_type = base.event_type if base else None
    if "event_type" in raw:
        event_type = _event_type(raw["event_type"], f"{path}.event_type")
    case = Case(
        kind=kind,
        ids=_ids(raw["ids"]) if "ids" in raw else (base.ids if base else ()),
        event_type=event_type,
        event_properties=_containers(raw, "event_properties", base),
        customer_properties=_containers(raw, "customer_properties", base),
    )
    if base is not None:
        _check_event_type(case, path)
    return case


def _check_event_type(case: Case, path: str) -> None:
    if case.kind is Kind.EVENT and case.event_type is None:
        raise ConfigError(f"{path}.event_type: an event needs an event type (or set kind)")


def _ids(raw: Sequence[Mapping[str, str]]) -> tuple[IdSpec, ...]:
    return tuple(
        IdSpec(parse_pointer(item["pointer"]), item["type"], item.get("in") == "document")
        for item in raw
    )


def _containers(raw: Mapping[str, Any], key: str, base: Case | None) -> tuple[Container, ...]:
    if key not in raw:
        return getattr(base, key) if base else ()
    return tuple(
        Container(
            pointer=parse_pointer(item["pointer"]),
            document=item.get("in") == "document",
            exclude=frozenset(item.get("exclude", ())),
            only=frozenset(item["only"]) if "only" in item else None,
            operators=frozenset(item.get("operators", ())),
        )
        for item in raw[key]
    )


def _event_type(raw: Mapping[str, Any], path: str) -> EventType:
    given = [key for key in ("pointer", "pointers", "value") if key in raw]
    if len(given) != 1:
        raise ConfigError(f"{path}: set exactly one of pointer, pointers, value")
    pattern = None
    if "pattern" in raw:
        try:
            pattern = re.compile(raw["pattern"])
        except re.error as error:
            raise ConfigError(f"{path}.pattern: not a regular expression ({error})") from None
        if pattern.groups < 1:
            raise ConfigError(f"{path}.pattern: needs a group, (…): it is the event type")
    pointers = [raw["pointer"]] if "pointer" in raw else raw.get("pointers", [])
    return EventType(tuple(map(parse_pointer, pointers)), raw.get("value"), pattern)


def _command_reads(
    cases: Sequence[Case], discriminator: Pointer | None, embedded: Mapping[Pointer, Embedded]
) -> tuple[Read, ...]:
    """Every pointer a command of the shape may be read through."""
    reads = [Read(at, embedded=item) for at, item in embedded.items()]
    if discriminator is not None:
        reads.append(Read(discriminator))
    for case in cases:
        reads.extend(Read(spec.pointer) for spec in case.ids if not spec.document)
        reads.extend(Read(p) for p in (case.event_type.pointers if case.event_type else ()))
        for container in (*case.event_properties, *case.customer_properties):
            if not container.document:
                reads.extend(_container_reads(container))
    return tuple(reads)


def _container_reads(container: Container) -> list[Read]:
    names = container.exclude | container.operators | (container.only or frozenset())
    reads = [Read(container.pointer, container=container.only is None, names=names)]
    reads.extend(Read((*container.pointer, op), container=True) for op in container.operators)
    return reads


def _tree(reads: Sequence[Read], path: str, slots: Mapping[Pointer, int]) -> SpellingTree:
    tree = TreeBuilder()
    for read in reads:
        tree.add(
            read.pointer,
            container=read.container,
            names=read.names,
            embedded=read.embedded,
            slot=slots.get(read.pointer, -1),
        )
    return tree.build(path)


# -- endpoints ---------------------------------------------------------------------------


def _route(
    raw: Mapping[str, Any],
    path: str,
    shapes: Mapping[str, Shape],
    places: tuple[Place, ...],
    secrets: tuple[SecretPlace, ...],
) -> Route:
    segments = raw["path"].split("/")
    if segments.count(_STREAM_SEGMENT) > 1:
        raise ConfigError(f"{path}.path: at most one {_STREAM_SEGMENT} segment")
    pattern = None
    if _STREAM_SEGMENT in segments:
        pattern = re.compile(
            "/".join("([^/]+)" if s == _STREAM_SEGMENT else re.escape(s) for s in segments)
        )
    if "stream_id" in raw:
        places = _places(raw["stream_id"], f"{path}.stream_id")
    if pattern is None and any(p.kind is PlaceKind.PATH for p in places):
        raise ConfigError(
            f"{path}.stream_id: a `path: stream_id` place needs a {_STREAM_SEGMENT} segment "
            "in the endpoint's path"
        )
    per_command = [Read(p.pointer) for p in places if p.kind is PlaceKind.COMMAND]
    sources = tuple(
        _source(item, f"{path}.commands[{i}]", shapes, per_command)
        for i, item in enumerate(raw["commands"])
    )
    if sum(not s.pointer for s in sources) > 1:
        raise ConfigError(f'{path}.commands: at most one source at pointer ""')
    carrier = raw.get("carrier", {})
    document = _document_parts(sources, places, path)
    return Route(
        name=raw.get("name", raw["path"]),
        path=raw["path"],
        pattern=pattern,
        form=carrier.get("form"),
        wrapping=_wrapping(carrier),
        gzip_magic=carrier.get("gzip") == "magic",
        sources=sources,
        stream_id=places,
        secret_from=_secret_places(raw["secret_from"]) if "secret_from" in raw else secrets,
        **document,
    )


def _source(
    raw: Mapping[str, str], path: str, shapes: Mapping[str, Shape], per_command: Sequence[Read]
) -> Source:
    if raw["shape"] not in shapes:
        have = ", ".join(shapes)
        raise ConfigError(f"{path}.shape: no shape is named {raw['shape']!r} ({have})")
    shape = shapes[raw["shape"]]
    return Source(
        parse_pointer(raw["pointer"]),
        shape,
        Layout(raw.get("as", "array")),
        _tree([*shape.reads, *per_command], path, shape.slots),
    )


def _document_parts(
    sources: Sequence[Source], places: Sequence[Place], path: str
) -> dict[str, Any]:
    """What an endpoint reads of the document outside its commands: request-level
    stream ID places, the command sources' parents, document-scope ids and containers."""
    reads = [Read(place.pointer) for place in places if place.kind is PlaceKind.BODY]
    reads.extend(Read(source.pointer) for source in sources if source.pointer)
    ids: dict[IdSpec, None] = {}
    containers: dict[tuple[Container, bool], None] = {}
    for source in sources:
        shape = source.shape
        for case in (shape.case, *shape.cases.values(), *filter(None, [shape.otherwise])):
            ids.update((spec, None) for spec in case.ids if spec.document)
            for customer, found in (
                (False, case.event_properties),
                (True, case.customer_properties),
            ):
                containers.update(((c, customer), None) for c in found if c.document)
    reads.extend(Read(spec.pointer) for spec in ids)
    for container, _ in containers:
        reads.extend(_container_reads(container))
    return {
        "document_tree": _tree(reads, path, {}),
        "document_embedded": MappingProxyType({}),
        "document_ids": tuple(ids),
        "document_containers": tuple(containers),
    }


def _wrapping(raw: Mapping[str, Any]) -> Wrapping:
    return Wrapping(
        use=Base64Use(raw.get("base64", "never")),
        url=raw.get("alphabet", "standard") == "url",
        padded=raw.get("padding", True),
    )


# -- answers and templates -----------------------------------------------------------------


def _answers(raw: Mapping[str, Any], path: str) -> Answers:
    defaults = Answers()
    rejected = raw.get("rejected", {})
    body = BodyTemplate(rejected["body"]) if "body" in rejected else defaults.rejected
    overrides: dict[Reason, Answer] = {}
    for index, item in enumerate(rejected.get("overrides", ())):
        for code in item["reasons"]:
            try:
                reason = Reason(code)
            except ValueError:
                raise ConfigError(
                    f"{path}.rejected.overrides[{index}].reasons: {code!r} is not a reason code"
                ) from None
            overrides[reason] = Answer(
                item.get("status"), BodyTemplate(item["body"]) if "body" in item else body
            )
    all_rejected = _answer(raw.get("all_rejected"), defaults.all_rejected.body)
    return Answers(
        rejected=body,
        statuses=tuple(rejected.get("statuses", ())),
        overrides=MappingProxyType(overrides),
        all_rejected=all_rejected,
        partial=_answer(raw["partial"], all_rejected.body) if "partial" in raw else None,
    )


def _answer(raw: Mapping[str, Any] | None, body: BodyTemplate) -> Answer:
    """An answer of its own: status 200 and `body` unless it says otherwise."""
    raw = raw or {}
    return Answer(raw.get("status", 200), BodyTemplate(raw["body"]) if "body" in raw else body)


def _templates(
    raw: Mapping[str, Any] | None, anonymous_id: str, id_types: frozenset[str]
) -> Mapping[str, Template]:
    """The declared templates, or both derived from the id types (SPEC §4's intent)."""
    if raw is not None:
        return MappingProxyType(dict(raw))
    others = sorted(id_types - {anonymous_id})
    public: dict[str, Any] = {"default": "deny", "allow": [anonymous_id]}
    if others:
        public["signed_only"] = others
    return MappingProxyType(
        {
            "public": {"customer_ids": public},
            "private": {"customer_ids": {"default": "deny", "allow": sorted(id_types)}},
        }
    )
