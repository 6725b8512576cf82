"""JWT verification for public streams (SPEC §5.2), in the spec's order.

    size → compact JWS → kid → alg → crit → signature → exp → nbf → identity
         → issuer → audience

Each failure is its own reason code. The algorithm always comes from the
configured key; `jku`, `x5u`, `jwk` and `x5c` headers are never read. Verified
tokens are cached per stream (keyed by a hash of the token, never past `exp`);
a stream's cache is dropped as soon as its keys or the claims it checks change,
so a deleted key stops working with the next rules version or key-set fetch.
A kid the stream's keys lack may be cured by one early refetch of a remote key
set (SPEC §5.2): `verify_after_refetch` awaits it; `verify` never waits.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import blake2s
from types import MappingProxyType
from typing import Any

from jwt.algorithms import get_default_algorithms

from sidecar.errors import Reason, Rejection
from sidecar.jsoncodec import parse_json
from sidecar.keys import KeySet, VerificationKey
from sidecar.principal import Principal, TokenState
from sidecar.rules import JwtSettings, Stream

MAX_TOKEN_BYTES = 8192
CACHE_SIZE_PER_STREAM = 10_000
_COMPACT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+$")
_ALGORITHMS = get_default_algorithms()
_UNDERSTOOD_CRIT: frozenset[str] = frozenset()  # no JWS extensions are supported


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """What a valid token proves."""

    signed_ids: Mapping[str, str]  # id type → signed value
    expires_at: float
    # The request's principal, built once here and reused by every cache hit.
    principal: Principal = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        principal = Principal(TokenState.VALID, signed_ids=self.signed_ids)
        object.__setattr__(self, "principal", principal)


def verify_jws(token: str, keys: KeySet, kid_required: bool = True) -> tuple[dict[str, Any], bytes]:
    """The JWS layer: header, key, algorithm and signature. Returns (header, payload).
    Rejects: token_malformed, token_unknown_kid, token_algorithm_mismatch, token_bad_signature,
    keys_unavailable."""
    if len(token) > MAX_TOKEN_BYTES:
        raise _fail(Reason.TOKEN_MALFORMED, f"the token is longer than {MAX_TOKEN_BYTES} bytes")
    if not _COMPACT.match(token):
        raise _fail(
            Reason.TOKEN_MALFORMED, "the token is not a compact JWS of three base64url segments"
        )
    segments = token.split(".")
    header = _json_object(_b64decode(segments[0]), "header")
    if kid_required or "kid" in header:
        candidates: Sequence[VerificationKey] = (_key_for(header, keys),)
    else:
        candidates = _keys_for_alg(header, keys)
    _check_crit(header)
    signature = _b64decode(segments[2])
    payload = _b64decode(segments[1])
    signing_input = f"{segments[0]}.{segments[1]}".encode()
    if not any(_signature_valid(key, signing_input, signature) for key in candidates):
        raise _fail(Reason.TOKEN_BAD_SIGNATURE, "the token signature is not valid")
    return header, payload


def check_claims(payload: bytes, settings: JwtSettings, now: float) -> VerifiedToken:
    """The claims layer: exp, lifetime, nbf, identity, issuer and audience.
    Rejects: token_malformed, token_exp_missing, token_expired, token_lifetime_too_long,
    token_claims_invalid, token_issuer_invalid, token_audience_invalid."""
    claims = _json_object(payload, "claims")
    exp = _number(claims.get("exp"))
    if exp is None:
        raise _fail(Reason.TOKEN_EXP_MISSING, "the token has no numeric exp claim")
    if exp < now - settings.leeway_seconds:
        raise _fail(Reason.TOKEN_EXPIRED, "the token has expired")
    if exp > now + settings.max_lifetime_seconds:
        days = settings.max_lifetime_seconds // 86_400
        raise _fail(Reason.TOKEN_LIFETIME_TOO_LONG, f"the token expires more than {days} days out")
    not_before = _number(claims.get("nbf", now))
    if not_before is None or not_before > now + settings.leeway_seconds:
        raise _fail(Reason.TOKEN_CLAIMS_INVALID, "the token is not valid yet (nbf)")
    signed_ids = _identity(claims, settings)
    if settings.issuer is not None and claims.get("iss") != settings.issuer:
        raise _fail(Reason.TOKEN_ISSUER_INVALID, "the token's iss is not this stream's issuer")
    if settings.audiences and not _has_audience(claims.get("aud"), settings.audiences):
        raise _fail(
            Reason.TOKEN_AUDIENCE_INVALID, "the token's aud names none of this stream's audiences"
        )
    return VerifiedToken(signed_ids=signed_ids, expires_at=exp)


def _has_audience(aud: object, audiences: frozenset[str]) -> bool:
    """`aud` is a string or a list of strings, and one of them is configured."""
    if isinstance(aud, str):
        return aud in audiences
    if not isinstance(aud, list) or not all(isinstance(item, str) for item in aud):
        return False
    return not audiences.isdisjoint(aud)


class KeyMiss(Rejection):
    """The token's kid is not in the stream's key set, or the set is empty: the one
    failure an early refetch of a remote key set may cure."""


class TokenVerifier:
    """Verifies tokens with a per-stream cache of verified ones."""

    def __init__(
        self, maxsize: int = CACHE_SIZE_PER_STREAM, clock: Callable[[], float] = time.time
    ) -> None:
        self._maxsize = maxsize
        self._clock = clock
        self._caches: dict[str, VerifiedCache] = {}
        self.signature_checks = 0  # how many tokens went through the JWS layer

    def verify(self, stream: Stream, token: str) -> VerifiedToken:
        """A verified token for `stream`, from the cache when it holds one.
        Rejects: every token_* reason of `verify_jws` and `check_claims`, and
        keys_unavailable (a remote key source has no keys)."""
        settings = stream.jwt
        if settings is None:
            raise RuntimeError(f"stream {stream.name!r} has no jwt settings")
        keys = settings.keys.current()
        cache = self._caches.get(stream.name)
        if (
            cache is None
            or cache.fingerprint != keys.fingerprint
            or cache.tag != settings.claims_tag
        ):
            cache = self._cache(stream.name, keys.fingerprint, settings.claims_tag)
        digest = token_digest(token)
        now = self._clock()
        verified = cache.get(digest)
        if verified is not None and now < verified.expires_at:
            return verified  # the cache path: one lookup and one comparison
        self.signature_checks += 1
        _, payload = verify_jws(token, keys, settings.kid_required)
        verified = check_claims(payload, settings, now)
        cache.put(digest, verified, now)
        return verified

    async def verify_after_refetch(
        self, stream: Stream, token: str, miss: KeyMiss
    ) -> VerifiedToken:
        """After `verify` failed with `miss` (the kid is not among the stream's keys):
        `verify` once more when the key source allowed an early refetch and it ended
        (SPEC §5.2), else `miss` again. Rejects: as `verify`."""
        if stream.jwt is None or not await stream.jwt.keys.refetch():
            raise miss
        return self.verify(stream, token)

    def _cache(self, stream: str, fingerprint: str, tag: str) -> VerifiedCache:
        """The stream's cache; a new, empty one whenever the stream's keys or the
        claims it checks changed."""
        held = self._caches.get(stream)
        if held is None or held.fingerprint != fingerprint or held.tag != tag:
            held = self._caches[stream] = VerifiedCache(fingerprint, tag, self._maxsize)
        return held


def token_digest(token: str) -> bytes:
    """The cache key of `token`: its BLAKE2s-256 digest (the token itself is not kept).
    BLAKE2s rather than SHA-256: as collision-resistant, and hashing a token costs
    about 60 % of what OpenSSL's SHA-256 does, most of it object set-up."""
    return blake2s(token.encode()).digest()


class VerifiedCache(dict[bytes, VerifiedToken]):
    """One stream's verified tokens under one key set and claims tag, by the token's
    digest (`token_digest`; the token itself is not kept). A plain dict: a hit is one lookup and a
    comparison with `exp` (`verify`). Full, it first drops the expired tokens, then
    the oldest quarter (insertion order), so a flood of new tokens costs one pass
    per `maxsize / 4` insertions."""

    __slots__ = ("fingerprint", "maxsize", "tag")

    def __init__(self, fingerprint: str, tag: str, maxsize: int) -> None:
        super().__init__()
        self.fingerprint, self.tag, self.maxsize = fingerprint, tag, maxsize

    def put(self, digest: bytes, token: VerifiedToken, now: float) -> None:
        if len(self) >= self.maxsize:
            for expired in [k for k, v in self.items() if v.expires_at <= now]:
                del self[expired]
            if len(self) >= self.maxsize:
                oldest = list(itertools.islice(self, max(1, self.maxsize // 4)))
                for key in oldest:
                    del self[key]
        self[digest] = token


def _key_for(header: Mapping[str, Any], keys: KeySet) -> VerificationKey:
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _fail(Reason.TOKEN_UNKNOWN_KID, "the token header has no kid")
    key = keys.get(kid)
    if key is None and keys.unavailable:
        raise KeyMiss(
            Reason.KEYS_UNAVAILABLE,
            "this stream's keys are unavailable (its identity provider cannot be reached); "
            "retry later",
        )
    if key is None:
        raise KeyMiss(Reason.TOKEN_UNKNOWN_KID, "the token's kid is not a key of this stream")
    if header.get("alg") != key.alg:
        raise _fail(
            Reason.TOKEN_ALGORITHM_MISMATCH,
            f"the token's alg does not match key {kid!r} ({key.alg})",
        )
    return key


def _keys_for_alg(header: Mapping[str, Any], keys: KeySet) -> Sequence[VerificationKey]:
    """A kid-less token's candidate keys (`jwt.kid_required: false`): each key whose
    alg equals the header's. Rejects: keys_unavailable, token_algorithm_mismatch."""
    if keys.unavailable:
        raise KeyMiss(
            Reason.KEYS_UNAVAILABLE,
            "this stream's keys are unavailable (its identity provider cannot be reached); "
            "retry later",
        )
    alg = header.get("alg")
    candidates = [key for key in keys.by_kid.values() if key.alg == alg]
    if not candidates:
        raise _fail(Reason.TOKEN_ALGORITHM_MISMATCH, "no key of this stream has the token's alg")
    return candidates


def _check_crit(header: Mapping[str, Any]) -> None:
    if "crit" not in header:
        return
    crit = header["crit"]
    if (
        not isinstance(crit, list)
        or not crit
        or not all(isinstance(name, str) for name in crit)
        or set(crit) - _UNDERSTOOD_CRIT
    ):
        raise _fail(Reason.TOKEN_MALFORMED, "the token has crit header parameters not understood")


def _signature_valid(key: VerificationKey, signing_input: bytes, signature: bytes) -> bool:
    try:
        return bool(_ALGORITHMS[key.alg].verify(signing_input, key.key, signature))
    except (ValueError, TypeError, IndexError, binascii.Error):
        return False  # a signature of the wrong shape (e.g. odd ECDSA length)


def _identity(claims: Mapping[str, Any], settings: JwtSettings) -> Mapping[str, str]:
    if settings.subject is not None:
        value = claims.get(settings.subject.claim)
        if not isinstance(value, str) or not value:
            raise _fail(
                Reason.TOKEN_CLAIMS_INVALID,
                f"the token's {settings.subject.claim} claim must be a non-empty string",
            )
        return MappingProxyType({settings.subject.id_type: value})
    ids = claims.get("ids")
    if (
        not isinstance(ids, dict)
        or not ids
        or not all(isinstance(k, str) and k and isinstance(v, str) and v for k, v in ids.items())
    ):
        raise _fail(
            Reason.TOKEN_CLAIMS_INVALID,
            "the token's ids claim must map id types to non-empty strings",
        )
    return MappingProxyType(dict(ids))


def _b64decode(segment: str) -> bytes:
    """Strict, canonical, unpadded base64url (the token already matched `_COMPACT`)."""
    try:
        decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise _fail(Reason.TOKEN_MALFORMED, "a token segment is not base64url") from None
    if base64.urlsafe_b64encode(decoded).rstrip(b"=").decode() != segment:
        raise _fail(Reason.TOKEN_MALFORMED, "a token segment is not canonical base64url")
    return decoded


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    """Strict JSON, as for request bodies: no duplicate members (RFC 7515 §5.2),
    no NaN or Infinity (an `exp` of NaN would pass every comparison)."""
    try:
        document = parse_json(raw)
    except Rejection:
        raise _fail(Reason.TOKEN_MALFORMED, f"the token {what} is not a JSON object") from None
    if not isinstance(document, dict):
        raise _fail(Reason.TOKEN_MALFORMED, f"the token {what} is not a JSON object")
    return document


def _number(value: object) -> float | None:
    """`value` when it is a JSON number (not a boolean). Integers stay integers:
    Python compares them with floats exactly, and one past the float range
    (`exp: 1e400` written out in digits) must not overflow a conversion."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return None


def _fail(reason: Reason, message: str) -> Rejection:
    return Rejection(reason, message)
