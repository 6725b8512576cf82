"""Every field of the rules file, described once: its meaning and its default.

Two readers use this one table: `trackgate schema`, which prints the JSON Schema
with each field's `description` and `default` (editors show them as help), and
docs/configuration.md, whose field tables `sidecar.field_tables` renders from
the documented schema. Paths name array items with `[]`:
`streams[].jwt.keys[].kid`. A dialect documents its own stream options in its
schema fragment (e.g. segment's `limits`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.dialects.declared_docs import FIELDS as DIALECT_FIELDS
from sidecar.schema import SCHEMA

_NONE: Any = object()  # no default


@dataclass(frozen=True, slots=True)
class Field:
    """One field's help: what it means and, where there is one, its default."""

    description: str
    default: Any = _NONE


def _source(what: str) -> dict[str, Field]:
    """A secret or key source, `{env: NAME}` or `{file: PATH}`, under `what`."""
    return {
        f"{what}.env": Field("An environment variable holding it."),
        f"{what}.file": Field(
            "A file holding it, relative to the rules file; a trailing line ending is "
            "ignored. Watched like the rules file."
        ),
    }


def _permission_set(name: str, what: str, default: str) -> dict[str, Field]:
    """The four keys of one permission set."""
    return {
        name: Field(f"Permission set: {what}. Names not listed get `default`."),
        f"{name}.default": Field(
            "Access for names not listed (a template's default applies when the stream sets none).",
            default,
        ),
        f"{name}.allow": Field("Names accepted without a signature."),
        f"{name}.signed_only": Field(
            "Names accepted only with a valid JWT signing them (with `jwt.enforcement` "
            "off, or no `jwt` block, they act as allow)."
        ),
        f"{name}.deny": Field(
            "Names never accepted: ids and properties are stripped, event types rejected."
        ),
    }


_SERVER = {
    "server": Field("Process-level settings. Only `upstream.url` is required."),
    "server.listen": Field(
        "Tracking traffic, `host:port` (IPv4 or a host name). Read at start only.",
        "0.0.0.0:8080",
    ),
    "server.admin_listen": Field(
        "`/metrics`, `/healthz`, `/readyz` and `/config`, `host:port`. Read at start only.",
        "0.0.0.0:9090",
    ),
    "server.max_body_bytes": Field(
        "Request body limit in bytes; for gzip bodies it bounds the decompressed size "
        "(413 `payload_too_large`).",
        1_048_576,
    ),
    "server.reload_interval_seconds": Field(
        "How often the rules file and every file it references are checked for changes.", 1
    ),
    "server.shutdown_delay_seconds": Field(
        "After SIGTERM, keep serving this long while `/readyz` says 503.", 5
    ),
    "server.workers": Field(
        "Processes serving the same ports (SO_REUSEPORT); `serve` supervises them and "
        "`/metrics` aggregates them. Read at start only.",
        1,
    ),
    "server.trusted_proxies": Field(
        "CIDRs of front proxies whose `Forwarded`, `X-Forwarded-*` and `X-Real-IP` headers "
        "are kept; from any other peer trackgate replaces them.",
        [],
    ),
    "server.limits": Field(
        'What one client connection may cost (docs/configuration.md, "The connection edge").'
    ),
    "server.limits.max_header_bytes": Field(
        "The whole request head in bytes; more → 431 and the connection is closed.", 32_768
    ),
    "server.limits.max_headers": Field("Header fields in one request; more → 431.", 100),
    "server.limits.header_timeout_seconds": Field(
        "Deadline for the whole request head; past it the connection is closed.", 10
    ),
    "server.limits.body_timeout_seconds": Field(
        "Deadline for the whole body after its head; past it the request is cancelled "
        "(nothing was forwarded) and the connection closed.",
        30,
    ),
    "server.limits.keepalive_timeout_seconds": Field(
        "A kept-alive client connection with no new request is closed after this.", 75
    ),
    "server.limits.max_connections": Field(
        "Client connections per process, lowered to fit `ulimit -n`; at the cap the "
        "longest-waiting idle or unfinished connection is evicted.",
        10_000,
    ),
    "server.limits.max_names_per_object": Field(
        "Keys in one id or property container; more → 413 `payload_too_large`.", 1000
    ),
    "server.upstream": Field("The collector behind trackgate."),
    "server.upstream.url": Field(
        "The collector, `http://` or `https://`, with an optional path prefix; the "
        "request's path and query are appended unchanged."
    ),
    "server.upstream.timeout_seconds": Field(
        "Whole-request deadline to the collector (connect, send, the complete answer) → "
        "504 `upstream_timeout`.",
        10,
    ),
    "server.upstream.max_connections": Field(
        "At most this many connections to the collector; further requests wait for a free "
        "one (within the deadline).",
        256,
    ),
    "server.upstream.idle_seconds": Field(
        "An idle collector connection is reused for at most this long; keep it at or below "
        "the collector's own keep-alive timeout.",
        2,
    ),
    "server.upstream.max_answer_bytes": Field(
        "A collector answer whose body is larger → 502 `upstream_invalid`.", 1_048_576
    ),
    "server.upstream.ca_file": Field(
        "An `https` collector: PEM CA certificates trusted besides the system's (a private "
        "CA). The certificate is always verified against the URL's host name (SNI too)."
    ),
}

