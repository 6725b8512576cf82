"""Compiled rules: the frozen objects the request path reads.

`config.py` builds these once per load; at request time they are only looked
up, never changed. A `Rules` instance is one version of the rules file.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from sidecar.keys.base import KeySource

if TYPE_CHECKING:  # rules are compiled from dialects, which read rules: no import cycle
    from sidecar.dialects import Router


class Access(StrEnum):
    """How a name in a permission set is treated."""

    ALLOW = "allow"
    SIGNED_ONLY = "signed_only"
    DENY = "deny"


class SetName(StrEnum):
    """The permission sets of a stream; values are the config keys and metric labels."""

    CUSTOMER_IDS = "customer_ids"
    EVENT_TYPES = "event_types"
    CUSTOMER_PROPERTIES = "customer_properties"
    EVENT_PROPERTIES = "event_properties"


class StreamType(StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"


class Mode(StrEnum):
    """How a stream's decisions are applied (SPEC §5.2a)."""

    ENFORCE = "enforce"  # strip, drop and reject as decided
    MONITOR = "monitor"  # shadow mode: forward unchanged, record what enforce would do


class Enforcement(StrEnum):
    """JWT validation mode of a public stream."""

    OFF = "off"
    MONITOR = "monitor"
    ENFORCE = "enforce"


@dataclass(frozen=True, slots=True)
class PermissionSet:
    """One permission set: listed names and the default for the rest."""

    default: Access
    listed: Mapping[str, Access] = field(default_factory=lambda: MappingProxyType({}))

    def access(self, name: str) -> Access:
        """The access level of `name`: its listed level, else the default."""
        return self.listed.get(name, self.default)

    def names(self, access: Access) -> tuple[str, ...]:
        """The listed names with `access`, in sorted order (for display)."""
        return tuple(sorted(n for n, a in self.listed.items() if a is access))


@dataclass(frozen=True, slots=True)
class Permissions:
    """The four permission sets of a stream."""

    customer_ids: PermissionSet
    event_types: PermissionSet
    customer_properties: PermissionSet
    event_properties: PermissionSet

    def of(self, name: SetName) -> PermissionSet:
        """The set called `name` (the SetName values are the field names)."""
        return getattr(self, name)  # type: ignore[no-any-return]

    def uses_signed_only(self) -> bool:
        """True when any set lists a name, or defaults, to `signed_only`."""
        return any(
            s.default is Access.SIGNED_ONLY or Access.SIGNED_ONLY in s.listed.values()
            for s in (
                self.customer_ids,
                self.event_types,
                self.customer_properties,
                self.event_properties,
            )
        )


@dataclass(frozen=True, slots=True)
class SharedSecret:
    """A private stream's shared secret, kept only as its SHA-256 digest."""

    id: str  # the secret's configured id (safe to log)
    digest: bytes  # sha256 of the secret


@dataclass(frozen=True, slots=True)
class Subject:
    """Single-subject tokens: `claim` names one customer id of type `id_type`."""

    claim: str
    id_type: str


@dataclass(frozen=True, slots=True)
class TokenPlace:
    """One place a JWT may travel (SPEC §5.2 `jwt.token_from`): a header, with an
    optional auth scheme in front of the token, or a cookie."""

    header: str | None = None  # the header name, e.g. "Authorization"
    scheme: str | None = None  # e.g. "Bearer": the value is "<scheme> <token>"
    cookie: str | None = None  # the cookie name


BEARER = TokenPlace(header="Authorization", scheme="Bearer")


@dataclass(frozen=True, slots=True)
class SecretPlace:
    """One place a private stream's secret may travel: a header, or a part of
    `Authorization: Basic` (`basic` is "user" or "password"). SPEC §5.1's places
    (the Basic password, `X-Stream-Secret`) unless a declared dialect names others."""

    header: str | None = None
    basic: str | None = None


