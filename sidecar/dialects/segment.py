"""The `segment` dialect (SPEC §3.2): the Segment HTTP tracking API, as spoken by
Segment- and RudderStack-compatible collectors and their SDKs.

Endpoints: `/v1/{track,identify,page,screen,group,alias}`, the browser short
forms `/v1/{t,i,p,s,g,a}`, batches `/v1/{batch,b,import}` and the beacon form
`/beacon/v1/batch`. The stream ID is the write key (Basic username, body or
query `writeKey`). Mapping to commands:

- ids: `userId` → user_id, `anonymousId` → anonymous_id, `previousId` → previous_id
- event type: `event` of track; the message type of page, screen, group, alias
- `identify` is a customer update; its `traits` are customer properties
- `context.traits` of the message and of the batch are customer properties
- `properties`, and the `traits` of group, are event properties

Decoding (shapes, key spelling, the trait merge) is in `segment_decode`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sidecar.body import Body
from sidecar.commands import Kind, Verdict
from sidecar.credentials import basic_credentials
from sidecar.dialects.base import Endpoint, Payload, RequestView, Template
from sidecar.dialects.segment_decode import (
    DEFAULT_LIMITS,
    ID_FIELDS,
    MESSAGE_TYPES,
    Limits,
    decode_batch,
    decode_single,
)
from sidecar.errors import Reason, Rejection
from sidecar.jsoncodec import dump_json
from sidecar.reply import Reply, error_reply
from sidecar.rules import BEARER, EdgeLimits, SetName, Stream, TokenPlace
from sidecar.spelling import check_query

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
REJECTED_HEADER = "X-Trackgate-Rejected"
# Read per stripped message: an enum member read through its class costs a
# metaclass __getattr__ (EnumType's) each time; a module constant does not.
_CUSTOMER_IDS = SetName.CUSTOMER_IDS
_CUSTOMER_PROPERTIES = SetName.CUSTOMER_PROPERTIES
_EVENT_PROPERTIES = SetName.EVENT_PROPERTIES
_LIMITS_SCHEMA = {
    "description": "Segment streams only: Segment's size limits; larger messages or "
    "batches get 413.",
    "type": "object",
    "properties": {
        "max_message_bytes": {
            "description": "One message, alone or in a batch, in bytes; larger → 413.",
            "type": "integer",
            "minimum": 1,
            "default": 32 * 1024,
        },
        "max_batch_bytes": {
            "description": "One batch request in bytes; larger → 413.",
            "type": "integer",
            "minimum": 1,
            "default": 500 * 1024,
        },
    },
    "additionalProperties": False,
}
_BROWSING = [  # Segment's semantic browsing and app-lifecycle events
    "page",
    "screen",
    "Products Searched",
    "Product List Viewed",
    "Product Viewed",
    "Product Clicked",
    "Product Added",
    "Product Removed",
    "Cart Viewed",
    "Checkout Started",
    "Application Opened",
    "Application Backgrounded",
]
_CONSENT = "Segment Consent Preference Updated"
# SPEC §4's intent in Segment's names: the anonymous id allowed, the known user
# signed-only (also as alias's previous id), browsing allowed, orders, consent,
# group and alias signed-only, contact traits signed-only.
TEMPLATES: Mapping[str, Template] = {
    "public": {
        "customer_ids": {
            "default": "deny",
            "allow": ["anonymous_id"],
            "signed_only": ["user_id", "previous_id"],
        },
        "event_types": {
            "default": "deny",
            "allow": _BROWSING,
            "signed_only": ["Order Completed", _CONSENT, "group", "alias"],
        },
        "customer_properties": {
            "default": "deny",
            "allow": ["firstName", "locale"],
            "signed_only": ["email", "phone", "name", "lastName"],
        },
    },
    "private": {
        "customer_ids": {"default": "deny", "allow": ["anonymous_id", "user_id", "previous_id"]},
        "event_types": {
            "default": "deny",
            "allow": [*_BROWSING, "Order Completed", _CONSENT, "group", "alias"],
        },
        "customer_properties": {
            "default": "deny",
            "allow": ["email", "phone", "name", "firstName", "lastName", "locale"],
        },
    },
}


class Segment:
    """Segment HTTP tracking API."""

    name = "segment"
    identity_headers: Mapping[str, str] = {"AnonymousId": "anonymous_id"}  # RudderStack's SDKs
    id_types: frozenset[str] | None = frozenset(ID_FIELDS.values())
    anonymous_id = "anonymous_id"
    templates = TEMPLATES
    option_schemas: Mapping[str, Mapping[str, Any]] = {"limits": _LIMITS_SCHEMA}
    default_token_from: tuple[TokenPlace, ...] = (BEARER,)
    forwarded_credentials: frozenset[str] = frozenset()

    def compile_options(self, raw: Mapping[str, Any], path: str) -> Limits:
        """`limits: {max_message_bytes, max_batch_bytes}` (Segment's 32 KB and 500 KB)."""
        return Limits(**raw.get("limits", {}))

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

    def stream_id(self, request: RequestView, endpoint: Endpoint, body: Body) -> str | None:
        """The write key: Basic username, `writeKey` in the query, the body or its messages.
        Rejects: stream_id_conflict (also for a look-alike query key such as `writekey`)."""
        check_query(request.query, "writeKey")
        found = set(request.query.getall("writeKey", ()))
        basic = basic_credentials(request.headers.get("Authorization", ""))
        if basic is not None and basic.user:
            found.add(basic.user)
        document = body.document_or_none()
        if isinstance(document, dict):
            found.update(_write_keys(document, endpoint))
        if len(found) > 1:
            raise Rejection(
                Reason.STREAM_ID_CONFLICT,
                "the request names more than one write key (Basic auth, query, body)",
            )
        return found.pop() if found else None

    def decode(self, endpoint: Endpoint, body: Body, stream: Stream, limits: EdgeLimits) -> Payload:
        """One message, or a batch whose bad messages are marked malformed.
        Rejects: malformed_payload (also a misspelled key), payload_too_large (the
        stream's limits, `max_names_per_object`)."""
        options = stream.options if isinstance(stream.options, Limits) else DEFAULT_LIMITS
        if endpoint.kind is not None:
            return decode_single(endpoint, body, options, limits.max_names_per_object)
        return decode_batch(endpoint, body, options, limits.max_names_per_object)

    def encode(self, payload: Payload, verdicts: Sequence[Verdict]) -> bytes:
        """The forwarded messages with stripped ids, traits and properties removed."""
        document = payload.document
        if payload.is_single:
            _strip(document, payload.endpoint.name, verdicts[0].stripped)
            return dump_json(document)
        batch: list[Any] = []
        append, shared = batch.append, set[str]()
        for item, verdict in zip(payload.items, verdicts, strict=True):
            if verdict.forwarded:
                if verdict.modified:
                    customer = _strip(item, item["type"], verdict.stripped)
                    if customer:
                        shared.update(customer)
                append(item)
        if shared:
            _drop_traits(document.get("context"), shared)
        return dump_json({**document, "batch": batch})

    def answer_batch(self, verdicts: Sequence[Verdict], upstream: Reply | None) -> Reply:
        """The collector's answer (or the sidecar's own) with `X-Trackgate-Rejected: N`."""
        rejected = str(sum(not v.forwarded for v in verdicts))
        if upstream is None:
            headers = {"Content-Type": "application/json", REJECTED_HEADER: rejected}
            return Reply(200, dump_json({"success": True}), headers)
        return Reply(
            upstream.status, upstream.body, {**upstream.headers, REJECTED_HEADER: rejected}
        )

    def error_reply(self, rejection: Rejection) -> Reply:
        """`{"success": false, "code": …, "message": …}` (what analytics-python parses)."""
        reason, message = rejection.reason, rejection.message
        return error_reply(
            rejection, dump_json({"success": False, "code": reason.value, "message": message})
        )

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
        return f"/v1/{message_type if message_type in MESSAGE_TYPES else 'track'}"


def _strip(
    message: dict[str, Any], message_type: str, stripped: Mapping[SetName, tuple[str, ...]]
) -> tuple[str, ...] | None:
    """Removes the stripped ids, traits and properties from `message`, in place (the
    document is the request's own, `Dialect.encode`); returns the stripped traits."""
    ids = stripped.get(_CUSTOMER_IDS)
    if ids:
        for field, id_type in ID_FIELDS.items():
            if id_type in ids:
                message.pop(field, None)
    customer = stripped.get(_CUSTOMER_PROPERTIES)
    if customer:
        _drop_traits(message.get("context"), customer)
        if message_type == "identify":
            _drop(message.get("traits"), customer)
    events = stripped.get(_EVENT_PROPERTIES)
    if events:
        properties = message.get("properties")
        if type(properties) is dict:  # `_drop`, inline: nearly every stripped message
            for name in events:
                properties.pop(name, None)
        if message_type == "group":
            _drop(message.get("traits"), events)
    return customer


def _drop_traits(context: object, names: Iterable[str]) -> None:
    if type(context) is dict:
        _drop(context.get("traits"), names)


def _drop(container: object, names: Iterable[str]) -> None:
    if type(container) is dict:
        for name in names:
            container.pop(name, None)


def _write_keys(document: Mapping[str, Any], endpoint: Endpoint) -> set[str]:
    keys = {document["writeKey"]} if isinstance(document.get("writeKey"), str) else set()
    batch = document.get("batch")
    if endpoint.is_batch and type(batch) is list:
        for message in batch:
            if type(message) is dict:
                key = message.get("writeKey")
                if type(key) is str:
                    keys.add(key)
    keys.discard("")
    return keys
