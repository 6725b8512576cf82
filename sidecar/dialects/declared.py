"""A declared dialect (SPEC §3.5): one `Dialect` made from a YAML declaration.

The rules file's `dialects:` (and the built-in `posthog`, `amplitude`,
`mixpanel`, `snowplow`, shipped as declarations in `declared/`) are compiled
once per rules version (`declared_compile`) into this class, behind the same
seam as the coded dialects. Per request it only looks things up:

- `match`: the endpoint a path names (exact paths, or one `{stream_id}` segment);
- `stream_id`: every declared place (header, query, path, Basic user, body and
  per-command pointers), all values equal or `stream_id_conflict`;
- `decode`: the carrier undone (form field, base64), the document's own fields
  checked, each command read by its shape (`declared_read`);
- `encode`: rejected commands dropped, stripped names removed, the document
  written back in the form it came in;
- answers as the declaration says (`declared_answers`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from sidecar.body import Body
from sidecar.commands import Command, Kind, Verdict
from sidecar.credentials import basic_credentials
from sidecar.dialects.base import Endpoint, Payload, RequestView, Template
from sidecar.dialects.carriers import Base64Form, Base64Use, FormBody, split_form, wrap
from sidecar.dialects.declared_answers import Answers
from sidecar.dialects.declared_compile import Compiled
from sidecar.dialects.declared_model import Layout, PlaceKind, Route, Source
from sidecar.dialects.declared_read import DocumentView, Malformed, names_in, read_command
from sidecar.dialects.declared_write import kept_commands, rewrite_command, without_names
from sidecar.dialects.pointers import Opened, edit, resolve, show
from sidecar.errors import Reason, Rejection
from sidecar.jsoncodec import dump_json, parse_json
from sidecar.reply import Reply
from sidecar.rules import EdgeLimits, SetName, Stream, TokenPlace
from sidecar.spelling import KeyProblem, check_query, fold


@dataclass(frozen=True, slots=True)
class Group:
    """The commands one source contributed: `count` items from `start`; `single` when
    the source held one object rather than an array."""

    source: Source
    start: int
    count: int
    single: bool


@dataclass(frozen=True, slots=True)
class Envelope:
    """How the document was carried: the form around it, its base64 form."""

    form: FormBody | None = None
    base64: Base64Form | None = None


@dataclass(frozen=True, slots=True)
class DeclaredPayload(Payload):
    """A decoded body, with where its commands came from and how it was carried."""

    groups: tuple[Group, ...] = ()
    envelope: Envelope = Envelope()
    route: Route | None = None


class Declared:
    """A wire format declared in YAML."""

    option_schemas: Mapping[str, Mapping[str, Any]] = {}
    identity_headers: Mapping[str, str] = {}
    forwarded_credentials: frozenset[str] = frozenset()

    def __init__(self, compiled: Compiled) -> None:
        self.name = compiled.name
        self.id_types: frozenset[str] | None = compiled.id_types
        self.anonymous_id = compiled.anonymous_id
        self.templates: Mapping[str, Template] = compiled.templates
        self.default_token_from: tuple[TokenPlace, ...] = compiled.token_from
        self.answers: Answers = compiled.answers
        self.routes: tuple[Route, ...] = compiled.routes
        self._by_name = {route.name: route for route in compiled.routes}
        self._exact = {
            r.path: self._endpoint(r, None) for r in compiled.routes if r.pattern is None
        }
        self._patterns = tuple((r.pattern, r) for r in compiled.routes if r.pattern is not None)

    def _endpoint(self, route: Route, stream_id: str | None) -> Endpoint:
        kind = route.sources[0].shape.case.kind if route.single else None
        return Endpoint(
            self,
            route.name,
            kind,
            stream_id,
            form=route.form is not None,
            secret_from=route.secret_from,
            gzip_magic=route.gzip_magic,
        )

    def compile_options(self, raw: Mapping[str, Any], path: str) -> None:
        """No stream options of its own."""
        return None

    def match(self, path: str) -> Endpoint | None:
        """A declared path, exactly, or with its `{stream_id}` segment filled."""
        found = self._exact.get(path)
        if found is not None:
            return found
        for pattern, route in self._patterns:
            matched = pattern.fullmatch(path)
            if matched:
                return self._endpoint(route, matched[1])
        return None

    def stream_id(self, request: RequestView, endpoint: Endpoint, body: Body) -> str | None:
        """Every declared place's value; they must agree. Rejects: stream_id_conflict
        (also for a query key spelled like the declared one), malformed_payload (a query
        key named like the form field: checked here, where the query is seen)."""
        route = self._by_name[endpoint.name]
        if route.form is not None:
            _check_form_query(request.query, route.form)
        found: set[str] = set()
        in_body = False
        for place in route.stream_id:
            if place.kind is PlaceKind.HEADER:
                found.update(request.headers.getall(place.name, ()))
            elif place.kind is PlaceKind.QUERY:
                check_query(request.query, place.name)
                found.update(request.query.getall(place.name, ()))
            elif place.kind is PlaceKind.PATH and endpoint.path_stream_id is not None:
                found.add(endpoint.path_stream_id)
            elif place.kind is PlaceKind.BASIC:
                basic = basic_credentials(request.headers.get("Authorization", ""))
                if basic is not None:
                    found.add(basic.user)
            elif place.kind in (PlaceKind.BODY, PlaceKind.COMMAND) and not in_body:
                in_body = True  # every body place at once, in one pass
                found.update(_body_ids(route, self._opened(route, body)))
        found.discard("")
        if len(found) > 1:
            raise Rejection(Reason.STREAM_ID_CONFLICT, "the request names more than one stream ID")
        return found.pop() if found else None

    def _opened(self, route: Route, body: Body) -> Any:
        """The document for a stream ID lookup (None when the body does not decode)."""
        try:
            document, envelope = _open(route, body)
        except Rejection:
            return None
        if envelope is not None:  # for `decode`: the form and base64 undone once
            body.carried = (document, envelope)
        return document

    def decode(self, endpoint: Endpoint, body: Body, stream: Stream, limits: EdgeLimits) -> Payload:
        """The commands of every declared source. Rejects: malformed_payload (also a
        look-alike key), payload_too_large (`max_names_per_object`)."""
        route = self._by_name[endpoint.name]
        if body.carried is not None:
            document, envelope = body.carried
            body.carried = None
        else:
            document, envelope = _open(route, body)
        max_names = limits.max_names_per_object
        opened = Opened(route.document_embedded)
        if type(document) is dict:
            route.document_tree.check(document, "", max_names, opened)
        elif type(document) is not list or _root(route) is None:
            raise Rejection(Reason.MALFORMED_PAYLOAD, "the body must be a JSON object")
        view = DocumentView(document, opened)
        items: list[Any] = []
        commands = []
        groups = []
        for source, value in _sources(route, document):
            single = _single(source, value)
            batch = [value] if single else value
            commands.extend(_read_all(source, batch, view, max_names, single))
            groups.append(Group(source, len(items), len(batch), single))
            items.extend(batch)
        if not commands:  # (nothing judged: a root event beside an empty `batch`, say)
            raise Rejection(Reason.MALFORMED_PAYLOAD, "the body holds no commands")
        if (route.document_ids or route.document_containers) and all(
            command.kind is Kind.PASSTHROUGH for command in commands
        ):  # request-level ids and names are judged only with a judged command
            raise Rejection(Reason.MALFORMED_PAYLOAD, "the body holds no judged commands")
        if route.single and commands[0].malformed:
            raise Rejection(Reason.MALFORMED_PAYLOAD, commands[0].malformed)
        return DeclaredPayload(
            endpoint,
            document,
            tuple(items),
            tuple(commands),
            groups=tuple(groups),
            envelope=envelope or Envelope(),
            route=route,
        )

    def encode(self, payload: Payload, verdicts: Sequence[Verdict]) -> bytes:
        """The document with rejected commands removed and stripped ids and names gone,
        carried as it came (form field, base64 alphabet and padding)."""
        if not isinstance(payload, DeclaredPayload) or payload.route is None:
            raise TypeError("a declared dialect encodes only what it decoded")
        document = payload.document
        for group in payload.groups:
            document = _rewrite_group(document, group, payload.items, verdicts)
        document = _strip_document(document, payload.route, payload.commands, verdicts)
        data = wrap(dump_json(document), payload.envelope.base64)
        form = payload.envelope.form
        return form.with_value(data) if form is not None else data

    def answer_batch(self, verdicts: Sequence[Verdict], upstream: Reply | None) -> Reply:
        """As the declaration's `answers` say, with `X-Trackgate-Rejected: N`."""
        return self.answers.batch_reply(verdicts, upstream)

    def error_reply(self, rejection: Rejection) -> Reply:
        """As the declaration's `answers.rejected` says."""
        return self.answers.error_reply(rejection)

    def upstream_headers(self, stream: Stream, consumed: frozenset[str]) -> Mapping[str, str]:
        """Nothing to add."""
        return {}

    def default_path(self, document: Any) -> str:
        """The first declared path without a `{stream_id}` segment (else the first)."""
        exact = [route.path for route in self.routes if route.pattern is None]
        return exact[0] if exact else self.routes[0].path


