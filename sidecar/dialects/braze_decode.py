"""How a `braze` body becomes commands (SPEC §3.4), and its templates (SPEC §4).

A `/data/` flush holds `events[]` then `attributes[]`; each item is a command,
in body order. The request's own ids — `device_id`, and `user_id` / `alias` at
the top level (companion requests) or in `respond_with` (flushes, `template`) —
are ids of every item that has none of its own of that type. When one of them is
carried by no item (a companion, an item-less flush, a `respond_with` user that
is no item's) it is judged as one more command, first: "the request", a customer
update with the request's ids and no properties. Each object read is checked by
the key-spelling guard (`sidecar.spelling`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sidecar.commands import Command, Kind
from sidecar.dialects.base import Template
from sidecar.errors import Reason, Rejection
from sidecar.spelling import NAMES, Fields, KeyProblem

ARRAYS = ("events", "attributes")
EVENT_TYPES = {"p": "purchase", "ss": "session_start", "se": "session_end"}
ATTRIBUTE_OPS = frozenset({"inc", "add", "rem", "set", "ncam"})
ID_TYPES = frozenset({"user_id", "alias", "device_id"})
_ENVELOPE = Fields("api_key", "device_id", "user_id", "alias", "respond_with", *ARRAYS)
_RESPOND_WITH = Fields("user_id", "alias")
_EVENT = Fields("name", "data", "user_id", "alias")
_CUSTOM_EVENT = Fields("n", "p")
_PURCHASE = Fields("pr")
_ATTRIBUTE_OP = Fields("key")
_ATTRIBUTES = Fields("user_id", "alias", "custom")
_ALIAS = Fields("name", "label")
_EVENT_SAFE, _CUSTOM_EVENT_SAFE, _NAMES_SAFE = _EVENT.safe, _CUSTOM_EVENT.safe, NAMES.safe
_PASSTHROUGH = Command(Kind.PASSTHROUGH)
# A Command built from all its fields without NamedTuple's generated __new__ (half
# the cost; a flush's custom events make one each, as `bloomreach` does).
_new_command = tuple.__new__


def check_envelope(document: Any, max_names: int) -> None:
    """The request object of `/data/` (or a companion's JSON body).
    Rejects: malformed_payload."""
    if not isinstance(document, dict):
        raise Rejection(Reason.MALFORMED_PAYLOAD, "a Braze request body must be a JSON object")
    _ENVELOPE.check(document, "")
    device_id = document.get("device_id")
    if device_id is not None and not isinstance(device_id, str):
        raise Rejection(Reason.MALFORMED_PAYLOAD, "device_id must be a string")


def request_ids(document: dict[str, Any]) -> dict[str, object]:
    """The request's own ids: `device_id`, and `user_id` / `alias` at the top level or
    in `respond_with` (one value each). Call `check_envelope` first.
    Rejects: malformed_payload."""
    ids: dict[str, object] = {}
    if document.get("device_id"):
        ids["device_id"] = document["device_id"]
    places: list[tuple[str, Mapping[str, Any]]] = [("", document)]
    respond = document.get("respond_with")
    if respond is not None:
        if not isinstance(respond, dict):
            raise Rejection(Reason.MALFORMED_PAYLOAD, "respond_with must be an object")
        _RESPOND_WITH.check(respond, "respond_with")
        places.append(("respond_with", respond))
    for where, place in places:
        try:
            found = _ids(place, {})
        except KeyProblem as problem:
            raise (problem.within(where) if where else problem) from None
        if isinstance(found, str):
            raise Rejection(Reason.MALFORMED_PAYLOAD, f"{where or 'the request'}: {found}")
        for id_type, value in found.items():
            if ids.setdefault(id_type, value) != value:
                raise Rejection(
                    Reason.MALFORMED_PAYLOAD,
                    f"the request names two different {id_type} values (top level, respond_with)",
                )
    return ids


def with_request(
    document: dict[str, Any], ids: Mapping[str, object], items: list[Any], commands: list[Command]
) -> tuple[list[Any], list[Command]]:
    """`commands` preceded by the request's own command (its item: the document) when
    one of the request's ids is carried by none of them: a companion's ids, an
    item-less flush's, or a `respond_with` user that is no item's."""
    uncovered = [
        id_type
        for id_type, value in ids.items()
        if not any(command.customer_ids.get(id_type) == value for command in commands)
    ]
    if not uncovered:
        return items, commands
    return [document, *items], [Command(Kind.CUSTOMER, customer_ids=ids), *commands]


def decode_data(document: dict[str, Any], max_names: int) -> tuple[list[Any], list[Command]]:
    """Every item of `events[]` and `attributes[]` and its command; the request's own
    ids are ids of every item without its own of that type (`with_request` judges
    the rest). Call `check_envelope` first. Rejects: malformed_payload,
    payload_too_large."""
    shared = request_ids(document)
    items: list[Any] = []
    commands: list[Command] = []
    for array in ARRAYS:
        found = document.get(array)
        if found is None:
            continue
        if not isinstance(found, list):
            raise Rejection(Reason.MALFORMED_PAYLOAD, f"{array} must be an array")
        if array == "events":
            _events(found, shared, max_names, commands)
        else:
            for index, item in enumerate(found):
                try:
                    commands.append(_attributes(item, shared, max_names))
                except KeyProblem as problem:
                    raise problem.within(f"{array}[{index}]") from None
        items.extend(found)
    return with_request(document, shared, items, commands)


def _events(
    events: list[Any], shared: Mapping[str, object], max_names: int, commands: list[Command]
) -> None:
    """Appends the command of each event. The SDK's custom event (nearly every event
    of a flush) is checked inline: the spelling guard's fast path as C-level subset
    tests; its ids are the request's, or those and its `user_id`, one mapping per
    user shared by their events (no command's ids are ever changed). Anything else
    takes `_event`, which says what is wrong. Rejects (KeyProblem):
    malformed_payload, payload_too_large."""
    append, event, event_safe, data_safe, names_safe = (
        commands.append, Kind.EVENT, _EVENT_SAFE, _CUSTOM_EVENT_SAFE, _NAMES_SAFE
    )  # fmt: skip
    users: dict[str, Mapping[str, object]] = {}  # user_id → the ids of its events
    for index, item in enumerate(events):
        if (
            type(item) is dict
            and item.get("name") == "ce"
            and event_safe.issuperset(item)
            and "alias" not in item
        ):
            user_id, data = item.get("user_id"), item.get("data")
            if (
                (user_id is None or type(user_id) is str)
                and type(data) is dict
                and data_safe.issuperset(data)
            ):
                name, props = data.get("n"), data.get("p")
                if (
                    type(name) is str
                    and name
                    and type(props) is dict
                    and len(props) <= max_names
                    and names_safe.issuperset(props)
                ):
                    if user_id is None:
                        ids = shared
                    elif user_id in users:
                        ids = users[user_id]
                    else:
                        ids = users[user_id] = {**shared, "user_id": user_id}
                    properties = tuple(props)
                    append(_new_command(Command, (event, ids, name, (), properties, None)))
                    continue
        try:
            append(_event(item, shared, max_names))
        except KeyProblem as problem:
            raise problem.within(f"events[{index}]") from None


def _ids(item: Mapping[str, Any], shared: Mapping[str, object]) -> dict[str, object] | str:
    """The item's customer ids, or why they are malformed."""
    ids: dict[str, object] = dict(shared)
    user_id = item.get("user_id")
    if user_id is not None:
        if not isinstance(user_id, str):
            return "user_id must be a string"
        ids["user_id"] = user_id
    alias = item.get("alias")
    if alias is not None:
        if not isinstance(alias, dict):
            return "alias must be an object"
        _ALIAS.check(alias, "alias")
        if not isinstance(alias.get("name"), str) or not isinstance(alias.get("label"), str):
            return "alias needs a string name and label"
        ids["alias"] = f"{alias['label']}:{alias['name']}"
    return ids


def _event(item: Any, shared: Mapping[str, object], max_names: int) -> Command:
    if not isinstance(item, dict):
        return Command(Kind.EVENT, malformed="an event must be a JSON object")
    _EVENT.check(item, "")
    code, data = item.get("name"), item.get("data")
    if not isinstance(code, str):
        return Command(Kind.EVENT, malformed="an event needs a string name")
    if code not in EVENT_TYPES and code != "ce" and code not in ATTRIBUTE_OPS:
        return _PASSTHROUGH  # SDK telemetry: forwarded untouched
    ids = _ids(item, shared)
    if isinstance(ids, str):
        return Command(Kind.EVENT, malformed=ids)
    if data is None and code in ("ss", "se"):
        data = {}
    if not isinstance(data, dict):
        return Command(Kind.EVENT, malformed=f"a {code!r} event needs a data object")
    try:
        return _event_command(code, data, ids, max_names)
    except KeyProblem as problem:
        raise problem.within("data") from None


def _event_command(
    code: str, data: Mapping[str, Any], ids: Mapping[str, object], max_names: int
) -> Command:
    if code in ATTRIBUTE_OPS:
        _ATTRIBUTE_OP.check(data, "")
        key = data.get("key")
        if not isinstance(key, str):
            return Command(Kind.CUSTOMER, malformed=f"a {code!r} event needs a string data.key")
        return Command(Kind.CUSTOMER, customer_ids=ids, customer_properties=(key,))
    if code == "ce":
        _CUSTOM_EVENT.check(data, "")
        name = data.get("n")
        if not isinstance(name, str) or not name:
            return Command(Kind.EVENT, malformed="a custom event needs a non-empty data.n")
        return _with_properties(ids, name, data, "p", max_names)
    if code == "p":
        _PURCHASE.check(data, "")
        return _with_properties(ids, "purchase", data, "pr", max_names)
    return Command(Kind.EVENT, customer_ids=ids, event_type=EVENT_TYPES[code])


def _with_properties(
    ids: Mapping[str, object], event_type: str, data: Mapping[str, Any], where: str, max_names: int
) -> Command:
    props = data.get(where)
    if props is None:
        props = {}
    if not isinstance(props, dict):
        return Command(Kind.EVENT, malformed=f"data.{where} must be an object")
    NAMES.check_names(props, where, max_names)
    return Command(
        Kind.EVENT, customer_ids=ids, event_type=event_type, event_properties=tuple(props)
    )


def _attributes(item: Any, shared: Mapping[str, object], max_names: int) -> Command:
    if not isinstance(item, dict):
        return Command(Kind.CUSTOMER, malformed="an attributes item must be a JSON object")
    _ATTRIBUTES.check(item, "")
    NAMES.check_names(item, "", max_names)
    ids = _ids(item, shared)
    if isinstance(ids, str):
        return Command(Kind.CUSTOMER, malformed=ids)
    custom = item.get("custom")
    if custom is None:
        custom = {}
    if not isinstance(custom, dict):
        return Command(Kind.CUSTOMER, malformed="custom must be an object")
    NAMES.check_names(custom, "custom", max_names)
    names = [key for key in item if key not in _ATTRIBUTES.names]
    return Command(
        Kind.CUSTOMER,
        customer_ids=ids,
        customer_properties=tuple(dict.fromkeys([*names, *custom])),
    )


_CONTACT = ["email", "phone", "last_name", "email_subscribe", "push_subscribe"]
_BROWSING = ["session_start", "session_end"]
# SPEC §4's intent in Braze's names: the anonymous device allowed, the known user
# signed-only, sessions allowed, purchases signed-only, contact attributes (and
# the subscription states, Braze's consent) signed-only.
TEMPLATES: Mapping[str, Template] = {
    "public": {
        "customer_ids": {"default": "deny", "allow": ["device_id"], "signed_only": ["user_id"]},
        "event_types": {"default": "deny", "allow": _BROWSING, "signed_only": ["purchase"]},
        "customer_properties": {
            "default": "deny",
            "allow": ["first_name", "language", "country"],
            "signed_only": _CONTACT,
        },
    },
    "private": {
        "customer_ids": {"default": "deny", "allow": ["device_id", "user_id", "alias"]},
        "event_types": {"default": "deny", "allow": [*_BROWSING, "purchase"]},
        "customer_properties": {
            "default": "deny",
            "allow": ["first_name", "language", "country", *_CONTACT],
        },
    },
}
