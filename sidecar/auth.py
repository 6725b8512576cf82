"""Authentication: request credentials → a `Principal`.

Private streams need a shared secret on every request (the Basic password or
`X-Stream-Secret`), compared in constant time against every active secret.
Public streams with a `jwt` block have their token verified by `tokens.py`; the
result rides on the principal for the policy to use. The token is read from the
places `jwt.token_from` lists (SPEC §5.2; `Authorization: Bearer` by default):
browser SDKs often cannot set `Authorization` (analytics.js overwrites it with
its Basic write key), so a header of its own or a cookie set by a first-party
backend may carry it. Wherever it travels, it is consumed: never forwarded.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from multidict import CIMultiDictProxy

from sidecar import cookies
from sidecar.credentials import INVALID, basic_credentials
from sidecar.errors import Reason, Rejection
from sidecar.rules import Enforcement, SecretPlace, SharedSecret, Stream, StreamType, TokenPlace
from sidecar.tokens import KeyMiss, TokenVerifier

SECRET_HEADER = "X-Stream-Secret"


class TokenState(StrEnum):
    ABSENT = "absent"
    VALID = "valid"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who sent the request, as far as the sidecar could verify."""

    token: TokenState = TokenState.ABSENT
    failure: Rejection | None = None  # why the token is INVALID
    signed_ids: Mapping[str, str] = field(default_factory=dict)  # id type → signed value

    @property
    def signed(self) -> bool:
        return self.token is TokenState.VALID


ANONYMOUS = Principal()


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request presents to its stream, found once and read by every stage that
    needs it: the secret check, the token stage, and the forwarder (never forwards
    `consumed`). Where each travels is the stream's business (`secrets` for private
    streams, `jwt.token_from` places) and, for the stream ID itself, the dialect's."""

    secrets: tuple[bytes, ...]  # presented secrets (private streams)
    tokens: frozenset[str]  # the distinct tokens at the stream's token places
    consumed: frozenset[str]  # lower-case names of credential headers never forwarded


def credentials(
    stream: Stream, headers: CIMultiDictProxy[str], secret_from: tuple[SecretPlace, ...] = ()
) -> Credentials:
    """The credentials the request presents to `stream`; a private stream's secret at
    `secret_from` (the endpoint's places; empty: SPEC §5.1's)."""
    places = stream.jwt.token_from if stream.jwt is not None else ()
    if stream.enforcement is Enforcement.OFF:
        places = ()  # tokens are not read (still consumed)
    private = stream.type is StreamType.PRIVATE
    return Credentials(
        secrets=presented_secrets(headers, secret_from) if private else (),
        tokens=frozenset(token for place in places for token in _tokens_at(place, headers)),
        consumed=consumed_headers(stream, secret_from),
    )


async def token_principal(
    stream: Stream, presented: Credentials, verifier: TokenVerifier
) -> Principal:
    """The principal a public stream's token proves. Rejects: token_ambiguous.
    A token that fails verification is not rejected here: the policy decides.
    It awaits only an early refetch of a remote key set after an unknown kid."""
    if stream.jwt is None or stream.enforcement is Enforcement.OFF:
        return ANONYMOUS
    token = single_token(presented.tokens)
    if token is None:
        return ANONYMOUS
    try:
        try:
            verified = verifier.verify(stream, token)  # no await on the common path
        except KeyMiss as miss:  # a kid the keys lack: it may be new (one early refetch)
            verified = await verifier.verify_after_refetch(stream, token, miss)
    except Rejection as failure:
        return Principal(TokenState.INVALID, failure=failure)
    return Principal(TokenState.VALID, signed_ids=verified.signed_ids)


def principal_for(stream: Stream, token: str | None, verifier: TokenVerifier) -> Principal:
    """What `token` proves for `stream` (ANONYMOUS without a token or JWT validation),
    with the keys in force now: no refetch (`trackgate explain`)."""
    if token is None or stream.jwt is None or stream.enforcement is Enforcement.OFF:
        return ANONYMOUS
    try:
        verified = verifier.verify(stream, token)
    except Rejection as failure:
        return Principal(TokenState.INVALID, failure=failure)
    return Principal(TokenState.VALID, signed_ids=verified.signed_ids)


