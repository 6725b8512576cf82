"""The key-source seam: where a stream's JWT verification keys come from.

A `KeySource` answers `current()` with an immutable `KeySet` snapshot. The
token verifier reads one snapshot per verification and keys its cache by the
snapshot's fingerprint, so a rotated or deleted key flushes the stream's cache
the moment the source publishes a new set. Sources loaded from the rules file
(`static`, `jwks_file`) publish one set per rules version; a source that
refreshes itself (`remote`) swaps its snapshot off the request path, and may be
asked for one early refetch when a token names a kid it does not hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A JWT verification key, ready for PyJWT."""

    kid: str
    alg: str
    key: Any  # bytes for HMAC, a `cryptography` public key otherwise
    fingerprint: str  # sha256 of the key material, to notice rotations


@dataclass(frozen=True, slots=True)
class KeySet:
    """One snapshot of a stream's keys, by kid."""

    by_kid: Mapping[str, VerificationKey] = field(default_factory=lambda: MappingProxyType({}))
    # True for the empty set of a remote source that has no keys (never fetched, or
    # stale beyond its window): tokens then fail `keys_unavailable`, not unknown kid.
    unavailable: bool = False
    fingerprint: str = field(init=False)  # changes whenever any key changes

    def __post_init__(self) -> None:  # derived once: the token cache reads it per request
        keys = sorted(f"{k.kid}:{k.alg}:{k.fingerprint}" for k in self.by_kid.values())
        object.__setattr__(self, "fingerprint", ",".join(keys))

    @classmethod
    def of(cls, keys: Iterable[VerificationKey]) -> KeySet:
        return cls(MappingProxyType({key.kid: key for key in keys}))

    def get(self, kid: str) -> VerificationKey | None:
        return self.by_kid.get(kid)

    def __len__(self) -> int:
        return len(self.by_kid)


UNAVAILABLE = KeySet(unavailable=True)  # a refreshing source's set while it has no keys


class KeySource(Protocol):
    """Where a stream's keys come from."""

    @property
    def kind(self) -> str:
        """ "static", "jwks_file", "jwks_url", …: named in errors, /config and /readyz."""

    def current(self) -> KeySet:
        """The keys in force now (never blocks, never does I/O)."""

    async def refetch(self) -> bool:
        """A token named a kid `current()` lacks: fetch early if the source may now.
        True when a fetch ended (the keys may have changed), False when none ran."""


@dataclass(frozen=True, slots=True)
class FixedKeys:
    """Keys fixed for the life of a rules version (a changed file makes a new version)."""

    kind: str
    keys: KeySet

    def current(self) -> KeySet:
        return self.keys

    async def refetch(self) -> bool:
        return False  # nothing to fetch: the next rules version brings new keys


def combine(sources: Iterable[FixedKeys]) -> FixedKeys:
    """One source for a stream's fixed sources, merged once, at load (kids are unique
    across them, checked when each source loads)."""
    sources = tuple(sources)
    keys = KeySet.of(k for s in sources for k in s.current().by_kid.values())
    return FixedKeys("+".join(s.kind for s in sources) or "static", keys)
