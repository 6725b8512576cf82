"""The `bloomreach` dialect (SPEC §3.1).

Endpoints: `/track/u/v1/{customers/events,customers,batch}?stream_id=ID` and
the legacy `/track/v2/projects/{ID}/…`. In events `properties` are event
properties; in customer updates they are customer properties. Batches hold
up to 50 commands; `system/time` passes through untouched. The objects it
interprets, and their field names, are declared for the key-spelling guard
(`sidecar.spelling`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sidecar.body import Body
from sidecar.commands import Command, Kind, Verdict
from sidecar.dialects.base import Endpoint, Payload, RequestView
from sidecar.dialects.bloomreach_templates import TEMPLATES
from sidecar.errors import Reason, Rejection
from sidecar.jsoncodec import dump_json, parse_json
from sidecar.reply import Reply, error_reply
from sidecar.rules import BEARER, EdgeLimits, SetName, Stream, TokenPlace
from sidecar.spelling import NAMES, Fields, KeyProblem, check_query

MAX_BATCH_COMMANDS = 50
_ENDPOINTS: dict[str, Kind | None] = {
    "customers/events": Kind.EVENT,
    "customers": Kind.CUSTOMER,
    "batch": None,
}
_BATCH_NAMES = {
    "customers/events": Kind.EVENT,
    "customers": Kind.CUSTOMER,
    "system/time": Kind.PASSTHROUGH,
}
# Enum members as module constants: on CPython 3.11 `Kind.EVENT` is a metaclass
# attribute lookup (~0.3 µs), a module global ~0.02 µs; the batch path reads them per command.
_CUSTOMER, _PASSTHROUGH_KIND = Kind.CUSTOMER, Kind.PASSTHROUGH
_CUSTOMER_IDS = SetName.CUSTOMER_IDS
_PASSTHROUGH = Command(Kind.PASSTHROUGH)
_NOT_A_COMMAND = Command(
    Kind.EVENT, malformed=f"a batch command needs a name of {', '.join(_BATCH_NAMES)} and data"
)
# The objects this dialect interprets and the field names it reads in each; the
# id and property containers are NAMES (SPEC §3.3, no parser differential).
_ENVELOPE = Fields("commands")
_ITEM = Fields("name", "data")
_DATA = Fields("customer_ids", "event_type", "timestamp", "properties")
_ITEM_SAFE, _DATA_SAFE, _NAMES_SAFE = _ITEM.safe, _DATA.safe, NAMES.safe  # for the hot path
# A Command built from all its fields without NamedTuple's generated __new__ (half
# the cost; the well-formed path makes one per command of every batch).
_new_command = tuple.__new__
_PROPERTIES = {  # which property set a command's `properties` holds
    Kind.EVENT: SetName.EVENT_PROPERTIES,
    Kind.CUSTOMER: SetName.CUSTOMER_PROPERTIES,
    Kind.PASSTHROUGH: SetName.EVENT_PROPERTIES,
}
_STREAM_PATH = re.compile(r"^/track/u/v1/(customers/events|customers|batch)$")
_PROJECT_PATH = re.compile(r"^/track/v2/projects/([^/]+)/(customers/events|customers|batch)$")


class Bloomreach:
    """Bloomreach Engagement tracking API."""

    name = "bloomreach"
    identity_headers: Mapping[str, str] = {}  # its SDKs carry ids in the body only
    id_types: frozenset[str] | None = (
        None  # `customer_ids` is open: any hard or soft id the project defines
    )
    anonymous_id = "cookie"
    templates = TEMPLATES
    option_schemas: Mapping[str, Mapping[str, Any]] = {}
    default_token_from: tuple[TokenPlace, ...] = (BEARER,)
    forwarded_credentials: frozenset[str] = frozenset()

    def compile_options(self, raw: Mapping[str, Any], path: str) -> None:
        """No options of its own."""

    def match(self, path: str) -> Endpoint | None:
        """Stream-mode and legacy project paths."""
        if found := _STREAM_PATH.match(path):
            return Endpoint(self, found[1], _ENDPOINTS[found[1]])
        if found := _PROJECT_PATH.match(path):
            return Endpoint(self, found[2], _ENDPOINTS[found[2]], path_stream_id=found[1])
        return None

    def stream_id(self, request: RequestView, endpoint: Endpoint, body: Body) -> str | None:
        """`stream_id` query parameter, `X-Stream-Id` header, or the project path segment.
        Rejects: stream_id_conflict (also for a look-alike query key such as `Stream_ID`)."""
        check_query(request.query, "stream_id")
        found = {
            *request.query.getall("stream_id", ()),
            *request.headers.getall("X-Stream-Id", ()),
        }
        if endpoint.path_stream_id is not None:
            found.add(endpoint.path_stream_id)
        if len(found) > 1:
            raise Rejection(
                Reason.STREAM_ID_CONFLICT,
                "the request names more than one stream ID (query, X-Stream-Id header, path)",
            )
        return found.pop() if found else None

    def decode(self, endpoint: Endpoint, body: Body, stream: Stream, limits: EdgeLimits) -> Payload:
        """A single command, or a batch envelope whose bad commands are marked malformed.
        Rejects: malformed_payload (also a misspelled key), payload_too_large."""
        document = body.document()
        names = limits.max_names_per_object
        if endpoint.kind is not None:
            command = decode_command(endpoint.kind, document, names)
            if command.malformed:
                raise Rejection(Reason.MALFORMED_PAYLOAD, command.malformed)
            return Payload(endpoint, document, (document,), (command,))
        items = _batch_items(document)
        commands = []
        for index, item in enumerate(items):
            try:
                commands.append(_decode_item(item, names))
            except KeyProblem as problem:
                raise problem.within(f"commands[{index}]") from None
        return Payload(endpoint, document, items, tuple(commands))

    def encode(self, payload: Payload, verdicts: Sequence[Verdict]) -> bytes:
        """The forwarded commands with their stripped names removed (in place: the
        document is the request's own, read by nothing after `encode`)."""
        if payload.is_single:
            _strip(payload.commands[0].kind, payload.document, verdicts[0])
            return dump_json(payload.document)
        kept = []
        for item, command, verdict in zip(payload.items, payload.commands, verdicts, strict=True):
            if verdict.forwarded:
                if verdict.modified:
                    _strip(command.kind, item["data"], verdict)
                kept.append(item)
        return dump_json({**payload.document, "commands": kept})

    def answer_batch(self, verdicts: Sequence[Verdict], upstream: Reply | None) -> Reply:
        """The collector's `results` with the sidecar's own result at each rejected position."""
        if upstream is None:
            own = [_own_result(v) for v in verdicts]
            return Reply(200, dump_json({"success": True, "results": own}))
        forwarded = sum(v.forwarded for v in verdicts)
        collected = _results(upstream, forwarded)
        if collected is None:
            rejected = str(len(verdicts) - forwarded)
            return Reply(
                upstream.status,
                upstream.body,
                {**upstream.headers, "X-Trackgate-Rejected": rejected},
            )
        document, results = collected
        merged = [next(results) if v.forwarded else _own_result(v) for v in verdicts]
        return Reply(upstream.status, dump_json({**document, "results": merged}), upstream.headers)

    def error_reply(self, rejection: Rejection) -> Reply:
        """`{"success": false, "code": …, "errors": […]}`."""
        reason, message = rejection.reason, rejection.message
        return error_reply(
            rejection, dump_json({"success": False, "code": reason.value, "errors": [message]})
        )

    def upstream_headers(self, stream: Stream, consumed: frozenset[str]) -> Mapping[str, str]:
        """None: the stream ID travels in the URL, which is forwarded unchanged."""
        return {}

    def default_path(self, document: Any) -> str:
        """The batch endpoint for `{"commands": …}`, the events endpoint otherwise."""
        if isinstance(document, dict) and "commands" in document:
            return "/track/u/v1/batch"
        return "/track/u/v1/customers/events"


def decode_command(kind: Kind, data: object, max_names: int) -> Command:
    """One command's `data` object; a malformed one carries the reason in `malformed`.
    The well-formed case is checked inline (it is every command of every batch);
    `_shape_problem` says what is wrong otherwise. Rejects (KeyProblem):
    malformed_payload for a misspelled key, payload_too_large."""
    if kind is _PASSTHROUGH_KIND:
        return _PASSTHROUGH
    if type(data) is dict:
        ids, properties = data.get("customer_ids"), data.get("properties")
        if type(ids) is dict and (properties is None or type(properties) is dict):
            names = tuple(properties) if properties else ()
            # The spelling guard's fast path, inline: three C-level subset tests
            # (each container within the limit if both are); else the full check.
            if not (
                _DATA_SAFE.issuperset(data)
                and _NAMES_SAFE.issuperset(ids)
                and _NAMES_SAFE.issuperset(names)
                and len(ids) + len(names) <= max_names
            ):
                _check_keys(data, max_names)
            for value in ids.values():
                if type(value) is not str:
                    return Command(kind, malformed="customer_ids values must be strings")
            if kind is _CUSTOMER:
                return _new_command(Command, (kind, ids, None, names, (), None))
            event_type, timestamp = data.get("event_type"), data.get("timestamp")
            if (
                type(event_type) is str
                and event_type
                and (timestamp is None or type(timestamp) is float or type(timestamp) is int)
            ):
                return _new_command(Command, (kind, ids, event_type, (), names, None))
    return Command(kind, malformed=_shape_problem(kind, data))


def _check_keys(data: dict[str, Any], max_names: int) -> None:
    """The key-spelling guard over a command's data and its id and property
    containers. Rejects (KeyProblem): malformed_payload, payload_too_large."""
    _DATA.check(data, "")
    for field in ("customer_ids", "properties"):
        names = data.get(field)
        if type(names) is dict:
            NAMES.check_names(names, field, max_names)


def _shape_problem(kind: Kind, data: object) -> str:
    if type(data) is not dict:
        return "a command must be a JSON object"
    ids = data.get("customer_ids")
    if type(ids) is not dict:
        return "customer_ids must be an object"
    for value in ids.values():
        if type(value) is not str:
            return "customer_ids values must be strings"
    if kind is Kind.EVENT:
        event_type = data.get("event_type")
        if type(event_type) is not str or not event_type:
            return "event_type must be a non-empty string"
        timestamp = data.get("timestamp")
        if timestamp is not None and (type(timestamp) is not int and type(timestamp) is not float):
            return "timestamp must be a number or null"
    return "properties must be an object or null"


def _batch_items(document: object) -> list[Any]:
    if not isinstance(document, dict) or not isinstance(document.get("commands"), list):
        raise Rejection(Reason.MALFORMED_PAYLOAD, 'a batch is {"commands": [...]}')
    _ENVELOPE.check(document, "")
    items: list[Any] = document["commands"]
    if len(items) > MAX_BATCH_COMMANDS:
        raise Rejection(
            Reason.MALFORMED_PAYLOAD,
            f"a batch holds at most {MAX_BATCH_COMMANDS} commands, got {len(items)}",
        )
    return items


def _decode_item(item: object, max_names: int) -> Command:
    if type(item) is not dict:
        return _NOT_A_COMMAND
    if not _ITEM_SAFE.issuperset(item):
        _ITEM.check(item, "")
    name = item.get("name")
    kind = _BATCH_NAMES.get(name) if type(name) is str else None
    if kind is None:
        return _NOT_A_COMMAND
    if kind is not _PASSTHROUGH_KIND and "data" not in item:
        return Command(kind, malformed="a batch command needs a data object")
    try:
        return decode_command(kind, item.get("data"), max_names)
    except KeyProblem as problem:
        raise problem.within("data") from None


def _strip(kind: Kind, data: dict[str, Any], verdict: Verdict) -> None:
    """Removes the verdict's stripped ids and properties from a command's `data`."""
    stripped = verdict.stripped
    ids = stripped.get(_CUSTOMER_IDS)
    if ids:
        container = data["customer_ids"]
        for name in ids:
            container.pop(name, None)
    names = stripped.get(_PROPERTIES[kind])
    if names:
        container = data["properties"]
        for name in names:
            container.pop(name, None)


def _own_result(verdict: Verdict) -> dict[str, Any]:
    code = verdict.reason.value if verdict.reason else ""
    return {"success": False, "code": code, "errors": [verdict.message]}


def _results(upstream: Reply, forwarded: int) -> tuple[dict[str, Any], Iterator[Any]] | None:
    """The collector's document and an iterator over its results, when they line up."""
    if not 200 <= upstream.status < 300:
        return None
    try:
        document = parse_json(upstream.body)
    except Rejection:
        return None
    if not isinstance(document, dict):
        return None
    results = document.get("results")
    if not isinstance(results, list) or len(results) != forwarded:
        return None
    return document, iter(results)