def _open(route: Route, body: Body) -> tuple[Any, Envelope | None]:
    """The document and how it was carried (None: a plain JSON body).
    Rejects: malformed_payload."""
    if route.form is None and route.wrapping.use is Base64Use.NEVER:
        return body.document(), None
    form = split_form(body.raw, route.form) if route.form is not None else None
    text = form.value if form is not None else body.raw
    what = f"the form field {route.form!r}" if route.form is not None else "the body"
    data, base64 = route.wrapping.unwrap(text, what)
    return parse_json(data), Envelope(form, base64)


def _check_form_query(query: Mapping[str, str], field: str) -> None:
    """A form endpoint's query holds no parameter named like its form field, the
    exact name included: a collector reading query and form as one (Flask's
    `request.values`, PHP's `$_REQUEST`) may take it for the judged field, with
    case folding or `[]` appended as for the form's own keys. Rejects:
    malformed_payload."""
    for key in query:
        if fold(key).removesuffix("[]") == fold(field):
            raise Rejection(
                Reason.MALFORMED_PAYLOAD,
                f"a query parameter is named like the form field {field!r}",
            )


def _root(route: Route) -> Source | None:
    """The source at pointer "" (the whole document), if the endpoint has one."""
    return next((source for source in route.sources if not source.pointer), None)


