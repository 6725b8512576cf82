"""Signing keys and token minting for JWT tests (standard PyJWT, real key material)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.harness import WEB_ID

HMAC_SECRETS = {"HS256": "h" * 32, "HS384": "i" * 48, "HS512": "j" * 64}


@dataclass
class Keys:
    """Private keys the tests sign with; public halves are written to `directory`."""

    directory: Path
    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    ed: ed25519.Ed25519PrivateKey
    ec384: ec.EllipticCurvePrivateKey
    ec521: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, directory: Path) -> Keys:
        keys = cls(
            directory,
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            ec.generate_private_key(ec.SECP256R1()),
            ed25519.Ed25519PrivateKey.generate(),
            ec.generate_private_key(ec.SECP384R1()),
            ec.generate_private_key(ec.SECP521R1()),
        )
        for kid in KID_ALGS:
            if not kid.startswith("hs"):
                (directory / f"{kid}.pem").write_bytes(public_pem(keys.signing_key(kid)))
        return keys

    def signing_key(self, kid: str) -> Any:
        if kid.startswith("hs"):
            return HMAC_SECRETS[KID_ALGS[kid]]
        if kid.startswith(("rs", "ps")):
            return self.rsa  # one RSA key, configured under several kids and algs
        return {"es256": self.ec, "es384": self.ec384, "es512": self.ec521, "eddsa": self.ed}[kid]


KID_ALGS = {
    "hs256": "HS256",
    "hs384": "HS384",
    "hs512": "HS512",
    "rs256": "RS256",
    "rs384": "RS384",
    "rs512": "RS512",
    "ps256": "PS256",
    "ps384": "PS384",
    "ps512": "PS512",
    "es256": "ES256",
    "es384": "ES384",
    "es512": "ES512",
    "eddsa": "EdDSA",
}
ENV = {f"{alg}_SECRET": secret for alg, secret in HMAC_SECRETS.items()}


def public_pem(private: Any) -> bytes:
    return bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def jwt_streams(keys: Keys, mode: str = "enforce", extra: str = "") -> str:
    """The `web` stream with JWT validation and every kind of key."""
    key_lines = "\n".join(
        f"      - {{kid: {kid}, alg: {alg}, secret: {{env: {alg}_SECRET}}}}"
        if alg.startswith("HS")
        else f"      - {{kid: {kid}, alg: {alg}, public_key: {{file: {keys.directory / kid}.pem}}}}"
        for kid, alg in KID_ALGS.items()
    )
    return f"""
- name: web
  id: {WEB_ID}
  type: public
  jwt:
    enforcement: {mode}
    leeway_seconds: 5
    keys:
{key_lines}
{extra}
  customer_ids: {{default: deny, allow: [cookie], signed_only: [registered], deny: [phone_id]}}
  event_types: {{default: deny, allow: [page_visit], signed_only: [purchase]}}
  customer_properties: {{default: deny, allow: [first_name], signed_only: [email]}}
"""


def mint(
    keys: Keys,
    kid: str = "hs256",
    ids: object = None,
    ttl: float = 3600,
    claims: dict[str, Any] | None = None,
    headers: dict[str, Any] | None = None,
) -> str:
    """A token signed the standard way (PyJWT)."""
    payload: dict[str, Any] = {
        "ids": {"registered": "u-1"} if ids is None else ids,
        "exp": int(time.time() + ttl),
        "iat": int(time.time()),
    }
    payload.update(claims or {})
    return jwt.encode(
        payload,
        keys.signing_key(kid),
        algorithm=KID_ALGS[kid],
        headers={"kid": kid, **(headers or {})},
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_hmac(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """A token built by hand (for headers and keys PyJWT refuses to produce)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def good_claims(**extra: Any) -> dict[str, Any]:
    return {"ids": {"registered": "u-1"}, "exp": int(time.time() + 3600), **extra}
