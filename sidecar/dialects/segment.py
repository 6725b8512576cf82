"""The `segment` dialect (SPEC §3.2): the Segment HTTP tracking API, as spoken by
Segment- and RudderStack-compatible collectors and their SDKs.

Endpoints: `/v1/{track,identify,page,screen,group,alias}`, the browser short
forms `/v1/{t,i,p,s,g,a}`, batches `/v1/{batch,b,import}` and the beacon form
`/beacon/v1/batch`. The stream ID is the write key (Basic username, body or
query `writeKey`). Mapping to commands:

- ids: `userId` → user_id, `anonymousId` → anonymous_id, `previousId` → previous_id
- event type: `event` of track; the message type of page, screen, group, alias
- `identify` is a customer update; its `traits` are customer properties
- `context.traits` (message context over batch context) are customer properties
- `properties`, and the `traits` of group, are event properties
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from sidecar.body import Body, dump_json
from sidecar.commands import Command, Kind, Verdict
from sidecar.dialects.base import Endpoint, Payload, Reply
from sidecar.errors import Reason, Rejection
from sidecar.rules import SetName, Stream

_SHORT_FORMS = {
    "t": "track",
    "i": "identify",
    "p": "page",
    "s": "screen",
    "g": "group",
    "a": "alias",
}
_SINGLE = re.compile(r"^/v1/(track|identify|page|screen|group|alias|[tipsga])$")
_BATCH_PATHS = {"/v1/batch": "batch", "/v1/b": "batch", "/v1/import": "import"}
_BEACON_PATH = "/beacon/v1/batch"
_ID_FIELDS = {"userId": "user_id", "anonymousId": "anonymous_id", "previousId": "previous_id"}
_MESSAGE_TYPES = frozenset(_SHORT_FORMS.values())
REJECTED_HEADER = "X-Trackgate-Rejected"


class Segment:
    """Segment HTTP tracking API."""

    name = "segment"
    identity_headers: Mapping[str, str] = {"AnonymousId": "anonymous_id"}  # RudderStack's SDKs

    def match(self, path: str) -> Endpoint | None:
        """Single-message, batch and beacon paths; the endpoint name is the message type."""
        if found := _SINGLE.match(path):
            message_type = _SHORT_FORMS.get(found[1], found[1])
            kind = Kind.CUSTOMER if message_type == "identify" else Kind.EVENT
            return Endpoint(self, message_type, kind)
        if path == _BEACON_PATH:
            return Endpoint(self, "beacon", None)
        if path in _BATCH_PATHS:
            return Endpoint(self, _BATCH_PATHS[path], None)
        return None

    def stream_id(self, request: web.BaseRequest, endpoint: Endpoint, body: Body) -> str | None:
        """The write key: Basic username, `writeKey` in the query, the body or its messages."""
        found = set(request.query.getall("writeKey", ()))
        username = _basic_username(request.headers.get("Authorization", ""))
        if username:
            found.add(username)
        document = body.document_or_none()
        if isinstance(document, dict):
            found.update(_write_keys(document, endpoint))
        if len(found) > 1:
            raise Rejection(
                Reason.STREAM_ID_CONFLICT,
                "the request names more than one write key (Basic auth, query, body)",
            )
        return found.pop() if found else None

    def decode(self, endpoint: Endpoint, body: Body, stream: Stream) -> Payload:
        """One message, or a batch whose bad messages are marked malformed.
        Rejects: malformed_payload, payload_too_large (the stream's limits)."""
        limits = stream.limits
        if endpoint.kind is not None:
            _check_size(len(body.raw), limits.max_message_bytes, "message")
            document = body.document()
            if not isinstance(document, dict):
                raise Rejection(Reason.MALFORMED_PAYLOAD, "a message must be a JSON object")
            if document.get("type", endpoint.name) != endpoint.name:
                raise Rejection(
                    Reason.MALFORMED_PAYLOAD,
                    f"a {document.get('type')!r} message was sent to the {endpoint.name} endpoint",
                )
            command = decode_message(document, endpoint.name, None)
            if command.malformed:
                raise Rejection(Reason.MALFORMED_PAYLOAD, command.malformed)
            return Payload(endpoint, document, (document,), (command,))
        _check_size(len(body.raw), limits.max_batch_bytes, "batch")
        document = body.document()
        if not isinstance(document, dict) or not isinstance(document.get("batch"), list):
            raise Rejection(Reason.MALFORMED_PAYLOAD, 'a batch is {"batch": [...]}')
        batch_context = document.get("context")
        if not isinstance(batch_context, dict | None):
            raise Rejection(Reason.MALFORMED_PAYLOAD, "the batch context must be an object")
        items: list[Any] = document["batch"]
        if len(body.raw) > limits.max_message_bytes:  # only then can one message be too large
            for item in items:
                _check_size(len(dump_json(item)), limits.max_message_bytes, "message")
        commands = [
            decode_message(item, item.get("type"), batch_context)
            if isinstance(item, dict)
            else Command(Kind.EVENT, malformed="a message must be a JSON object")
            for item in items
        ]
        return Payload(endpoint, document, items, commands)

    def encode(self, payload: Payload, verdicts: Sequence[Verdict]) -> bytes:
        """The forwarded messages with stripped ids, traits and properties removed."""
        document = payload.document
        if payload.is_single:
            return dump_json(_strip(document, payload.endpoint.name, verdicts[0]))
        batch = [
            _strip(item, item["type"], verdict) if verdict.modified else item
            for item, verdict in zip(payload.items, verdicts, strict=True)
            if verdict.forwarded
        ]
        out = {**document, "batch": batch}
        shared = {
            name
            for verdict in verdicts
            if verdict.forwarded
            for name in verdict.stripped.get(SetName.CUSTOMER_PROPERTIES, ())
        }
        if shared and isinstance(document.get("context"), dict):
            out["context"] = _without_traits(document["context"], shared)
        return dump_json(out)

    def answer_batch(
        self, payload: Payload, verdicts: Sequence[Verdict], upstream: Reply | None
    ) -> Reply:
        """The collector's answer (or the sidecar's own) with `X-Trackgate-Rejected: N`."""
        rejected = str(sum(not v.forwarded for v in verdicts))
        if upstream is None:
            headers = {"Content-Type": "application/json", REJECTED_HEADER: rejected}
            return Reply(200, dump_json({"success": True}), headers)
        return Reply(
            upstream.status, upstream.body, {**upstream.headers, REJECTED_HEADER: rejected}
        )

    def error_body(self, reason: Reason, message: str) -> bytes:
        """`{"success": false, "code": …, "message": …}` (what analytics-python parses)."""
        return dump_json({"success": False, "code": reason.value, "message": message})

    def upstream_headers(self, stream: Stream, consumed: frozenset[str]) -> Mapping[str, str]:
        """When the client's Authorization was consumed (a secret or a JWT), the collector
        still gets the write key as Segment sends it: `Basic base64(writeKey:)`."""
        if "authorization" not in consumed:
            return {}
        return {"Authorization": "Basic " + base64.b64encode(f"{stream.id}:".encode()).decode()}

    def default_path(self, document: Any) -> str:
        """`/v1/batch` for `{"batch": …}`, else `/v1/<type>`."""
        if isinstance(document, dict) and "batch" in document:
            return "/v1/batch"
        message_type = document.get("type") if isinstance(document, dict) else None
        return f"/v1/{message_type if message_type in _MESSAGE_TYPES else 'track'}"


def decode_message(
    message: Mapping[str, Any], message_type: object, batch_context: Mapping[str, Any] | None
) -> Command:
    """One message; a malformed one carries the reason in `malformed`."""
    if message_type not in _MESSAGE_TYPES:
        return Command(
            Kind.EVENT, malformed=f"a message needs a type of {', '.join(sorted(_MESSAGE_TYPES))}"
        )
    problem = _shape_problem(message, message_type)
    if problem:
        return Command(Kind.EVENT, malformed=problem)
    ids = {
        id_type: message[field]
        for field, id_type in _ID_FIELDS.items()
        if message.get(field) is not None
    }
    context = {**(batch_context or {}), **(message.get("context") or {})}
    customer = list(context.get("traits") or ())
    events = list(message.get("properties") or ())
    if message_type == "identify":
        customer = [*(message.get("traits") or ()), *customer]
    elif message_type == "group":
        events.extend(message.get("traits") or ())
    return Command(
        Kind.CUSTOMER if message_type == "identify" else Kind.EVENT,
        customer_ids=ids,
        event_type=None if message_type == "identify" else _event_type(message, str(message_type)),
        customer_properties=tuple(dict.fromkeys(customer)),
        event_properties=tuple(dict.fromkeys(events)),
    )


def _shape_problem(message: Mapping[str, Any], message_type: object) -> str | None:
    for field in _ID_FIELDS:
        if not isinstance(message.get(field), str | None):
            return f"{field} must be a string or null"
    for field in ("context", "traits", "properties"):
        if not isinstance(message.get(field), dict | None):
            return f"{field} must be an object or null"
    context = message.get("context") or {}
    if not isinstance(context.get("traits"), dict | None):
        return "context.traits must be an object or null"
    if message_type == "track" and (
        not isinstance(message.get("event"), str) or not message["event"]
    ):
        return "a track message needs a non-empty event"
    return None


def _event_type(message: Mapping[str, Any], message_type: str) -> str:
    return str(message["event"]) if message_type == "track" else message_type


def _strip(message: Mapping[str, Any], message_type: str, verdict: Verdict) -> dict[str, Any]:
    out = dict(message)
    ids = verdict.stripped.get(SetName.CUSTOMER_IDS, ())
    for field, id_type in _ID_FIELDS.items():
        if id_type in ids:
            out.pop(field, None)
    customer = set(verdict.stripped.get(SetName.CUSTOMER_PROPERTIES, ()))
    events = set(verdict.stripped.get(SetName.EVENT_PROPERTIES, ()))
    if customer and isinstance(message.get("context"), dict):
        out["context"] = _without_traits(message["context"], customer)
    if customer and message_type == "identify" and isinstance(message.get("traits"), dict):
        out["traits"] = _without(message["traits"], customer)
    if events and isinstance(message.get("properties"), dict):
        out["properties"] = _without(message["properties"], events)
    if events and message_type == "group" and isinstance(message.get("traits"), dict):
        out["traits"] = _without(message["traits"], events)
    return out


def _without_traits(context: Mapping[str, Any], names: set[str]) -> dict[str, Any]:
    if not isinstance(context.get("traits"), dict):
        return dict(context)
    return {**context, "traits": _without(context["traits"], names)}


def _without(mapping: Mapping[str, Any], names: set[str]) -> dict[str, Any]:
    return {key: value for key, value in mapping.items() if key not in names}


def _write_keys(document: Mapping[str, Any], endpoint: Endpoint) -> set[str]:
    keys = {document["writeKey"]} if isinstance(document.get("writeKey"), str) else set()
    if endpoint.is_batch and isinstance(document.get("batch"), list):
        keys.update(
            m["writeKey"]
            for m in document["batch"]
            if isinstance(m, dict) and isinstance(m.get("writeKey"), str)
        )
    keys.discard("")
    return keys


def _basic_username(authorization: str) -> str | None:
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
    except (binascii.Error, ValueError):
        return None
    return decoded.partition(":")[0] or None


def _check_size(size: int, limit: int, what: str) -> None:
    if size > limit:
        raise Rejection(Reason.PAYLOAD_TOO_LARGE, f"the {what} is larger than {limit} bytes")
