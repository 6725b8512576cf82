"""A real identity provider for the remote-key tests, on loopback.

An aiohttp server with TLS (a CA and a server certificate made here with
`cryptography`; the sidecar trusts the CA through `jwks.ca_file`) that serves an
OpenID discovery document and a JWKS. A test rotates its keys, breaks its
answers (`failure`), sets `Cache-Control`, and counts what was fetched.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

FAILURES = (
    "500",
    "hang",
    "oversize",
    "oversize_chunked",
    "redirect",
    "not_json",
    "not_a_key_set",
    "weak_key",
)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey]
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer[0]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), False
        )
    )


def make_tls(directory: Path) -> ssl.SSLContext:
    """A test CA (written to `directory/ca.pem`) and a server context it signed for
    127.0.0.1, ::1 and localhost."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    server_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        _certificate("trackgate test CA", ca_key, ("trackgate test CA", ca_key))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .sign(ca_key, hashes.SHA256())
    )
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = (
        _certificate("localhost", server_key, ("trackgate test CA", ca_key))
        .add_extension(x509.SubjectAlternativeName(names), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "server.pem").write_bytes(server.public_bytes(pem))
    (directory / "server.key").write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "server.pem", directory / "server.key")
    return context


@dataclass
class Provider:
    """The identity provider's state; `start` serves it over HTTPS."""

    directory: Path
    signing: dict[str, ec.EllipticCurvePrivateKey] = field(default_factory=dict)  # kid → key
    extra: list[dict[str, Any]] = field(default_factory=list)  # JWKs served as they are
    failure: str | None = None  # one of FAILURES, or None: answer well
    cache_control: str | None = None
    hang_seconds: float = 5.0
    base: str = ""
    jwks_fetches: list[float] = field(default_factory=list)  # monotonic time of each
    discovery_fetches: int = 0
    moved_fetches: int = 0  # requests that followed the redirect (must stay 0)
    user_agents: list[str] = field(default_factory=list)

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def issuer(self) -> str:
        return f"{self.base}/"

    @property
    def jwks_url(self) -> str:
        return f"{self.base}/jwks.json"

    def add_key(self, kid: str) -> None:
        self.signing[kid] = ec.generate_private_key(ec.SECP256R1())

    def remove_key(self, kid: str) -> None:
        del self.signing[kid]

    def mint(self, kid: str, signer: str | None = None, **claims: Any) -> str:
        """An ES256 token for `registered: u-1`, signed by `signer`'s key (default: kid's)."""
        payload = {"ids": {"registered": "u-1"}, "exp": int(time.time()) + 3600, **claims}
        key = self.signing[signer or kid]
        return jwt.encode(payload, key, "ES256", headers={"kid": kid})

    def random_kid_token(self) -> str:
        return self.mint(f"random-{uuid.uuid4().hex}", signer=next(iter(self.signing)))

    def jwks(self) -> dict[str, Any]:
        keys = [
            {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())), "kid": kid,
             "alg": "ES256", "use": "sig"}
            for kid, key in self.signing.items()
        ]  # fmt: skip
        return {"keys": [*keys, *self.extra]}

    async def _discovery(self, _: web.Request) -> web.Response:
        self.discovery_fetches += 1
        document = {"issuer": self.issuer, "jwks_uri": self.jwks_url, "id_token_signing_alg_values_supported": ["ES256"]}  # fmt: skip
        return web.json_response(document)

    async def _jwks(self, request: web.Request) -> web.StreamResponse:
        self.jwks_fetches.append(time.monotonic())
        self.user_agents.append(request.headers.get("User-Agent", ""))
        if self.failure is not None:
            return await self._broken(request, self.failure)
        headers = {"Cache-Control": self.cache_control} if self.cache_control else {}
        return web.Response(
            body=json.dumps(self.jwks()), content_type="application/jwk-set+json", headers=headers
        )

    async def _broken(self, request: web.Request, failure: str) -> web.StreamResponse:
        if failure == "oversize_chunked":  # no Content-Length: the cap applies as it reads
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            await response.write(b'{"keys": [], "padding": "')
            for _ in range(20):
                await response.write(b"x" * 65_536)
            await response.write(b'"}')
            await response.write_eof()
            return response
        if failure == "hang":
            await asyncio.sleep(self.hang_seconds)
        if failure == "500":
            return web.json_response({"error": "down"}, status=500)
        if failure == "redirect":
            raise web.HTTPFound(f"{self.base}/moved.json")
        if failure == "oversize":
            padding = "x" * 1_100_000
            return web.json_response({**self.jwks(), "padding": padding})
        if failure == "not_json":
            return web.Response(text="<html>maintenance</html>", content_type="text/html")
        if failure == "weak_key":
            return web.json_response({"keys": [weak_rsa_jwk()]})
        return web.json_response({"keys": "none"})  # not_a_key_set (and after a hang)

    async def _moved(self, _: web.Request) -> web.Response:
        self.moved_fetches += 1
        return web.json_response(self.jwks())

    async def start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks.json", self._jwks)
        app.router.add_get("/moved.json", self._moved)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=make_tls(self.directory))
        await site.start()
        port = runner.addresses[0][1]
        self.base = f"https://127.0.0.1:{port}"
        return runner


def weak_rsa_jwk() -> dict[str, Any]:
    """A 1024-bit RSA signing key (the checks require 2048): one that fails them."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": "weak"}