_STREAM = {
    "streams": Field("The tracking sources, at least one."),
    "streams[].name": Field("`[a-z0-9][a-z0-9_-]{0,62}`, unique; used in logs and metric labels."),
    "streams[].id": Field("The public stream ID clients send, unique; `[A-Za-z0-9._~:-]{1,200}`."),
    "streams[].type": Field(
        "`public` (the stream ID only, optional JWT) or `private` (the stream ID and a "
        "shared secret on every request)."
    ),
    "streams[].dialect": Field(
        "The collector's wire format: a built-in dialect (bloomreach, segment, braze, posthog, "
        "amplitude, mixpanel, snowplow) or one declared under `dialects`.",
        "bloomreach",
    ),
    "streams[].template": Field(
        "A starting point the dialect defines, `public` or `private`: fills `customer_ids`, "
        "`event_types` and `customer_properties`; the stream's own lists override it name "
        "by name, its own `default` the template's."
    ),
    "streams[].mode": Field(
        "`enforce`, or `monitor`: shadow mode for the whole policy — requests that pass "
        "the request checks are forwarded unchanged and what `enforce` would reject or "
        "strip is counted (`trackgate_would_reject_total`, `trackgate_would_strip_total`, "
        "the access log's `would_reject` and `would_strip`).",
        "enforce",
    ),
    "streams[].debug_headers": Field(
        "Add `X-Trackgate-Stripped` to responses, for troubleshooting (it tells clients the "
        "policy).",
        False,
    ),
    "streams[].forward_cookies": Field(
        'Cookie names the collector gets; `["*"]` forwards all (`trackgate check` warns). '
        "Token cookies are never forwarded.",
        [],
    ),
    "streams[].cors": Field("Browser access: trackgate answers the CORS preflights itself."),
    "streams[].cors.allowed_origins": Field(
        "Origins (`https://shop.example.com`) allowed to call the stream; others get 403 "
        "`origin_not_allowed`."
    ),
    "streams[].secrets": Field(
        "Private streams only, at least one; any of them is accepted (rotation)."
    ),
    "streams[].secrets[].id": Field("The secret's name, safe to log; the value never is."),
    "streams[].secrets[].sha256": Field(
        "The SHA-256 hex digest of the secret (`trackgate keygen secret` prints it): the "
        "rules file then holds no secret."
    ),
    "streams[].secrets[].value": Field(
        "The secret itself, from an environment variable or a file; never inline."
    ),
    **_source("streams[].secrets[].value"),
    **_permission_set("streams[].customer_ids", "identifier types", "deny"),
    **_permission_set("streams[].event_types", "event types", "deny"),
    **_permission_set(
        "streams[].customer_properties", "profile attributes of customer updates", "deny"
    ),
    **_permission_set("streams[].event_properties", "properties of events", "allow"),
}

