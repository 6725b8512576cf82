"""The JSON Schema of a wire-format declaration (the rules file's `dialects:`, SPEC §3.5).

`sidecar.schema` puts it in the rules file's schema, so `trackgate schema` prints
it and the structural check reports its type errors and unknown keys with their
paths; `declared_compile` checks what a schema cannot (references between
shapes and endpoints, pointers that fold alike, patterns, templates).
"""

from __future__ import annotations

from typing import Any

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
POINTER_PATTERN = r"^(/([^/~]|~[01])*)*$"
PATH_PATTERN = r"^(/([A-Za-z0-9._~!$&'()*+,;=:@%-]+|\{stream_id\}))+/?$"
KINDS = ("event", "customer", "passthrough")
BASE64_USES = ("never", "always", "optional")

_POINTER = {"type": "string", "pattern": POINTER_PATTERN}
_POINTERS = {"type": "array", "minItems": 1, "items": _POINTER}
_NAME_LIST = {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True}
_SCOPE = {"enum": ["command", "document"]}
_STATUS = {"type": "integer", "minimum": 100, "maximum": 599}

PLACE = {
    "type": "object",
    "properties": {
        "header": {"type": "string", "pattern": r"^[A-Za-z0-9-]+$"},
        "query": {"type": "string", "minLength": 1},
        "path": {"enum": ["stream_id"]},
        "basic": {"enum": ["user"]},
        "body": _POINTER,
        "command": _POINTER,
    },
    "additionalProperties": False,
    "minProperties": 1,
    "maxProperties": 1,
}

SECRET_PLACE = {
    "type": "object",
    "properties": {
        "header": {"type": "string", "pattern": r"^[A-Za-z0-9-]+$"},
        "basic": {"enum": ["user", "password"]},
    },
    "additionalProperties": False,
    "minProperties": 1,
    "maxProperties": 1,
}

_WRAPPING = {
    "base64": {"enum": list(BASE64_USES)},
    "alphabet": {"enum": ["standard", "url"]},
    "padding": {"type": "boolean"},
}

_CONTAINER = {
    "type": "object",
    "properties": {
        "pointer": _POINTER,
        "in": _SCOPE,
        "exclude": _NAME_LIST,
        "only": _NAME_LIST,
        "operators": _NAME_LIST,
    },
    "required": ["pointer"],
    "additionalProperties": False,
}

_IDS = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "pointer": _POINTER,
            "type": {"type": "string", "minLength": 1},
            "in": _SCOPE,
        },
        "required": ["pointer", "type"],
        "additionalProperties": False,
    },
}

_EVENT_TYPE = {
    "type": "object",
    "properties": {
        "pointer": _POINTER,
        "pointers": _POINTERS,
        "value": {"type": "string", "minLength": 1},
        "pattern": {"type": "string", "minLength": 1},
    },
    "minProperties": 1,
    "additionalProperties": False,
}


def _case(*, when: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "kind": {"enum": list(KINDS)},
        "ids": _IDS,
        "event_type": _EVENT_TYPE,
        "event_properties": {"type": "array", "items": _CONTAINER},
        "customer_properties": {"type": "array", "items": _CONTAINER},
    }
    if when:
        properties = {"when": {**_NAME_LIST, "minItems": 1}, **properties}
    return {
        "type": "object",
        "properties": properties,
        "required": ["when"] if when else [],
        "additionalProperties": False,
    }


def _answer(*extra: tuple[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"status": _STATUS, "body": {}, **dict(extra)},
        "additionalProperties": False,
    }


def dialects_schema(token_place: dict[str, Any], permission_set: dict[str, Any]) -> dict[str, Any]:
    """The `dialects:` list, with the rules file's token place and permission set."""
    template = {
        "type": "object",
        "properties": {
            name: permission_set
            for name in ("customer_ids", "event_types", "customer_properties", "event_properties")
        },
        "additionalProperties": False,
    }
    shape = _case(when=False)
    shape["properties"] = {
        "name": {"type": "string", "pattern": NAME_PATTERN},
        **shape["properties"],
        "embedded": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"pointer": _POINTER, **_WRAPPING},
                "required": ["pointer"],
                "additionalProperties": False,
            },
        },
        "discriminator": _POINTER,
        "cases": {"type": "array", "minItems": 1, "items": _case(when=True)},
        "otherwise": _case(when=False),
    }
    shape["required"] = ["name"]
    return {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "pattern": NAME_PATTERN},
                "anonymous_id": {"type": "string", "minLength": 1},
                "stream_id": {"type": "array", "minItems": 1, "items": PLACE},
                "secret_from": {"type": "array", "minItems": 1, "items": SECRET_PLACE},
                "token_from": {"type": "array", "minItems": 1, "items": token_place},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {
                            "path": {"type": "string", "pattern": PATH_PATTERN},
                            "name": {"type": "string", "pattern": r"^[!-~]{1,100}$"},
                            "carrier": {
                                "type": "object",
                                "properties": {
                                    "form": {"type": "string", "pattern": r"^[A-Za-z0-9_.-]+$"},
                                    "gzip": {"enum": ["header", "magic"]},
                                    **_WRAPPING,
                                },
                                "additionalProperties": False,
                            },
                            "commands": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "pointer": _POINTER,
                                        "shape": {"type": "string", "pattern": NAME_PATTERN},
                                        "as": {"enum": ["array", "object", "either"]},
                                    },
                                    "required": ["pointer", "shape"],
                                    "additionalProperties": False,
                                },
                            },
                            "stream_id": {"type": "array", "minItems": 1, "items": PLACE},
                            "secret_from": {
                                "type": "array",
                                "minItems": 1,
                                "items": SECRET_PLACE,
                            },
                        },
                        "required": ["path", "commands"],
                        "additionalProperties": False,
                    },
                },
                "shapes": {"type": "array", "minItems": 1, "items": shape},
                "answers": {
                    "type": "object",
                    "properties": {
                        "rejected": {
                            "type": "object",
                            "properties": {
                                "body": {},
                                "statuses": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": _STATUS,
                                    "uniqueItems": True,
                                },
                                "overrides": {
                                    "type": "array",
                                    "items": _answer(("reasons", {**_NAME_LIST, "minItems": 1})),
                                },
                            },
                            "additionalProperties": False,
                        },
                        "all_rejected": _answer(),
                        "partial": _answer(),
                    },
                    "additionalProperties": False,
                },
                "templates": {
                    "type": "object",
                    "properties": {"public": template, "private": template},
                    "additionalProperties": False,
                },
            },
            "required": ["name", "anonymous_id", "stream_id", "endpoints", "shapes"],
            "additionalProperties": False,
        },
    }
