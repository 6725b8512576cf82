"""The non-fatal warnings of SPEC §2 (`trackgate check` prints them; loads log them).

Each names the stream and what to change. The anonymous-id and id-type lints
read the stream's dialect: what one format's SDKs track anonymous visitors by,
and which id types it can carry at all.
"""

from __future__ import annotations

from sidecar.dialects import Dialect
from sidecar.keys.remote import RemoteKeys
from sidecar.rules import Access, Enforcement, Mode, SetName, Stream, StreamType

PLACEHOLDER_PREFIX = b"REPLACE-ME"  # the placeholder secrets shipped in deploy/


def lint(stream: Stream, dialect: Dialect) -> list[str]:
    """Every warning for one compiled stream of `dialect`."""
    checks = (
        _shadow_mode,
        _signed_only_off,
        _stale_remote_keys,
        _placeholder_keys,
        _all_cookies,
        _anonymous_id,
        _public_defaults,
        _unknown_id_types,
    )
    return [f"stream {stream.name!r}: {w}" for check in checks for w in check(stream, dialect)]


def _shadow_mode(stream: Stream, dialect: Dialect) -> list[str]:
    if stream.mode is Mode.MONITOR:
        return [
            "mode is monitor: nothing is stripped or rejected on this stream, only counted "
            "(trackgate_would_reject_total, trackgate_would_strip_total); set mode: enforce "
            "when the counts are what you expect"
        ]
    return []


def _signed_only_off(stream: Stream, dialect: Dialect) -> list[str]:
    if stream.permissions.uses_signed_only() and stream.enforcement is Enforcement.OFF:
        return [
            "signed_only items act as allow until JWT validation is enabled "
            "(jwt.enforcement is off or there is no jwt block)"
        ]
    return []


def _stale_remote_keys(stream: Stream, dialect: Dialect) -> list[str]:
    if stream.jwt is None or not isinstance(stream.jwt.keys, RemoteKeys):
        return []
    remote = stream.jwt.keys.settings
    if remote.stale_if_error_seconds >= remote.refresh_seconds:
        return []
    return [
        "jwt.jwks.stale_if_error_seconds is below refresh_seconds: the keys lapse between "
        "two refreshes; keep the window longer than the refresh interval"
    ]


def _placeholder_keys(stream: Stream, dialect: Dialect) -> list[str]:
    keys = stream.jwt.keys.current().by_kid.values() if stream.jwt is not None else ()
    return [
        f"jwt key {key.kid!r} is still a placeholder; replace it "
        "(trackgate keygen hmac) before turning enforcement on"
        for key in keys
        if isinstance(key.key, bytes) and key.key.startswith(PLACEHOLDER_PREFIX)
    ]


def _all_cookies(stream: Stream, dialect: Dialect) -> list[str]:
    if "*" in stream.forward_cookies:
        return [
            "forward_cookies is ['*']: every cookie reaches the collector unjudged "
            "(SDKs keep identities and traits in cookies); list the names it needs"
        ]
    return []


def _public_defaults(stream: Stream, dialect: Dialect) -> list[str]:
    if stream.type is not StreamType.PUBLIC:
        return []
    return [
        f"{name.value}.default is allow on a public stream; undefined names flow in unchecked"
        for name in (SetName.EVENT_TYPES, SetName.CUSTOMER_PROPERTIES)
        if stream.permissions.of(name).default is Access.ALLOW
    ]


def _anonymous_id(stream: Stream, dialect: Dialect) -> list[str]:
    """The format's anonymous id must pass on a public stream: web SDKs track by it."""
    access = stream.permissions.customer_ids.access(dialect.anonymous_id)
    if stream.type is not StreamType.PUBLIC or access is Access.ALLOW:
        return []
    return [
        f"customer id {dialect.anonymous_id!r} is {access.value}; the {dialect.name} web SDKs "
        f"track anonymous visitors by {dialect.anonymous_id}, so all anonymous traffic would stop"
    ]


def _unknown_id_types(stream: Stream, dialect: Dialect) -> list[str]:
    """Id types the format never carries, named in a rule or the template: never matched."""
    if dialect.id_types is None:
        return []
    have = ", ".join(sorted(dialect.id_types))
    return [
        f"customer id {name!r} is never sent in the {dialect.name} dialect ({have}); "
        "the rule can never match"
        for name in sorted(stream.permissions.customer_ids.listed.keys() - dialect.id_types)
    ]
