"""Side channels (SPEC §3.3): what cookies and identity headers may carry to the collector.

Browsers send cookies with beacons and credentialed requests, and SDKs keep
identities and traits in them (RudderStack's `rl_trait` cookie holds every
trait, a denied `password` included) and in headers (RudderStack's
`AnonymousId`). Judging the body alone would let these through unjudged, so:

- `cookie_rule`: only the cookies a stream names in `forward_cookies` reach the
  collector (`*`: all); a token cookie of `jwt.token_from` never does;
- `identity_drops`: an identity header a dialect knows is judged as the id it
  carries — forwarded unchanged when that id type passes, dropped when it is
  denied, stripped from any command of the request, or `signed_only` without a
  token that signs that very value.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping

from multidict import CIMultiDictProxy

from sidecar.commands import Verdict
from sidecar.cookies import NO_COOKIES, CookieRule
from sidecar.policy import Decision
from sidecar.principal import Principal
from sidecar.rules import Access, Enforcement, Mode, SetName, Stream

_NONE: frozenset[str] = frozenset()


def cookie_rule(stream: Stream | None) -> CookieRule:
    """The cookies the collector may get for `stream` (none without a stream)."""
    if stream is None or not stream.forward_cookies:
        return NO_COOKIES
    places = stream.jwt.token_from if stream.jwt else ()
    consumed = frozenset(place.cookie for place in places if place.cookie is not None)
    return CookieRule(stream.forward_cookies, consumed)


def identity_drops(
    identity_headers: Mapping[str, str],
    stream: Stream,
    principal: Principal,
    decision: Decision,
    headers: CIMultiDictProxy[str],
) -> frozenset[str]:
    """Lower-case names of the identity headers that must not reach the collector.
    `identity_headers` is the dialect's table (header name → id type)."""
    if not identity_headers or stream.mode is Mode.MONITOR:
        return _NONE  # shadow mode forwards the request unchanged, its headers too
    verdicts = [verdict for verdict, _ in decision.tally]  # each distinct verdict once
    dropped = [
        name.lower()
        for name, id_type in identity_headers.items()
        if name in headers
        and not all(
            _passes(stream, principal, verdicts, id_type, value) for value in headers.getall(name)
        )
    ]
    return frozenset(dropped) if dropped else _NONE


def _passes(
    stream: Stream, principal: Principal, verdicts: Iterable[Verdict], id_type: str, value: str
) -> bool:
    """Whether a header carrying `value` as an id of `id_type` may be forwarded."""
    access = stream.permissions.customer_ids.access(id_type)
    if access is Access.DENY:
        return False
    if any(id_type in v.stripped.get(SetName.CUSTOMER_IDS, ()) for v in verdicts):
        return False
    if access is Access.SIGNED_ONLY and stream.enforcement is Enforcement.ENFORCE:
        return _signs(principal, id_type, value)
    return True  # allow; or signed_only acting as allow (off) or only recorded (monitor)


def _signs(principal: Principal, id_type: str, value: str) -> bool:
    """The token signs this value: as sent, or base64-encoded as RudderStack sends it."""
    signed = principal.signed_ids.get(id_type) if principal.signed else None
    if signed is None:
        return False
    if value == signed:
        return True
    try:
        return base64.b64decode(value, validate=True) == signed.encode()
    except (binascii.Error, ValueError):
        return False