def _sources(route: Route, document: Any) -> list[tuple[Source, Any]]:
    """The sources present in `document`, with their values. A source at pointer ""
    is used only when no other is present (PostHog's `/e/` takes `{"batch": […]}`,
    an array of events, or one event)."""
    found = [
        (source, value)
        for source in route.sources
        if source.pointer and (value := resolve(document, source.pointer)) is not None
    ]
    root = _root(route)
    if not found and root is not None:
        return [(root, document)]
    return found


def _single(source: Source, value: object) -> bool:
    """Whether a source's value is one command. Rejects: malformed_payload."""
    where = show(source.pointer) or "the body"
    if source.layout is Layout.ARRAY and type(value) is not list:
        raise Rejection(Reason.MALFORMED_PAYLOAD, f"{where} must be an array")
    if source.layout is Layout.OBJECT and type(value) is not dict:
        raise Rejection(Reason.MALFORMED_PAYLOAD, f"{where} must be an object")
    if type(value) not in (dict, list):
        raise Rejection(Reason.MALFORMED_PAYLOAD, f"{where} must be an object or an array")
    return type(value) is dict


def _read_all(
    source: Source, batch: list[Any], view: DocumentView, max_names: int, single: bool
) -> list[Command]:
    """The commands of one source. Rejects (KeyProblem): a look-alike key, too many
    names, at the position of the first command that has one."""
    try:  # (`map` calls at C speed: no Python step per command around the call)
        return list(map(read_command, repeat(source), batch, repeat(view), repeat(max_names)))
    except KeyProblem as first:
        # Which command: read again one by one (only a rejected request pays); the
        # reading is deterministic, so the same command rejects again.
        for index, item in enumerate(batch):
            try:
                read_command(source, item, view, max_names)
            except KeyProblem as problem:
                raise _within(problem, source, index, single) from None
        raise first