def single_token(tokens: frozenset[str]) -> str | None:
    """The one token presented, if any. Rejects: token_ambiguous (two different
    tokens, in one place or several)."""
    if len(tokens) > 1:
        raise Rejection(Reason.TOKEN_AMBIGUOUS, "the request carries more than one token")
    return next(iter(tokens)) if tokens else None


def _tokens_at(place: TokenPlace, headers: CIMultiDictProxy[str]) -> Iterator[str]:
    """The tokens at one place. An empty cookie or plain header (a cleared one) is no
    token; an empty `Bearer ` is one, and fails verification as malformed."""
    if place.cookie is not None:
        yield from filter(None, cookies.values_of(headers.getall("Cookie", ()), place.cookie))
        return
    for value in headers.getall(place.header or "", ()):
        if place.scheme is None:
            if value.strip():
                yield value.strip()
            continue
        scheme, _, credentials = value.strip().partition(" ")
        if scheme.lower() == place.scheme.lower():
            yield credentials.strip()


def check_secret(stream: Stream, presented: Credentials) -> None:
    """A private stream's secret. Rejects: secret_missing, secret_invalid."""
    if not presented.secrets:
        raise Rejection(
            Reason.SECRET_MISSING,
            f"stream {stream.name!r} is private: send its secret as the HTTP Basic password "
            f"or in the {SECRET_HEADER} header",
        )
    if not all(matches(stream.secrets, secret) for secret in presented.secrets):
        raise Rejection(
            Reason.SECRET_INVALID, f"the secret for stream {stream.name!r} is not valid"
        )


DEFAULT_SECRET_FROM = (SecretPlace(header=SECRET_HEADER), SecretPlace(basic="password"))


def presented_secrets(
    headers: CIMultiDictProxy[str], places: tuple[SecretPlace, ...] = ()
) -> tuple[bytes, ...]:
    """Every secret the request carries at `places` (default: `X-Stream-Secret` values
    and the Basic password). An empty Basic part (Segment's `writeKey:`) presents no
    secret; undecodable Basic credentials present an invalid one."""
    found: list[bytes] = []
    for place in places or DEFAULT_SECRET_FROM:
        if place.header is not None:
            found.extend(value.encode() for value in headers.getall(place.header, ()))
            continue
        basic = basic_credentials(headers.get("Authorization", ""))
        if basic is INVALID:
            found.append(b"")  # matches nothing: secret_invalid
        elif basic is not None:
            part = basic.password if place.basic == "password" else basic.user.encode()
            if part:
                found.append(part)
    return tuple(found)


def matches(secrets: tuple[SharedSecret, ...], presented: bytes) -> bool:
    """Constant-time comparison against every active secret (no early exit)."""
    digest = hashlib.sha256(presented).digest()
    found = False
    for secret in secrets:
        found |= hmac.compare_digest(digest, secret.digest)
    return found and bool(presented)


def consumed_headers(stream: Stream, secret_from: tuple[SecretPlace, ...] = ()) -> frozenset[str]:
    """Credential headers the sidecar consumed for `stream`: never forwarded. (Token
    cookies are consumed from the forwarded `Cookie` header: `sidechannels`.)"""
    places = stream.jwt.token_from if stream.jwt is not None else ()
    return _consumed(stream.type is StreamType.PRIVATE, places, secret_from)


@functools.lru_cache(maxsize=256)
def _consumed(
    private: bool, places: tuple[TokenPlace, ...], secret_from: tuple[SecretPlace, ...]
) -> frozenset[str]:
    """Built once per distinct configuration, not per request."""
    names = {SECRET_HEADER.lower()}
    if private:
        names.add("authorization")
        names.update(p.header.lower() for p in secret_from if p.header is not None)
    names.update(place.header.lower() for place in places if place.header is not None)
    return frozenset(names)
