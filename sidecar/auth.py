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
import weakref
from typing import NamedTuple

from multidict import CIMultiDictProxy

from sidecar import cookies
from sidecar.credentials import INVALID, basic_credentials
from sidecar.errors import Reason, Rejection
from sidecar.principal import ANONYMOUS, Principal, TokenState
from sidecar.rules import Enforcement, SecretPlace, SharedSecret, Stream, StreamType, TokenPlace
from sidecar.tokens import KeyMiss, TokenVerifier

SECRET_HEADER = "X-Stream-Secret"


class Credentials(NamedTuple):
    """What a request presents to its stream, found once and read by every stage that
    needs it: the secret check, the token stage, and the forwarder (never forwards
    `consumed`). Where each travels is the stream's business (`secrets` for private
    streams, `jwt.token_from` places) and, for the stream ID itself, the dialect's.
    (A NamedTuple: immutable, and made once per request for a third of the cost.)"""

    secrets: tuple[bytes, ...]  # presented secrets (private streams)
    tokens: frozenset[str]  # the distinct tokens at the stream's token places
    consumed: frozenset[str]  # lower-case names of credential headers never forwarded


_NO_TOKENS: frozenset[str] = frozenset()


def credentials(
    stream: Stream, headers: CIMultiDictProxy[str], secret_from: tuple[SecretPlace, ...] = ()
) -> Credentials:
    """The credentials the request presents to `stream`; a private stream's secret at
    `secret_from` (the endpoint's places; empty: SPEC §5.1's)."""
    plan = _plan(stream, secret_from)
    secrets = presented_secrets(headers, secret_from) if plan.private else ()
    tokens = _presented_tokens(plan.places, headers) if plan.places else _NO_TOKENS
    if not secrets and not tokens:
        return plan.nothing
    return Credentials(secrets, tokens, plan.consumed)


class _Plan(NamedTuple):
    """What `credentials` reads for one stream and endpoint, derived once."""

    private: bool
    places: tuple[TokenPlace, ...]  # where tokens are read (none with enforcement off)
    consumed: frozenset[str]
    nothing: Credentials  # what a request presenting nothing presents


_PLANS_SIZE = 1024
# Plans by the ids of the stream and the endpoint's `secret_from`, each with a weak
# reference to its stream and the `secret_from` itself: a hit is one lookup and two
# identity checks (a compiled stream hashes by identity, but its places would be
# hashed field by field). A stream of an older rules version dies with it; its
# stale entry can never match a new stream that reuses its id, and goes when the
# table is full.
_PLANS: dict[tuple[int, int], tuple[weakref.ref[Stream], tuple[SecretPlace, ...], _Plan]] = {}


def _plan(stream: Stream, secret_from: tuple[SecretPlace, ...]) -> _Plan:
    key = (id(stream), id(secret_from))
    entry = _PLANS.get(key)
    if entry is not None and entry[0]() is stream and entry[1] is secret_from:
        return entry[2]
    private = stream.type is StreamType.PRIVATE
    places = stream.jwt.token_from if stream.jwt is not None else ()
    consumed = consumed_headers(stream, secret_from)
    plan = _Plan(
        private,
        places if stream.enforcement is not Enforcement.OFF else (),  # consumed, not read
        consumed,
        Credentials((), _NO_TOKENS, consumed),
    )
    if len(_PLANS) >= _PLANS_SIZE:
        _PLANS.clear()
    _PLANS[key] = (weakref.ref(stream), secret_from, plan)
    return plan


async def token_principal(
    stream: Stream, presented: Credentials, verifier: TokenVerifier
) -> Principal:
    """The principal a public stream's token proves. Rejects: token_ambiguous.
    A token that fails verification is not rejected here: the policy decides.
    It awaits only an early refetch of a remote key set after an unknown kid."""
    if not presented.tokens:  # the common tokenless request: nothing more to look at
        return ANONYMOUS
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
    return verified.principal  # built once, when the token was verified


def principal_for(stream: Stream, token: str | None, verifier: TokenVerifier) -> Principal:
    """What `token` proves for `stream` (ANONYMOUS without a token or JWT validation),
    with the keys in force now: no refetch (`trackgate explain`)."""
    if token is None or stream.jwt is None or stream.enforcement is Enforcement.OFF:
        return ANONYMOUS
    try:
        verified = verifier.verify(stream, token)
    except Rejection as failure:
        return Principal(TokenState.INVALID, failure=failure)
    return verified.principal


def single_token(tokens: frozenset[str]) -> str | None:
    """The one token presented, if any. Rejects: token_ambiguous (two different
    tokens, in one place or several)."""
    if len(tokens) > 1:
        raise Rejection(Reason.TOKEN_AMBIGUOUS, "the request carries more than one token")
    return next(iter(tokens)) if tokens else None


def _presented_tokens(
    places: tuple[TokenPlace, ...], headers: CIMultiDictProxy[str]
) -> frozenset[str]:
    """The distinct tokens at `places`. An empty cookie or plain header (a cleared one)
    is no token; an empty `Bearer ` is one, and fails verification as malformed."""
    found: list[str] = []
    for place in places:
        if place.cookie is not None:
            found.extend(
                filter(None, cookies.values_of(headers.getall("Cookie", ()), place.cookie))
            )
            continue
        for raw in headers.getall(place.header or "", ()):
            value = raw.strip()
            if place.scheme is None:
                if value:
                    found.append(value)
                continue
            scheme, _, token = value.partition(" ")
            if scheme.lower() == place.scheme.lower():
                found.append(token.strip())
    return frozenset(found) if found else _NO_TOKENS


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
