"""The `braze` dialect (SPEC §3.4): the Braze SDKs' wire format, in front of a
collector that speaks it or of Braze itself (a first-party proxy).

Endpoints: `/api/v3/data/` (events and attributes, judged and rewritten) and
every other `/api/v3/…` path (companions: stream, token and the request's ids
checked, the body forwarded as received unless an id is stripped). The stream
ID is the API key (`X-Braze-Api-Key` or the body's `api_key`); the token is
`X-Braze-Auth-Signature`; both headers are forwarded unchanged (Braze verifies
them again). Decoding is `braze_decode`.

Answers follow what the Web SDK acts on (it reads 2xx bodies only): token
failures, `signature_required` and `ids_mismatch` are `200 {"auth_error": …}`
(the app's auth-failure callback runs, the data is re-queued), an unknown key is
`200 {"error": "invalid_api_key"}` (the SDK drops the batch), other rejections
keep their status with `{"error": code, "message": …}`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sidecar.body import Body
from sidecar.commands import Command, Verdict
from sidecar.dialects.base import Endpoint, Payload, RequestView
from sidecar.dialects.braze_decode import (
    ARRAYS,
    ATTRIBUTE_OPS,
    ID_TYPES,
    TEMPLATES,
    check_envelope,
    decode_data,
    request_ids,
    with_request,
)
from sidecar.errors import Reason, Rejection
from sidecar.jsoncodec import dump_json
from sidecar.reply import Reply, error_reply
from sidecar.rules import EdgeLimits, SetName, Stream, TokenPlace

API_KEY_HEADER = "X-Braze-Api-Key"
SIGNATURE_HEADER = "X-Braze-Auth-Signature"
REJECTED_HEADER = "X-Trackgate-Rejected"
_DATA = re.compile(r"^/api/v3/data/?$")
_COMPANION = re.compile(r"^/api/v3/[A-Za-z0-9_.~-]+(/[A-Za-z0-9_.~-]+)*/?$")
_JSON = {"Content-Type": "application/json"}
_ATTRIBUTE_FIELDS = frozenset({"user_id", "alias", "custom"})
_REQUEST_IDS = frozenset({"device_id", "user_id", "alias"})  # top level, respond_with
# Read per stripped item: an enum member read through its class costs a metaclass
# __getattr__ (EnumType's) each time; a module constant does not.
_CUSTOMER_IDS = SetName.CUSTOMER_IDS
_CUSTOMER_PROPERTIES = SetName.CUSTOMER_PROPERTIES
_EVENT_PROPERTIES = SetName.EVENT_PROPERTIES
# The SDK authentication error codes Braze's own backend answers (its SDK docs).
AUTH_ERROR_CODES: Mapping[Reason, int] = {
    Reason.TOKEN_EXP_MISSING: 10,
    Reason.TOKEN_MALFORMED: 20,
    Reason.TOKEN_BAD_SIGNATURE: 20,
    Reason.TOKEN_EXPIRED: 22,
    Reason.TOKEN_CLAIMS_INVALID: 23,
    Reason.TOKEN_LIFETIME_TOO_LONG: 23,
    Reason.TOKEN_ISSUER_INVALID: 23,
    Reason.TOKEN_AUDIENCE_INVALID: 23,
    Reason.TOKEN_ALGORITHM_MISMATCH: 24,
    Reason.KEYS_UNAVAILABLE: 25,
    Reason.SIGNATURE_REQUIRED: 26,
    Reason.TOKEN_UNKNOWN_KID: 27,
    Reason.IDS_MISMATCH: 28,
}


class Braze:
    """Braze SDK API (`/api/v3`)."""

    name = "braze"
    identity_headers: Mapping[str, str] = {}  # ids travel in the body only
    id_types: frozenset[str] | None = ID_TYPES
    anonymous_id = "device_id"
    templates = TEMPLATES
    option_schemas: Mapping[str, Mapping[str, Any]] = {}
    default_token_from: tuple[TokenPlace, ...] = (TokenPlace(header=SIGNATURE_HEADER),)
    # Braze verifies the key and the signature again when it is the upstream.
    forwarded_credentials = frozenset({SIGNATURE_HEADER.lower()})

    def compile_options(self, raw: Mapping[str, Any], path: str) -> None:
        """No options of its own."""
        return None

    def match(self, path: str) -> Endpoint | None:
        """`/api/v3/data/` (a batch), or a companion `/api/v3/…` endpoint."""
        if _DATA.match(path):
            return Endpoint(self, "data", None)
        if _COMPANION.match(path):
            return Endpoint(self, "companion", None)
        return None

    def stream_id(self, request: RequestView, endpoint: Endpoint, body: Body) -> str | None:
        """The API key: `X-Braze-Api-Key` and the body's `api_key`.
        Rejects: stream_id_conflict."""
        found = set(request.headers.getall(API_KEY_HEADER, ()))
        document = body.document_or_none()
        if isinstance(document, dict) and isinstance(document.get("api_key"), str):
            found.add(document["api_key"])
        found.discard("")
        if len(found) > 1:
            raise Rejection(
                Reason.STREAM_ID_CONFLICT,
                f"the request names more than one API key ({API_KEY_HEADER}, body api_key)",
            )
        return found.pop() if found else None

    def decode(self, endpoint: Endpoint, body: Body, stream: Stream, limits: EdgeLimits) -> Payload:
        """`/data/`: every events[] and attributes[] item; a companion: no commands
        (its JSON envelope is still checked). Rejects: malformed_payload,
        payload_too_large."""
        if endpoint.name == "companion":
            document = body.document_or_none() if body.raw else None
            if not isinstance(document, dict):
                return Payload(endpoint, document, (), ())
            check_envelope(document, limits.max_names_per_object)
            items, commands = with_request(document, request_ids(document), [], [])
            return Payload(endpoint, document, items, commands)  # its ids: judged
        document = body.document()
        check_envelope(document, limits.max_names_per_object)  # a dict from here on
        items, commands = decode_data(document, limits.max_names_per_object)
        return Payload(endpoint, document, items, commands)

    def encode(self, payload: Payload, verdicts: Sequence[Verdict]) -> bytes:
        """The forwarded items with stripped ids and attributes removed; an attribute
        operation whose attribute is stripped is removed; a stripped `device_id`
        leaves the request, and so do the request's own ids when stripped or when
        the request's command is rejected (`device_id` then stays only if a
        forwarded item was judged with it). A companion's body changes only so.
        Items are stripped in place (the document is the request's own); the
        envelope and its arrays are copied (`explain` encodes one request twice)."""
        out = dict(payload.document)
        commands, gone = payload.commands, set[str]()
        if payload.items and payload.items[0] is payload.document:  # the request's ids
            gone = _gone(commands[0], verdicts[0], commands[1:], verdicts[1:])
            verdicts = verdicts[1:]
        if payload.endpoint.name == "data":
            start = 0  # the items are events[] then attributes[], in order
            for array in ARRAYS:
                items = out.get(array)
                if isinstance(items, list):
                    end = start + len(items)
                    out[array] = _forwarded(items, verdicts[start:end], gone, array == "events")
                    start = end
        for id_type in gone:
            out.pop(id_type, None)
        if gone and isinstance(out.get("respond_with"), dict):
            out["respond_with"] = {k: v for k, v in out["respond_with"].items() if k not in gone}
        return dump_json(out)

    def answer_batch(self, verdicts: Sequence[Verdict], upstream: Reply | None) -> Reply:
        """The collector's answer, or — when nothing was left to forward — `200 {}`, or an
        `auth_error` when a command lacked its signature (the SDK then asks the app for
        one and re-queues the batch, instead of dropping it). `X-Trackgate-Rejected: N`."""
        rejected = {REJECTED_HEADER: str(sum(not v.forwarded for v in verdicts))}
        if upstream is not None:
            return Reply(upstream.status, upstream.body, {**upstream.headers, **rejected})
        for verdict in verdicts:
            if verdict.reason is not None and verdict.reason in AUTH_ERROR_CODES:
                reply = self.error_reply(Rejection(verdict.reason, verdict.message))
                return Reply(reply.status, reply.body, {**reply.headers, **rejected})
        return Reply(200, b"{}", {**_JSON, **rejected})

    def error_reply(self, rejection: Rejection) -> Reply:
        """What the Braze SDK acts on (SPEC §3.4): `auth_error`, `invalid_api_key`, or
        the standard status with `{"error", "message"}`."""
        reason, message = rejection.reason, rejection.message
        code = AUTH_ERROR_CODES.get(reason)
        if code is not None:
            body = {"auth_error": {"error_code": code, "reason": f"{reason.value}: {message}"}}
            return Reply(200, dump_json(body), _JSON)
        if reason is Reason.UNKNOWN_STREAM:
            return Reply(200, dump_json({"error": "invalid_api_key"}), _JSON)
        return error_reply(rejection, dump_json({"error": reason.value, "message": message}))

    def upstream_headers(self, stream: Stream, consumed: frozenset[str]) -> Mapping[str, str]:
        """Nothing to add: the API key travels as the SDK sent it."""
        return {}

    def default_path(self, document: Any) -> str:
        """`/api/v3/data/`."""
        return "/api/v3/data/"


def _gone(
    request: Command, verdict: Verdict, items: Sequence[Command], verdicts: Sequence[Verdict]
) -> set[str]:
    """The request-level ids that leave the request, given its own command's verdict."""
    if verdict.forwarded:
        return set(verdict.stripped.get(SetName.CUSTOMER_IDS, ()))
    judged = list(zip(items, verdicts, strict=True))
    return {  # each stays only where a forwarded item was judged with that very value
        id_type
        for id_type, value in request.customer_ids.items()
        if not any(v.forwarded and c.customer_ids.get(id_type) == value for c, v in judged)
    }


def _forwarded(
    items: list[Any], verdicts: Sequence[Verdict], gone: set[str], events: bool
) -> list[Any]:
    """The forwarded items of `events[]` (`events`) or `attributes[]`, stripped in
    place: not the rejected ones, nor an attribute operation (an event) on a
    stripped attribute. A request-level id type stripped from an item is added to
    `gone`: it leaves the request too."""
    kept: list[Any] = []
    append = kept.append
    for item, verdict in zip(items, verdicts, strict=True):
        if verdict.modified:
            stripped = verdict.stripped
            ids = stripped.get(_CUSTOMER_IDS)
            if ids:
                gone.update(_REQUEST_IDS.intersection(ids))
            if not verdict.forwarded or (
                events
                and type(item) is dict
                and item.get("name") in ATTRIBUTE_OPS
                and stripped.get(_CUSTOMER_PROPERTIES)
            ):
                continue
            _strip(item, stripped, events)
        elif not verdict.forwarded:
            continue
        append(item)
    return kept


def _strip(item: Any, stripped: Mapping[SetName, tuple[str, ...]], event: bool) -> None:
    """Removes the stripped ids (but `device_id`, the request's) and names from an
    event or an attributes item (whose keys may include `name`: an attribute)."""
    if type(item) is not dict:
        return
    ids = stripped.get(_CUSTOMER_IDS)
    if ids:
        _drop(item, [id_type for id_type in ids if id_type != "device_id"])
    if event:  # its properties are in data.p (ce) or data.pr (p)
        events = stripped.get(_EVENT_PROPERTIES)
        data = item.get("data")
        if events and type(data) is dict:
            _drop(data.get("pr" if item.get("name") == "p" else "p"), events)
        return
    customer = stripped.get(_CUSTOMER_PROPERTIES)
    if customer:
        _drop(item, [name for name in customer if name not in _ATTRIBUTE_FIELDS])
        _drop(item.get("custom"), customer)


def _drop(container: object, names: Iterable[str]) -> None:
    if type(container) is dict:
        for name in names:
            container.pop(name, None)
