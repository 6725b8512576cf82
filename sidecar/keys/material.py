"""Key material: one key (a secret, a PEM, a JWK) → a checked `VerificationKey` (SPEC §2).

Every check fails with a `ConfigError` naming the key's path: empty or short
HMAC secrets, RSA keys under 2048 bits, a key whose type does not fit its
`alg`, private key material where a public key belongs. Every key source
(`static`, `jwks_file`, and any source added later) loads keys through here,
so all of them apply the same checks.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt import PyJWK
from jwt.exceptions import InvalidKeyError, PyJWKError

from sidecar.errors import ConfigError
from sidecar.keys.base import VerificationKey
from sidecar.sources import SourceReader

HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
MIN_RSA_BITS = 2048


def load_key(raw: Mapping[str, Any], path: str, reader: SourceReader) -> VerificationKey:
    """One `jwt.keys[]` entry → a `VerificationKey`."""
    kid, alg = raw["kid"], raw["alg"]
    if alg in HMAC_MIN_BYTES:
        if "secret" not in raw:
            raise ConfigError(
                f"{path}.public_key: {alg} is an HMAC algorithm; it needs a shared `secret`"
            )
        secret = reader.read_secret(raw["secret"], f"{path}.secret")
        return hmac_key(kid, alg, secret, f"{path}.secret")
    if "public_key" not in raw:
        raise ConfigError(
            f"{path}.secret: {alg} is a public-key algorithm; it needs a `public_key` PEM file"
        )
    pem = reader.read(raw["public_key"], f"{path}.public_key")
    return public_key(kid, alg, pem, f"{path}.public_key")


def hmac_key(kid: str, alg: str, secret: bytes, path: str) -> VerificationKey:
    """An HMAC key, refused when empty, short, or shaped like a public key."""
    if not secret:
        raise ConfigError(f"{path}: {alg} secret is empty")
    if _looks_asymmetric(secret):
        raise ConfigError(
            f"{path}: {alg} needs a shared secret, but this looks like a PEM or JWK public key "
            "(key confusion); use an RS/PS/ES/EdDSA alg with `public_key` instead"
        )
    needed = HMAC_MIN_BYTES[alg]
    if len(secret) < needed:
        raise ConfigError(
            f"{path}: {alg} secret is {len(secret)} bytes; at least {needed} are needed"
        )
    return VerificationKey(kid=kid, alg=alg, key=secret, fingerprint=fingerprint(secret))


def public_key(kid: str, alg: str, pem: bytes, path: str) -> VerificationKey:
    """A PEM public key checked against `alg`."""
    if b"PRIVATE KEY" in pem:
        raise ConfigError(
            f"{path}: this is a private key; give the sidecar only the public key "
            "(openssl pkey -pubout)"
        )
    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise ConfigError(f"{path}: not a PEM public key") from None
    check_fits(alg, key, path)
    return VerificationKey(kid=kid, alg=alg, key=key, fingerprint=fingerprint(pem))


def check_fits(alg: str, key: object, path: str) -> None:
    """Refuse a public key whose type or size does not fit `alg`."""
    if alg[:2] in ("RS", "PS"):
        if not isinstance(key, rsa.RSAPublicKey):
            raise ConfigError(f"{path}: {alg} needs an RSA key, got {_kind(key)}")
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(
                f"{path}: RSA key is {key.key_size} bits; at least {MIN_RSA_BITS} are needed"
            )
        numbers = key.public_numbers()
        if numbers.e < 3 or numbers.e % 2 == 0:
            raise ConfigError(f"{path}: RSA public exponent is not a valid odd exponent >= 3")
        if has_roca_fingerprint(numbers.n):
            raise ConfigError(
                f"{path}: RSA key was made by a generator with the ROCA flaw (CVE-2017-15361); "
                "replace it"
            )
    elif alg in EC_CURVES:
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ConfigError(f"{path}: {alg} needs an EC key, got {_kind(key)}")
        if key.curve.name != EC_CURVES[alg]:
            raise ConfigError(f"{path}: {alg} needs curve {EC_CURVES[alg]}, got {key.curve.name}")
    elif alg == "EdDSA" and not isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        raise ConfigError(f"{path}: EdDSA needs an Ed25519 or Ed448 key, got {_kind(key)}")


def _looks_asymmetric(secret: bytes) -> bool:
    stripped = secret.strip()
    if stripped.startswith((b"-----BEGIN", b"ssh-rsa", b"ssh-ed25519", b"ecdsa-sha2-")):
        return True
    if stripped.startswith(b"{"):
        try:
            document = json.loads(stripped)
        except ValueError:
            return False
        return isinstance(document, dict) and document.get("kty") not in (None, "oct")
    return False


def _kind(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "an RSA key"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"an EC {key.curve.name} key"
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "an EdDSA key"
    return type(key).__name__


def fingerprint(material: bytes) -> str:
    return hashlib.sha256(material).hexdigest()


def jwk_key(jwk: object, path: str) -> VerificationKey:
    """One JWK → a `VerificationKey`; the JWK must be a public or `oct` signing key."""
    if not isinstance(jwk, dict):
        raise ConfigError(f"{path}: a JWK is an object")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise ConfigError(f"{path}.kid: every key needs a non-empty kid")
    if jwk.get("use", "sig") != "sig":
        raise ConfigError(f"{path}.use: {jwk.get('use')!r} is not 'sig'")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise ConfigError(f"{path}.key_ops: does not allow 'verify'")
    alg = jwk.get("alg") or _infer_alg(jwk)
    if not isinstance(alg, str) or (alg not in HMAC_MIN_BYTES and alg not in _ASYMMETRIC_ALGS):
        raise ConfigError(f"{path}.alg: {alg!r} is not a supported signature algorithm")
    if jwk.get("kty") == "oct":
        if alg not in HMAC_MIN_BYTES:
            raise ConfigError(f"{path}: an 'oct' key fits only HS256/384/512, not {alg}")
        return hmac_key(kid, alg, _b64url(jwk.get("k"), f"{path}.k"), path)
    if _PRIVATE_MEMBERS & jwk.keys():
        raise ConfigError(f"{path}: holds private key material; publish only the public key")
    try:
        key = PyJWK(jwk, algorithm=alg).key
    except (PyJWKError, InvalidKeyError, ValueError, TypeError, KeyError):
        raise ConfigError(f"{path}: not a valid {alg} public key") from None
    check_fits(alg, key, path)
    return VerificationKey(kid=kid, alg=alg, key=key, fingerprint=fingerprint(_canonical(jwk)))


_ASYMMETRIC_ALGS = frozenset(
    ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
)
_PRIVATE_MEMBERS = frozenset(("d", "p", "q", "dp", "dq", "qi", "oth", "k"))
_CURVE_ALGS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}


def _infer_alg(jwk: Mapping[str, Any]) -> str | None:
    """The algorithm a JWK without `alg` can only mean; RSA and oct keys are ambiguous."""
    curve = jwk.get("crv")
    if jwk.get("kty") == "EC" and isinstance(curve, str):
        return _CURVE_ALGS.get(curve)
    if jwk.get("kty") == "OKP" and curve in ("Ed25519", "Ed448"):
        return "EdDSA"
    return None


def _b64url(value: object, path: str) -> bytes:
    if not isinstance(value, str) or "=" in value:
        raise ConfigError(f"{path}: must be unpadded base64url")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        raise ConfigError(f"{path}: must be unpadded base64url") from None


def _canonical(jwk: Mapping[str, Any]) -> bytes:
    return json.dumps(jwk, sort_keys=True, separators=(",", ":")).encode()


# ROCA (CVE-2017-15361) fingerprint: moduli from the flawed generator are, modulo
# each small prime p below, in the subgroup generated by 65537. A random modulus
# passes all 38 tests with probability about 2^-154.
_ROCA_PRIMES = (
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71,
    73, 79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151,
    157, 163, 167,
)  # fmt: skip
_ROCA_SUBGROUPS = {p: frozenset(pow(65537, k, p) for k in range(p)) for p in _ROCA_PRIMES}


def has_roca_fingerprint(modulus: int) -> bool:
    """True when an RSA modulus carries the ROCA generator's fingerprint."""
    return all(modulus % p in group for p, group in _ROCA_SUBGROUPS.items())