@dataclass(frozen=True, slots=True)
class JwtSettings:
    """JWT validation settings of a public stream."""

    enforcement: Enforcement
    leeway_seconds: int
    max_lifetime_seconds: int
    keys: KeySource  # `current()` is the key set in force
    subject: Subject | None
    kid_required: bool = True  # False: a token without kid is tried against each key of its alg
    token_from: tuple[TokenPlace, ...] = (BEARER,)  # where the token travels, in order
    issuer: str | None = None  # `iss` must equal it exactly (None: not checked)
    audiences: frozenset[str] = frozenset()  # `aud` must contain one (empty: not checked)
    # What a verified token was judged by, besides its keys: the token cache is
    # dropped when it changes, so a reload that adds an audience applies to cached
    # tokens too. Derived once; the verifier compares it per request.
    claims_tag: str = field(init=False)

    def __post_init__(self) -> None:
        judged = (
            self.leeway_seconds,
            self.max_lifetime_seconds,
            self.subject,
            self.kid_required,
            self.issuer,
            sorted(self.audiences),
        )
        object.__setattr__(self, "claims_tag", repr(judged))


@dataclass(frozen=True, slots=True)
class Cors:
    """Browser origins allowed to call a stream."""

    allowed_origins: frozenset[str]


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class Stream:
    """One tracking source with its credentials and permissions. Compared and hashed
    by identity: each rules version compiles its own, and per-stream caches (the
    policy's verdict memo) are keyed weakly by it, so they go with their version."""

    name: str  # used in logs and metric labels
    id: str  # the public stream ID clients send
    type: StreamType
    dialect: str
    permissions: Permissions
    secrets: tuple[SharedSecret, ...] = ()  # private streams only
    jwt: JwtSettings | None = None  # public streams only
    cors: Cors | None = None
    debug_headers: bool = False
    options: object = None  # the stream keys only its dialect takes, compiled by it
    # Cookie names forwarded to the collector (SPEC §3.3); "*" in it forwards all.
    forward_cookies: frozenset[str] = frozenset()
    mode: Mode = Mode.ENFORCE  # `monitor`: shadow mode for the whole policy (SPEC §5.2a)

    @property
    def enforcement(self) -> Enforcement:
        """The JWT mode in force: `off` when the stream has no `jwt` block."""
        return self.jwt.enforcement if self.jwt else Enforcement.OFF


@dataclass(frozen=True, slots=True)
class Upstream:
    """The collector behind the sidecar."""

    url: str
    timeout_seconds: float
    max_connections: int
    idle_seconds: float = 2.0  # an idle collector connection is reused at most this long
    max_answer_bytes: int = 1_048_576  # a larger collector answer → 502 upstream_invalid
    ca_pem: bytes | None = None  # extra trust anchors for an https collector (`ca_file`)


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """What a client connection may cost (SPEC §2 `server.limits`, nginx/Envoy in spirit)."""

    max_header_bytes: int = 32_768  # the whole request head; more → 431
    max_headers: int = 100  # more → 431
    header_timeout_seconds: float = 10.0  # deadline for the whole head
    body_timeout_seconds: float = 30.0  # deadline for the whole body
    keepalive_timeout_seconds: float = 75.0  # idle client connections are closed after this
    max_connections: int = 10_000  # per process; past it new connections are closed
    max_names_per_object: int = 1000  # keys in one id / property container; more → 413


@dataclass(frozen=True, slots=True)
class Server:
    """Process-level settings."""

    listen: tuple[str, int]
    admin_listen: tuple[str, int]
    max_body_bytes: int
    reload_interval_seconds: float
    shutdown_delay_seconds: float
    upstream: Upstream
    workers: int = 1  # processes sharing the ports (SO_REUSEPORT)
    limits: EdgeLimits = field(default_factory=EdgeLimits)
    # Peers whose Forwarded / X-Forwarded-* / X-Real-IP headers are kept (SPEC §3.3).
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


@dataclass(frozen=True, slots=True)
class Rules:
    """One loaded version of the rules file."""

    server: Server
    streams: tuple[Stream, ...]
    by_id: Mapping[str, Stream]
    version: str  # short hash of the rules file and every file it references
    sources: tuple[Path, ...]  # the rules file and every file it references
    warnings: tuple[str, ...]  # lint warnings, never fatal
    router: Router  # the endpoints of every dialect this version may route to

    def find(self, stream_id: str) -> Stream | None:
        """The stream whose public ID is `stream_id`, if any."""
        return self.by_id.get(stream_id)
