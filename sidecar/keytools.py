"""Key generation and test-token minting for `trackgate keygen` and `trackgate token`."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from sidecar.keys import HMAC_MIN_BYTES, MIN_RSA_BITS

_TTL = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}
MAX_TTL_SECONDS = 90 * 86_400  # the default jwt.max_lifetime_days
_CURVE_ALGS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


class ToolError(Exception):
    """A key or token could not be made as asked; the message says what to change."""


@dataclass(frozen=True, slots=True)
class SharedSecret:
    value: str
    sha256: str


def hmac_secret(alg: str) -> str:
    """A random HMAC secret with as many random bytes as the hash is long."""
    if alg not in HMAC_MIN_BYTES:
        raise ToolError(f"{alg} is not an HMAC algorithm; use HS256, HS384 or HS512")
    return _urlsafe(HMAC_MIN_BYTES[alg])


def shared_secret() -> SharedSecret:
    """A random stream secret and the digest to put in the rules file."""
    value = _urlsafe(32)
    return SharedSecret(value, hashlib.sha256(value.encode()).hexdigest())


def rsa_key_pair(bits: int, directory: Path, kid: str) -> tuple[Path, Path]:
    """Write `<kid>.key` (private, mode 0600) and `<kid>.pem` (public) into `directory`.
    Refuses to overwrite either file."""
    if bits < MIN_RSA_BITS:
        raise ToolError(f"RSA keys need at least {MIN_RSA_BITS} bits")
    private_path, public_path = directory / f"{kid}.key", directory / f"{kid}.pem"
    for path in (private_path, public_path):
        _refuse_existing(path)
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ToolError(f"{directory}: cannot create the directory ({error.strerror})") from None
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_new_file(private_path, private_pem, 0o600)
    write_new_file(public_path, public_pem, 0o644)
    return private_path, public_path


def write_new_file(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `mode` and write `data`; an existing file is never replaced
    (it may be a key in use)."""
    _refuse_existing(path)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise ToolError(_exists(path)) from None
    except OSError as error:
        raise ToolError(f"{path}: cannot create the file ({error.strerror})") from None
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def _refuse_existing(path: Path) -> None:
    if os.path.lexists(path):
        raise ToolError(_exists(path))


def _exists(path: Path) -> str:
    return (
        f"{path} already exists; refusing to overwrite a key "
        "(choose another --kid or --out, or move the old file away first)"
    )


def parse_ttl(text: str) -> int:
    """`90s`, `30m`, `24h`, `7d` or plain seconds."""
    found = _TTL.match(text.strip())
    if not found:
        raise ToolError(f"--ttl {text!r}: use a number with s, m, h or d (e.g. 24h)")
    return int(found[1]) * _UNITS[found[2]]


def parse_ids(pairs: list[str]) -> dict[str, str]:
    """`type=value` pairs → the `ids` claim."""
    ids = {}
    for pair in pairs:
        id_type, sep, value = pair.partition("=")
        if not sep or not id_type or not value:
            raise ToolError(f"--ids {pair!r}: use type=value, e.g. registered=ada@example.com")
        ids[id_type] = value
    return ids


def mint_token(
    key: Any, kid: str, *, alg: str | None, ids: dict[str, str], ttl: int, subject: str | None
) -> str:
    """A signed JWT with `ids` (and `sub`), expiring in `ttl` seconds. Refuses what
    the sidecar would refuse: a short HMAC secret, a small RSA key, a lifetime past
    the default `max_lifetime_days`."""
    alg = alg or default_alg(key)
    check_signing_key(key, alg)
    if ttl > MAX_TTL_SECONDS:
        raise ToolError(
            f"--ttl: at most {MAX_TTL_SECONDS // 86_400}d; trackgate rejects tokens whose exp "
            "is further out than jwt.max_lifetime_days (default 90) as token_lifetime_too_long"
        )
    now = int(time.time())
    claims: dict[str, Any] = {"iat": now, "exp": now + ttl}
    if ids:
        claims["ids"] = ids
    if subject:
        claims["sub"] = subject
    if "ids" not in claims and "sub" not in claims:
        raise ToolError("give --ids type=value (or --subject) so the token signs an identity")
    try:
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})
    except (jwt.exceptions.PyJWTError, ValueError, TypeError) as error:
        raise ToolError(f"cannot sign with {alg}: {error}") from None


def check_signing_key(key: Any, alg: str) -> None:
    """The key checks the sidecar makes at load, on the signing side (no secret in
    the message: only its length)."""
    if isinstance(key, str | bytes) and alg in HMAC_MIN_BYTES:
        length = len(key.encode() if isinstance(key, str) else key)
        if length < HMAC_MIN_BYTES[alg]:
            raise ToolError(
                f"the {alg} secret is {length} bytes; trackgate refuses keys under "
                f"{HMAC_MIN_BYTES[alg]} (make one with `trackgate keygen hmac --alg {alg}`)"
            )
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < MIN_RSA_BITS:
        raise ToolError(
            f"the RSA key has {key.key_size} bits; trackgate refuses keys under {MIN_RSA_BITS}"
        )


def load_signing_key(path: Path) -> Any:
    """A PEM private key."""
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise ToolError(f"{path}: not a readable unencrypted PEM private key ({error})") from None


def default_alg(key: Any) -> str:
    """The algorithm a key is for: HS256 for a secret, else by key type."""
    if isinstance(key, str | bytes):
        return "HS256"
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return _CURVE_ALGS.get(key.curve.name, "ES256")
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return "EdDSA"
    raise ToolError(f"unsupported key type {type(key).__name__}")


def _urlsafe(random_bytes: int) -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(random_bytes)).rstrip(b"=").decode()
