"""The JSON Schema of the rules file, and the structural check that uses it.

One schema serves two readers: editors (printed by `trackgate schema`) and
`config.py`, which runs `structural_errors` before compiling. The checker
understands the subset of JSON Schema used below and reports each problem
with the path of the offending field (`streams[1].jwt.keys[0].alg: ...`).
Cross-field rules (uniqueness, a name in two lists, key checks) live in
`config.py`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from sidecar.dialects import BUILTIN
from sidecar.dialects.declared_schema import NAME_PATTERN, dialects_schema

ALGORITHMS = (
    "HS256",
    "HS384",
    "HS512",
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
ACCESS_LEVELS = ("allow", "signed_only", "deny")
STREAM_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"

# Every dialect's templates and stream options: the dialects own them (config.py
# checks that a stream uses only its own dialect's).
_TEMPLATE_NAMES = sorted({name for d in BUILTIN.values() for name in d.templates})
_DIALECT_OPTIONS = {
    key: fragment for d in BUILTIN.values() for key, fragment in d.option_schemas.items()
}

_NAMES = {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True}

_SOURCE = {  # a secret or key is never inline: an environment variable or a file
    "type": "object",
    "properties": {
        "env": {"type": "string", "minLength": 1},
        "file": {"type": "string", "minLength": 1},
    },
    "additionalProperties": False,
    "minProperties": 1,
    "maxProperties": 1,
}

_PERMISSION_SET = {
    "type": "object",
    "properties": {
        "default": {"enum": list(ACCESS_LEVELS)},
        "allow": _NAMES,
        "signed_only": _NAMES,
        "deny": _NAMES,
    },
    "additionalProperties": False,
}

_EDGE_LIMITS = {
    "type": "object",
    "properties": {
        "max_header_bytes": {"type": "integer", "minimum": 1024},
        "max_headers": {"type": "integer", "minimum": 8},
        "header_timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
        "body_timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
        "keepalive_timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
        "max_connections": {"type": "integer", "minimum": 1},
        "max_names_per_object": {"type": "integer", "minimum": 1},
    },
    "additionalProperties": False,
}

_TOKEN_PLACE = {
    "type": "object",
    "properties": {
        "header": {"type": "string", "pattern": r"^[A-Za-z0-9-]+$"},
        "scheme": {"type": "string", "pattern": r"^[A-Za-z0-9._~+/-]+$"},
        "cookie": {"type": "string", "pattern": r"^[!#$%&'*+.^`|~0-9A-Za-z_-]+$"},
    },
    "oneOf": [{"required": ["header"]}, {"required": ["cookie"]}],
    "errorMessage": "set exactly one of header (with an optional scheme), cookie",
    "additionalProperties": False,
}

_URL = {"type": "string", "pattern": r"^https?://\S+$"}
_JWKS = {
    "description": "More keys: a local JWKS file (watched like the rules), a JWKS URL, "
    "or an OpenID provider whose discovery document names the JWKS URL.",
    "type": "object",
    "properties": {
        "file": {"type": "string", "minLength": 1},
        "url": _URL,
        "discovery": _URL,
        "ca_file": {"type": "string", "minLength": 1},
        "refresh_seconds": {"type": "number", "minimum": 1},
        "stale_if_error_seconds": {"type": "number", "minimum": 0},
        "unknown_kid_cooldown_seconds": {"type": "number", "minimum": 1},
        "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 60},
    },
    "oneOf": [{"required": ["file"]}, {"required": ["url"]}, {"required": ["discovery"]}],
    "errorMessage": "set exactly one of file, url, discovery",
    "additionalProperties": False,
}

_LISTEN = {"type": "string", "pattern": r"^[^\s:]*:[0-9]{1,5}$"}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://trackgate.dev/schema/rules-v1.json",
    "title": "trackgate rules",
    "type": "object",
    "properties": {
        "version": {"const": 1},
        "server": {
            "type": "object",
            "properties": {
                "listen": _LISTEN,
                "admin_listen": _LISTEN,
                "max_body_bytes": {"type": "integer", "minimum": 1},
                "reload_interval_seconds": {"type": "number", "exclusiveMinimum": 0},
                "shutdown_delay_seconds": {"type": "number", "minimum": 0},
                "workers": {"type": "integer", "minimum": 1, "maximum": 64},
                "trusted_proxies": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "uniqueItems": True,
                },
                "limits": _EDGE_LIMITS,
                "upstream": {
                    "type": "object",
                    "properties": {
                        "url": {"type": "string", "pattern": r"^https?://[^\s/]+(/\S*)?$"},
                        "timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
                        "max_connections": {"type": "integer", "minimum": 1},
                        "idle_seconds": {"type": "number", "minimum": 0},
                        "max_answer_bytes": {"type": "integer", "minimum": 1024},
                        "ca_file": {"type": "string", "minLength": 1},
                    },
                    "required": ["url"],
                    "additionalProperties": False,
                },
            },
            "required": ["upstream"],
            "additionalProperties": False,
        },
        "streams": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "pattern": STREAM_NAME_PATTERN},
                    "id": {"type": "string", "pattern": r"^[A-Za-z0-9._~:-]{1,200}$"},
                    "type": {"enum": ["public", "private"]},
                    "dialect": {"type": "string", "pattern": NAME_PATTERN},
                    "template": {"enum": _TEMPLATE_NAMES},
                    "mode": {"enum": ["enforce", "monitor"]},
                    "debug_headers": {"type": "boolean"},
                    "forward_cookies": {
                        "type": "array",
                        "items": {
                            "type": "string",
                            "pattern": r"^(\*|[!#$%&'*+.^`|~0-9A-Za-z_-]+)$",
                        },
                        "uniqueItems": True,
                    },
                    "cors": {
                        "type": "object",
                        "properties": {
                            "allowed_origins": {
                                "type": "array",
                                "items": {"type": "string", "pattern": r"^https?://[^\s/]+$"},
                                "uniqueItems": True,
                            }
                        },
                        "required": ["allowed_origins"],
                        "additionalProperties": False,
                    },
                    "jwt": {
                        "type": "object",
                        "properties": {
                            "enforcement": {"enum": ["off", "monitor", "enforce"]},
                            "leeway_seconds": {"type": "integer", "minimum": 0, "maximum": 3600},
                            "max_lifetime_days": {"type": "number", "exclusiveMinimum": 0},
                            "token_from": {"type": "array", "minItems": 1, "items": _TOKEN_PLACE},
                            "keys": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "kid": {"type": "string", "minLength": 1},
                                        "alg": {"enum": list(ALGORITHMS)},
                                        "secret": _SOURCE,
                                        "public_key": _SOURCE,
                                    },
                                    "required": ["kid", "alg"],
                                    "oneOf": [
                                        {"required": ["secret"]},
                                        {"required": ["public_key"]},
                                    ],
                                    "errorMessage": "set exactly one of secret, public_key",
                                    "additionalProperties": False,
                                },
                            },
                            "kid_required": {"type": "boolean"},
                            "issuer": {"type": "string", "minLength": 1},
                            "audiences": {
                                "type": "array",
                                "minItems": 1,
                                "items": {"type": "string", "minLength": 1},
                                "uniqueItems": True,
                            },
                            "jwks": _JWKS,
                            "subject": {
                                "type": "object",
                                "properties": {
                                    "claim": {"enum": ["sub", "user_id"]},
                                    "id_type": {"type": "string", "minLength": 1},
                                },
                                "required": ["claim", "id_type"],
                                "additionalProperties": False,
                            },
                        },
                        "additionalProperties": False,
                    },
                    "secrets": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "properties": {
                                "id": {"type": "string", "minLength": 1},
                                "sha256": {"type": "string", "pattern": r"^[0-9a-fA-F]{64}$"},
                                "value": _SOURCE,
                            },
                            "required": ["id"],
                            "oneOf": [{"required": ["sha256"]}, {"required": ["value"]}],
                            "errorMessage": "set exactly one of sha256, value",
                            "additionalProperties": False,
                        },
                    },
                    **_DIALECT_OPTIONS,
                    "customer_ids": _PERMISSION_SET,
                    "event_types": _PERMISSION_SET,
                    "customer_properties": _PERMISSION_SET,
                    "event_properties": _PERMISSION_SET,
                },
                "required": ["name", "id", "type"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["version", "server", "streams"],
    "additionalProperties": False,
}
SCHEMA["properties"]["dialects"] = dialects_schema(_TOKEN_PLACE, _PERMISSION_SET)

_JSON_TYPES = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
}


def structural_errors(document: object) -> list[str]:
    """Every structural problem of `document`, each as 'path: message'."""
    return list(_check(document, SCHEMA, ""))


def declaration_errors(raw: object, path: str) -> list[str]:
    """Every structural problem of one `dialects:` item found at `path`."""
    return list(_check(raw, SCHEMA["properties"]["dialects"]["items"], path))


def _check(value: object, schema: Mapping[str, Any], path: str) -> Iterator[str]:
    where = path or "(top level)"
    if "type" in schema and not _has_type(value, schema["type"]):
        yield f"{where}: expected {_JSON_TYPES[schema['type']]}, got {_describe(value)}"
        return
    if "const" in schema and value != schema["const"]:
        yield f"{where}: must be {schema['const']!r}"
    if "enum" in schema and value not in schema["enum"]:
        yield f"{where}: {_show(value)} is not one of {', '.join(map(str, schema['enum']))}"
    if isinstance(value, str):
        yield from _check_string(value, schema, where)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield from _check_number(value, schema, where)
    elif isinstance(value, list):
        yield from _check_list(value, schema, path, where)
    elif isinstance(value, dict):
        yield from _check_object(value, schema, path, where)


def _check_string(value: str, schema: Mapping[str, Any], where: str) -> Iterator[str]:
    if len(value) < schema.get("minLength", 0):
        yield f"{where}: must not be empty"
    if "pattern" in schema and not re.search(schema["pattern"], value):
        yield f"{where}: {_show(value)} does not match {schema['pattern']}"


def _check_number(value: float, schema: Mapping[str, Any], where: str) -> Iterator[str]:
    if "minimum" in schema and value < schema["minimum"]:
        yield f"{where}: must be at least {schema['minimum']}"
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        yield f"{where}: must be greater than {schema['exclusiveMinimum']}"
    if "maximum" in schema and value > schema["maximum"]:
        yield f"{where}: must be at most {schema['maximum']}"


def _check_list(
    value: list[Any], schema: Mapping[str, Any], path: str, where: str
) -> Iterator[str]:
    if len(value) < schema.get("minItems", 0):
        yield f"{where}: needs at least {schema['minItems']} item(s)"
    if schema.get("uniqueItems"):
        seen: list[object] = []
        for item in value:
            if item in seen:
                yield f"{where}: {_show(item)} is listed twice"
            seen.append(item)
    if "items" in schema:
        for index, item in enumerate(value):
            yield from _check(item, schema["items"], f"{path}[{index}]")


def _check_object(
    value: dict[Any, Any], schema: Mapping[str, Any], path: str, where: str
) -> Iterator[str]:
    properties: Mapping[str, Any] = schema.get("properties", {})
    prefix = f"{path}." if path else ""
    for key in schema.get("required", ()):
        if key not in value:
            yield f"{prefix}{key}: is required"
    if schema.get("additionalProperties") is False:
        for key in value:
            if key not in properties:
                yield (
                    f"{prefix}{key}: unknown key; expected one of {', '.join(sorted(properties))}"
                )
    count = len(value)
    if count < schema.get("minProperties", 0) or count > schema.get("maxProperties", count):
        yield f"{where}: set exactly one of {', '.join(sorted(properties))}"
    if "oneOf" in schema:
        matching = sum(not list(_check(value, alt, path)) for alt in schema["oneOf"])
        if matching != 1:
            yield f"{where}: {schema['errorMessage']}"
    for key, sub in properties.items():
        if key in value:
            yield from _check(value[key], sub, f"{prefix}{key}")


def _has_type(value: object, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    python_type = {"object": dict, "array": list, "string": str, "boolean": bool}[name]
    return isinstance(value, python_type)


def _describe(value: object) -> str:
    """The JSON type of `value`, never the value itself (it could be a pasted secret)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    for json_type, text in _JSON_TYPES.items():
        if json_type != "boolean" and _has_type(value, json_type):
            return text
    return type(value).__name__


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
