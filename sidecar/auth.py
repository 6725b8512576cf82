"""Authentication: request credentials → a `Principal`.

Private streams need a shared secret on every request (the Basic password or
`X-Stream-Secret`), compared in constant time against every active secret.
Public streams with a `jwt` block have their bearer token verified by
`tokens.py`; the result rides on the principal for the policy to use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from multidict import CIMultiDictProxy

from sidecar.errors import Reason, Rejection
from sidecar.rules import Enforcement, SharedSecret, Stream, StreamType
from sidecar.tokens import TokenVerifier

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


def token_principal(
    stream: Stream, headers: CIMultiDictProxy[str], verifier: TokenVerifier
) -> Principal:
    """The principal a public stream's bearer token proves. Rejects: token_ambiguous.
    A token that fails verification is not rejected here: the policy decides."""
    if stream.jwt is None or stream.enforcement is Enforcement.OFF:
        return ANONYMOUS
    return principal_for(stream, bearer_token(headers), verifier)


def principal_for(stream: Stream, token: str | None, verifier: TokenVerifier) -> Principal:
    """What `token` proves for `stream` (ANONYMOUS without a token or JWT validation)."""
    if token is None or stream.jwt is None or stream.enforcement is Enforcement.OFF:
        return ANONYMOUS
    try:
        verified = verifier.verify(stream, token)
    except Rejection as failure:
        return Principal(TokenState.INVALID, failure=failure)
    return Principal(TokenState.VALID, signed_ids=verified.signed_ids)


def bearer_token(headers: CIMultiDictProxy[str]) -> str | None:
    """The bearer token of the request. Rejects: token_ambiguous (two different tokens)."""
    tokens = set()
    for value in headers.getall("Authorization", ()):
        scheme, _, credentials = value.strip().partition(" ")
        if scheme.lower() == "bearer":
            tokens.add(credentials.strip())
    if len(tokens) > 1:
        raise Rejection(Reason.TOKEN_AMBIGUOUS, "the request carries more than one bearer token")
    return tokens.pop() if tokens else None


def check_secret(stream: Stream, headers: CIMultiDictProxy[str]) -> None:
    """A private stream's secret. Rejects: secret_missing, secret_invalid."""
    presented = presented_secrets(headers)
    if not presented:
        raise Rejection(
            Reason.SECRET_MISSING,
            f"stream {stream.name!r} is private: send its secret as the HTTP Basic password "
            f"or in the {SECRET_HEADER} header",
        )
    if not all(matches(stream.secrets, secret) for secret in presented):
        raise Rejection(
            Reason.SECRET_INVALID, f"the secret for stream {stream.name!r} is not valid"
        )


def presented_secrets(headers: CIMultiDictProxy[str]) -> list[bytes]:
    """Every secret the request carries: `X-Stream-Secret` values and the Basic password.
    A Basic header with an empty password (Segment's `writeKey:`) presents no secret;
    undecodable Basic credentials present an invalid one."""
    found = [value.encode() for value in headers.getall(SECRET_HEADER, ())]
    scheme, _, credentials = headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True)
        except (binascii.Error, ValueError):
            found.append(b"")  # matches nothing: secret_invalid
        else:
            password = decoded.partition(b":")[2]
            if password:
                found.append(password)
    return found


def matches(secrets: tuple[SharedSecret, ...], presented: bytes) -> bool:
    """Constant-time comparison against every active secret (no early exit)."""
    digest = hashlib.sha256(presented).digest()
    found = False
    for secret in secrets:
        found |= hmac.compare_digest(digest, secret.digest)
    return found and bool(presented)


def consumed_headers(stream: Stream) -> frozenset[str]:
    """Credential headers the sidecar consumed for `stream`: never forwarded."""
    if stream.type is StreamType.PRIVATE or stream.jwt is not None:
        return frozenset({"authorization", SECRET_HEADER.lower()})
    return frozenset({SECRET_HEADER.lower()})