_JWT = {
    "streams[].jwt": Field(
        "JWT validation, public streams only: a valid token lets `signed_only` items pass "
        "and vouches for the customer ids it signs."
    ),
    "streams[].jwt.enforcement": Field(
        "`off`: tokens are not read and `signed_only` acts as allow; `monitor`: tokens are "
        "verified and what `enforce` would reject is counted, never rejected; `enforce`.",
        "enforce",
    ),
    "streams[].jwt.leeway_seconds": Field(
        "Clock skew tolerated on `exp` and `nbf`, 0 to 3600.", 30
    ),
    "streams[].jwt.max_lifetime_days": Field(
        "A token whose `exp` is further out is `token_lifetime_too_long`.", 90
    ),
    "streams[].jwt.token_from": Field(
        "Where the token travels, in order; two different tokens are `token_ambiguous`. "
        "Wherever it travels it is consumed, never forwarded — except braze's "
        "`X-Braze-Auth-Signature`, that dialect's default place, which Braze verifies again.",
        [{"header": "Authorization", "scheme": "Bearer"}],
    ),
    "streams[].jwt.token_from[].header": Field("A request header holding the token."),
    "streams[].jwt.token_from[].scheme": Field(
        "An auth scheme in front of the token in that header (`Bearer`), any case."
    ),
    "streams[].jwt.token_from[].cookie": Field(
        "A cookie holding the token; it is removed from the forwarded `Cookie` header."
    ),
    "streams[].jwt.kid_required": Field(
        "`false`: a token without `kid` (Braze's) is tried against each key whose `alg` "
        "equals its header's; the stream may then hold at most 3 keys.",
        True,
    ),
    "streams[].jwt.keys": Field("Verification keys, each named by its `kid`."),
    "streams[].jwt.keys[].kid": Field(
        "The key id tokens name in their `kid` header; unique within the stream."
    ),
    "streams[].jwt.keys[].alg": Field(
        "The key's algorithm; a token's header must name the same (never `none`)."
    ),
    "streams[].jwt.keys[].secret": Field(
        "HS256/384/512: the shared secret, at least 32/48/64 bytes; never inline."
    ),
    **_source("streams[].jwt.keys[].secret"),
    "streams[].jwt.keys[].public_key": Field(
        "RS*, PS*, ES*, EdDSA: the public key as PEM; never inline."
    ),
    **_source("streams[].jwt.keys[].public_key"),
    "streams[].jwt.jwks": Field(
        "More keys from a JWKS: each JWK needs a `kid`, and an `alg` unless its curve names it."
    ),
    "streams[].jwt.jwks.file": Field(
        "A JWKS file, relative to the rules file; watched like the rules file."
    ),
    "streams[].jwt.jwks.url": Field(
        "An identity provider's JWKS URL, fetched at load and refreshed off the request path: "
        "`https://`, or `http://` to a loopback address; redirects are never followed."
    ),
    "streams[].jwt.jwks.discovery": Field(
        "Instead of `url`: an OpenID provider; `{discovery}/.well-known/openid-configuration` "
        "names the JWKS URL (`jwks_uri`), and its `issuer` must equal `jwt.issuer`."
    ),
    "streams[].jwt.jwks.ca_file": Field(
        "PEM CA certificates trusted besides the system's, for a provider behind a private CA; "
        "watched like the rules file."
    ),
    "streams[].jwt.jwks.refresh_seconds": Field(
        "Refresh interval (at least 1); an answer's `Cache-Control: max-age` replaces it, "
        "clamped to [60, 86400].",
        600,
    ),
    "streams[].jwt.jwks.stale_if_error_seconds": Field(
        "While fetches fail, the last good keys stay usable this long after the last "
        "successful fetch; then the stream has no keys (`keys_unavailable`).",
        86400,
    ),
    "streams[].jwt.jwks.unknown_kid_cooldown_seconds": Field(
        "At most one early refetch per this many seconds, on a token with an unknown `kid`; "
        "the request that triggered it waits for it.",
        30,
    ),
    "streams[].jwt.jwks.timeout_seconds": Field(
        "Per HTTP request of a fetch (up to 60), and the longest a request waits for an early "
        "refetch.",
        5,
    ),
    "streams[].jwt.issuer": Field(
        "`iss` must equal it exactly (`token_issuer_invalid`); required with `jwks.discovery`."
    ),
    "streams[].jwt.audiences": Field(
        "`aud` (a string or a list of strings) must contain one of them (`token_audience_invalid`)."
    ),
    "streams[].jwt.subject": Field(
        "Single-subject tokens (Braze style): a claim names one customer id instead of an "
        "`ids` object."
    ),
    "streams[].jwt.subject.claim": Field("The claim holding the id: `sub` or `user_id`."),
    "streams[].jwt.subject.id_type": Field("The customer id type the claim's value is."),
}

FIELDS: Mapping[str, Field] = {
    "version": Field("The format version; must be 1."),
    **_SERVER,
    **_STREAM,
    **_JWT,
    **{path: Field(text) for path, text in DIALECT_FIELDS.items()},
}


def documented(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `schema` in which every field of `FIELDS` carries its `description` and,
    where there is one, its `default`. (A JSON round trip, not a deep copy: the schema
    shares fragments between fields, and their help differs.)"""
    copy: dict[str, Any] = json.loads(json.dumps(schema))
    for path, node, _ in properties(copy):
        field = FIELDS.get(path)
        if field is not None:
            node["description"] = field.description
            if field.default is not _NONE:
                node["default"] = field.default
    return copy


def documented_schema() -> dict[str, Any]:
    """The rules file's JSON Schema with its help: what `trackgate schema` prints."""
    return documented(SCHEMA)


def properties(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Any, bool]]:
    """Every property of `schema`, depth first: its path (`streams[].jwt.keys[].kid`),
    its schema and whether its object requires it."""
    required = schema.get("required", ())
    for key, node in schema.get("properties", {}).items():
        where = f"{path}.{key}" if path else key
        yield where, node, key in required
        yield from properties(node, where)
    if "items" in schema:
        yield from properties(schema["items"], f"{path}[]")
