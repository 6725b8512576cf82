"""Key sources: one module per place a stream's JWT keys come from (`base` is the seam)."""

from __future__ import annotations

from sidecar.keys.base import KeySet, KeySource, VerificationKey, combine
from sidecar.keys.jwks_file import jwks_file_keys, load_jwks
from sidecar.keys.material import HMAC_MIN_BYTES, MIN_RSA_BITS, jwk_key, load_key
from sidecar.keys.static import static_keys

__all__ = [
    "HMAC_MIN_BYTES",
    "MIN_RSA_BITS",
    "KeySet",
    "KeySource",
    "VerificationKey",
    "combine",
    "jwk_key",
    "jwks_file_keys",
    "load_jwks",
    "load_key",
    "static_keys",
]
