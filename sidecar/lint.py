"""The non-fatal warnings of SPEC §2 for a compiled stream: printed by `trackgate
check` and logged at load. Each names the stream and what to change."""

from __future__ import annotations

from sidecar.keys.remote import RemoteKeys
from sidecar.rules import Access, Enforcement, SetName, Stream, StreamType

PLACEHOLDER_PREFIX = b"REPLACE-ME"  # the placeholder secrets shipped in deploy/


def lint(stream: Stream) -> list[str]:
    """The non-fatal warnings of SPEC §2 for one compiled stream."""
    warnings = []
    where = f"stream {stream.name!r}"
    if stream.permissions.uses_signed_only() and stream.enforcement is Enforcement.OFF:
        warnings.append(
            f"{where}: signed_only items act as allow until JWT validation is enabled "
            "(jwt.enforcement is off or there is no jwt block)"
        )
    if stream.jwt is not None and isinstance(stream.jwt.keys, RemoteKeys):
        remote = stream.jwt.keys.settings
        if remote.stale_if_error_seconds < remote.refresh_seconds:
            warnings.append(
                f"{where}: jwt.jwks.stale_if_error_seconds is below refresh_seconds: the keys "
                "lapse between two refreshes; keep the window longer than the refresh interval"
            )
    if stream.jwt is not None:
        for key in stream.jwt.keys.current().by_kid.values():
            if isinstance(key.key, bytes) and key.key.startswith(PLACEHOLDER_PREFIX):
                warnings.append(
                    f"{where}: jwt key {key.kid!r} is still a placeholder; replace it "
                    "(trackgate keygen hmac) before turning enforcement on"
                )
    if "*" in stream.forward_cookies:
        warnings.append(
            f"{where}: forward_cookies is ['*']: every cookie reaches the collector unjudged "
            "(SDKs keep identities and traits in cookies); list the names it needs"
        )
    if stream.type is StreamType.PUBLIC:
        cookie = stream.permissions.customer_ids.access("cookie")
        if cookie is not Access.ALLOW:
            warnings.append(
                f"{where}: customer id 'cookie' is {cookie.value}; the web SDK tracks anonymous "
                "visitors by cookie, so all anonymous traffic would stop"
            )
        for name in (SetName.EVENT_TYPES, SetName.CUSTOMER_PROPERTIES):
            if stream.permissions.of(name).default is Access.ALLOW:
                warnings.append(
                    f"{where}: {name.value}.default is allow on a public stream; "
                    "undefined names flow in unchecked"
                )
    return warnings
