"""Who sent a request, as far as the sidecar could verify: the `Principal`.

`auth` makes the anonymous and the failed ones; `tokens` makes a valid token's
once, when it verifies the token, and caches it with the token, so a cached
token's request reuses it whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from sidecar.errors import Rejection


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
    # Derived once, read per request: a valid token's principal is built once per
    # verification and reused by every request carrying the cached token.
    signed: bool = field(init=False, repr=False, compare=False)  # the token is VALID
    # The id types a valid token signs (the policy's verdict memo key), else None.
    signs: frozenset[str] | None = field(init=False, repr=False, compare=False)
    # The `trackgate_jwt_verifications_total` result: "valid", a token reason, or None.
    result: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        signed = self.token is TokenState.VALID
        object.__setattr__(self, "signed", signed)
        object.__setattr__(self, "signs", frozenset(self.signed_ids) if signed else None)
        failure = self.failure
        result = "valid" if signed else failure.reason.value if failure is not None else None
        object.__setattr__(self, "result", result)


ANONYMOUS = Principal()
