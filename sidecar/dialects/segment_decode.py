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
# (unrolled in `_plain_event`, the well-formed message's fast path: change both)
MESSAGE_TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})
_NOT_A_MESSAGE = Command(Kind.EVENT, malformed="a message must be a JSON object")
# The objects this dialect interprets and the field names it reads in each; traits,
# properties and context.traits are NAMES (SPEC §3.3, no parser differential).
_BATCH = Fields("batch", "context", "writeKey")
_MESSAGE = Fields("type", *ID_FIELDS, "event", "properties", "traits", "context", "writeKey")
_CONTEXT = Fields("traits")
_MESSAGE_SAFE, _CONTEXT_SAFE, _NAMES_SAFE = _MESSAGE.safe, _CONTEXT.safe, NAMES.safe
# Event messages whose only names are their properties and context.traits.
_PLAIN_EVENTS = ("page", "screen", "alias")
# A Command built from all its fields without NamedTuple's generated __new__ (half
# the cost; a batch's well-formed messages make one each, as `bloomreach` does).
_new_command = tuple.__new__
_EVENT = Kind.EVENT  # an enum member read through its class costs a metaclass __getattr__


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
    commands: list[Command] = []
    append = commands.append
    for index, item in enumerate(items):
        if type(item) is not dict:
            append(_NOT_A_MESSAGE)
            continue
        message_type = item.get("type")
        command = _plain_event(item, message_type, shared, max_names)
        if command is None:
            try:
                command = _decoded(item, message_type, shared, max_names)
            except KeyProblem as problem:
                raise problem.within(f"batch[{index}]") from None
        append(command)
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
    command = _plain_event(message, message_type, batch_traits, max_names)
    if command is not None:
        return command
    return _decoded(message, message_type, batch_traits, max_names)


def _decoded(
    message: Mapping[str, Any], message_type: object, batch_traits: Sequence[str], max_names: int
) -> Command:
    """`decode_message` in full, with the checks and messages of every case."""
    _check_keys(message, max_names)
    if type(message_type) is not str or message_type not in MESSAGE_TYPES:
        return Command(
            Kind.EVENT, malformed=f"a message needs a type of {', '.join(sorted(MESSAGE_TYPES))}"
        )
    read = _read(message, message_type)
    if isinstance(read, str):
        return Command(Kind.EVENT, malformed=read)
    ids, traits, properties, context_traits = read
    # The names of each container are unique; only merged containers need deduplicating.
    sources = [c for c in (traits if message_type == "identify" else None, context_traits) if c]
    if batch_traits:
        sources.append(dict.fromkeys(batch_traits))
    customer = tuple(sources[0]) if len(sources) == 1 else tuple(_merged(sources))
    events: tuple[str, ...] = tuple(properties) if properties else ()
    if message_type == "group" and traits:
        events = tuple(_merged([properties or {}, traits]))
    if message_type == "identify":
        return Command(Kind.CUSTOMER, customer_ids=ids, customer_properties=customer,
                       event_properties=events)  # fmt: skip
    return Command(
        Kind.EVENT,
        customer_ids=ids,
        event_type=message["event"] if message_type == "track" else message_type,
        customer_properties=customer,
        event_properties=events,
    )


def _plain_event(
    message: Mapping[str, Any], message_type: object, batch_traits: Sequence[str], max_names: int
) -> Command | None:
    """The command of a well-formed track, page, screen or alias message without traits
    of its own (nearly every message of a batch), or None for `_decoded`'s full checks
    and their messages. The spelling guard's fast path is inline: C-level subset
    tests against the declared objects' safe spellings."""
    get = message.get
    if message_type == "track":
        event_type = get("event")
    else:
        event_type = message_type if message_type in _PLAIN_EVENTS else None
    context, properties = get("context"), get("properties")
    context_traits = context.get("traits") if type(context) is dict else None
    if not (
        type(event_type) is str
        and event_type
        and _MESSAGE_SAFE.issuperset(message)
        and get("traits") is None
        and (context is None or (type(context) is dict and _CONTEXT_SAFE.issuperset(context)))
        and (
            properties is None
            or (
                type(properties) is dict
                and len(properties) <= max_names
                and _NAMES_SAFE.issuperset(properties)
            )
        )
        and (
            context_traits is None
            or (
                type(context_traits) is dict
                and len(context_traits) <= max_names
                and _NAMES_SAFE.issuperset(context_traits)
                and not (context_traits and batch_traits)  # two levels: merged by _decoded
            )
        )
    ):
        return None
    user, anonymous, previous = get("userId"), get("anonymousId"), get("previousId")
    if not (
        (user is None or type(user) is str)
        and (anonymous is None or type(anonymous) is str)
        and (previous is None or type(previous) is str)
    ):
        return None
    ids = {}
    if user is not None:
        ids["user_id"] = user
    if anonymous is not None:
        ids["anonymous_id"] = anonymous
    if previous is not None:
        ids["previous_id"] = previous
    customer = tuple(context_traits) if context_traits else tuple(batch_traits)
    events = tuple(properties) if properties else ()
    return _new_command(Command, (_EVENT, ids, event_type, customer, events, None))


def _read(message: Mapping[str, Any], message_type: str) -> tuple[Any, Any, Any, Any] | str:
    """A message's ids, traits, properties and context.traits, or what is malformed."""
    get = message.get
    ids = {}
    for field, id_type in ID_FIELDS.items():
        value = get(field)
        if value is not None:
            if type(value) is not str:
                return f"{field} must be a string or null"
            ids[id_type] = value
    context, traits, properties = get("context"), get("traits"), get("properties")
    for field, value in (("context", context), ("traits", traits), ("properties", properties)):
        if value is not None and type(value) is not dict:
            return f"{field} must be an object or null"
    context_traits = context.get("traits") if context else None
    if context_traits is not None and type(context_traits) is not dict:
        return "context.traits must be an object or null"
    event = get("event")
    if message_type == "track" and (type(event) is not str or not event):
        return "a track message needs a non-empty event"
    return ids, traits, properties, context_traits


def _merged(containers: Sequence[Mapping[str, Any]]) -> dict[str, None]:
    """The names of several containers, each once, in order."""
    names: dict[str, None] = {}
    for container in containers:
        names.update(dict.fromkeys(container))
    return names


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


def _event_type(message: Mapping[str, Any], message_type: str) -> str:
    return str(message["event"]) if message_type == "track" else message_type


def _check_size(size: int, limit: int, what: str) -> None:
    if size > limit:
        raise Rejection(Reason.PAYLOAD_TOO_LARGE, f"the {what} is larger than {limit} bytes")