def _within(problem: KeyProblem, source: Source, index: int, single: bool) -> KeyProblem:
    where = ".".join(source.pointer)
    if single:
        return problem.within(where) if where else problem
    return problem.within(f"{where}[{index}]" if where else f"[{index}]")


def _body_ids(route: Route, document: Any) -> set[str]:
    """Stream IDs at the route's body pointers and at its pointers of every command
    (one pass over the commands, whatever the number of pointers)."""
    if document is None:
        return set()
    values = [resolve(document, pointer) for pointer in route.body_pointers]
    places = route.command_places
    heads, head_set, pairs, deeper = places.heads, places.head_set, places.pairs, places.deeper
    for _, found in _sources(route, document) if places.any else ():
        for item in found if type(found) is list else (found,):
            if type(item) is not dict:
                continue
            if not head_set.isdisjoint(item):  # usually: none of them (one C-level test)
                values.extend([item[head] for head in heads if head in item])
            for head, tail in pairs:
                inner = item.get(head)
                if type(inner) is dict and tail in inner:
                    values.append(inner[tail])
            if deeper:  # (a comprehension costs a call even when empty)
                values.extend([resolve(item, pointer) for pointer in deeper])
    return {str(value) for value in values if type(value) is str or type(value) is int}


def _rewrite_group(
    document: Any, group: Group, items: Sequence[Any], verdicts: Sequence[Verdict]
) -> Any:
    start, stop = group.start, group.start + group.count
    shape, pointer = group.source.shape, group.source.pointer
    if group.single:
        item, verdict = items[start], verdicts[start]
        if not verdict.forwarded:  # (a whole-document command is never dropped: answered)
            return (
                edit(document, pointer[:-1], _drop_member(pointer[-1]), {}) if pointer else document
            )
        new = rewrite_command(shape, item, verdict)
        return document if new is item else edit(document, pointer, lambda _: new, {})
    kept = kept_commands(shape, items[start:stop], verdicts[start:stop])
    return edit(document, pointer, lambda _: kept, {})


def _drop_member(name: str) -> Any:
    def change(parent: Any) -> Any:
        return {k: v for k, v in parent.items() if k != name} if type(parent) is dict else parent

    return change


def _strip_document(
    document: Any, route: Route, commands: Sequence[Command], verdicts: Sequence[Verdict]
) -> Any:
    """Request-level ids and names stripped from any forwarded command leave the
    document; all of them do when no judged (not passthrough) command is forwarded:
    none accepted them."""
    if not route.document_ids and not route.document_containers:
        return document
    embedded = route.document_embedded
    opened = Opened(embedded)
    stripped: dict[SetName, set[str]] = {}
    judged = False
    for command, verdict in zip(commands, verdicts, strict=True):
        if verdict.forwarded and command.kind is not Kind.PASSTHROUGH:
            judged = True
            for set_name, names in verdict.stripped.items():
                stripped.setdefault(set_name, set()).update(names)
    ids = stripped.get(SetName.CUSTOMER_IDS, set())
    for spec in route.document_ids:
        if (spec.type in ids or not judged) and spec.pointer:
            document = edit(document, spec.pointer[:-1], _drop_member(spec.pointer[-1]), embedded)
    for container, customer in route.document_containers:
        found = stripped.get(SetName.CUSTOMER_PROPERTIES if customer else SetName.EVENT_PROPERTIES)
        if not judged and container.pointer:  # the member, whatever it holds
            drop = _drop_member(container.pointer[-1])
            document = edit(document, container.pointer[:-1], drop, embedded)
            continue
        if not judged:  # the document itself
            try:
                found = set(names_in(container, resolve(document, (), opened)))
            except Malformed:
                problem = "the body is no property container"
                raise Rejection(Reason.MALFORMED_PAYLOAD, problem) from None
        if found:
            change = without_names(container, frozenset(found))
            document = edit(document, container.pointer, change, embedded)
    return document
