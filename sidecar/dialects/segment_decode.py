"""How a `segment` body becomes commands (SPEC §3.2, §3.3): the shape of messages
and batches, the key-spelling guard over every object the dialect reads, and
the customer properties of a message, which include the batch's
`context.traits` (a collector merges the batch context into each message's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.body import Body
from sidecar.commands import Command, Kind
from sidecar.dialects.base import Endpoint, Payload
from sidecar.errors import Reason, Rejection
from sidecar.jsoncodec import dump_json
from sidecar.spelling import NAMES, Fields, KeyProblem

ID_FIELDS = {"userId": "user_id", "anonymousId": "anonymous_id", "previousId": "previous_id"}
MESSAGE_TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})
_NOT_A_MESSAGE = Command(Kind.EVENT, malformed="a message must be a JSON object")
# The objects this dialect interprets and the field names it reads in each; traits,
# properties and context.traits are NAMES (SPEC §3.3, no parser differential).
_BATCH = Fields("batch", "context", "writeKey")
_MESSAGE = Fields("type", *ID_FIELDS, "event", "properties", "traits", "context", "writeKey")
_CONTEXT = Fields("traits")


@dataclass(frozen=True, slots=True)
class Limits:
    """A segment stream's size limits (its `limits` option; Segment's own defaults)."""

    max_message_bytes: int = 32 * 1024
    max_batch_bytes: int = 500 * 1024


DEFAULT_LIMITS = Limits()


def decode_single(endpoint: Endpoint, body: Body, limits: Limits, max_names: int) -> Payload:
    """A single message. Rejects: malformed_payload, payload_too_large."""
    _check_size(len(body.raw), limits.max_message_bytes, "message")
    document = body.document()
    if not isinstance(document, dict):
        raise Rejection(Reason.MALFORMED_PAYLOAD, "a message must be a JSON object")
    if document.get("type", endpoint.name) != endpoint.name:
        raise Rejection(
            Reason.MALFORMED_PAYLOAD, f"the message's type is not {endpoint.name!r}, its endpoint"
        )
    command = decode_message(document, endpoint.name, (), max_names)
    if command.malformed:
        raise Rejection(Reason.MALFORMED_PAYLOAD, command.malformed)
    return Payload(endpoint, document, (document,), (command,))


def decode_batch(endpoint: Endpoint, body: Body, limits: Limits, max_names: int) -> Payload:
    """A batch; a malformed message is marked so, a misspelled key anywhere refuses
    the request. Rejects: malformed_payload, payload_too_large."""
    _check_size(len(body.raw), limits.max_batch_bytes, "batch")
    document = body.document()
    if not isinstance(document, dict) or not isinstance(document.get("batch"), list):
        raise Rejection(Reason.MALFORMED_PAYLOAD, 'a batch is {"batch": [...]}')
    shared = _batch_traits(document, max_names)
    items: list[Any] = document["batch"]
    if len(body.raw) > limits.max_message_bytes:  # only then can one message be too large
        for item in items:
            _check_size(len(dump_json(item)), limits.max_message_bytes, "message")
    commands = []
    for index, item in enumerate(items):
        try:
            commands.append(
                decode_message(item, item.get("type"), shared, max_names)
                if isinstance(item, dict)
                else _NOT_A_MESSAGE
            )
        except KeyProblem as problem:
            raise problem.within(f"batch[{index}]") from None
    return Payload(endpoint, document, items, commands)


def _batch_traits(document: Mapping[str, Any], max_names: int) -> tuple[str, ...]:
    """The trait names of the batch `context`, which apply to every message.
    Rejects: malformed_payload, payload_too_large."""
    _BATCH.check(document, "")
    context = document.get("context")
    if context is None:
        return ()
    if not isinstance(context, dict):
        raise Rejection(Reason.MALFORMED_PAYLOAD, "the batch context must be an object")
    _CONTEXT.check(context, "context")
    traits = context.get("traits")
    if traits is None:
        return ()
    if not isinstance(traits, dict):
        raise Rejection(
            Reason.MALFORMED_PAYLOAD, "the batch context.traits must be an object or null"
        )
    NAMES.check_names(traits, "context.traits", max_names)
    return tuple(traits)


def decode_message(
    message: Mapping[str, Any], message_type: object, batch_traits: Sequence[str], max_names: int
) -> Command:
    """One message; a malformed one carries the reason in `malformed`. Its customer
    properties are the names of its own traits (identify), its `context.traits` and
    the batch's `context.traits` (`batch_traits`): a collector merges the two
    contexts, so both levels are judged. Rejects (KeyProblem): a misspelled key
    (malformed_payload), too many names (payload_too_large)."""
    _check_keys(message, max_names)
    if type(message_type) is not str or message_type not in MESSAGE_TYPES:
        return Command(
            Kind.EVENT, malformed=f"a message needs a type of {', '.join(sorted(MESSAGE_TYPES))}"
        )
    problem = _shape_problem(message, message_type)
    if problem:
        return Command(Kind.EVENT, malformed=problem)
    ids = {
        id_type: message[field]
        for field, id_type in ID_FIELDS.items()
        if message.get(field) is not None
    }
    customer = [*((message.get("context") or {}).get("traits") or ()), *batch_traits]
    events = list(message.get("properties") or ())
    if message_type == "identify":
        customer = [*(message.get("traits") or ()), *customer]
    elif message_type == "group":
        events.extend(message.get("traits") or ())
    return Command(
        Kind.CUSTOMER if message_type == "identify" else Kind.EVENT,
        customer_ids=ids,
        event_type=None if message_type == "identify" else _event_type(message, message_type),
        customer_properties=tuple(dict.fromkeys(customer)),
        event_properties=tuple(dict.fromkeys(events)),
    )


def _check_keys(message: Mapping[str, Any], max_names: int) -> None:
    """The key-spelling guard over the objects of a message this dialect reads."""
    _MESSAGE.check(message, "")
    for field in ("traits", "properties"):
        names = message.get(field)
        if type(names) is dict:
            NAMES.check_names(names, field, max_names)
    context = message.get("context")
    if type(context) is dict:
        _CONTEXT.check(context, "context")
        traits = context.get("traits")
        if type(traits) is dict:
            NAMES.check_names(traits, "context.traits", max_names)


def _shape_problem(message: Mapping[str, Any], message_type: object) -> str | None:
    for field in ID_FIELDS:
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


def _check_size(size: int, limit: int, what: str) -> None:
    if size > limit:
        raise Rejection(Reason.PAYLOAD_TOO_LARGE, f"the {what} is larger than {limit} bytes")
