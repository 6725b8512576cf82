"""Fetching a key set over HTTPS, once: the I/O and parsing half of the remote source.

Everything a provider sends is judged here (SPEC §2 "Remote keys"): `https://`
only (plain `http://` to loopback), no redirects, a 200 answer of a JSON
content type, at most 1 MiB, a JSON object with a `keys` list. Each key goes
through the same checks as a JWKS file (`material.jwk_key`); keys not meant for
signatures and keys of types trackgate does not verify with are skipped, since
a provider's set may carry encryption keys. The client is aiohttp's, on the
event loop: nothing here blocks (the TLS context, which reads the system's
trust store, is built in a worker thread).

Every failure is a `FetchError` whose `result` is the metric label
(`timeout`, `unreachable`, `http_status`, `invalid`) and whose message names
the URL and what was wrong, never a key or the body.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from sidecar.errors import ConfigError, Rejection
from sidecar.jsoncodec import parse_json
from sidecar.keys.base import KeySet, VerificationKey
from sidecar.keys.material import jwk_key

MAX_DOCUMENT_BYTES = 1_048_576
MAX_AGE_BOUNDS = (60.0, 86_400.0)  # Cache-Control max-age is clamped to this (SPEC §5.2)
WELL_KNOWN = "/.well-known/openid-configuration"
_ACCEPT = {"Accept": "application/jwk-set+json, application/json", "Accept-Encoding": "identity"}
_JSON_TYPE = re.compile(r"application/(?:[a-z0-9.+-]+\+)?json", re.ASCII)
_MAX_AGE = re.compile(r"max-age=([0-9]{1,10})", re.ASCII | re.IGNORECASE)
_SIGNATURE_TYPES = frozenset(("RSA", "EC", "OKP"))
_SIGNATURE_ALGS = frozenset(
    ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
)
_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


class FetchError(Exception):
    """A fetch failed; `result` is its `trackgate_jwks_fetches_total` label."""

    def __init__(self, result: str, message: str) -> None:
        super().__init__(message)
        self.result = result
        self.message = message


@dataclass(frozen=True, slots=True)
class Fetched:
    """One successful fetch: the checked keys, what was skipped and why, and the
    answer's `Cache-Control: max-age` (None when absent)."""

    keys: KeySet
    skipped: tuple[str, ...]  # "kid: why", kids and field names only
    max_age: float | None


def url_problem(url: str) -> str | None:
    """Why trackgate will not fetch from `url` (None when it will): https only, plain
    http to a loopback address only, no credentials in the URL."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parses the port: a bad one raises ValueError
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("https", "http"):
        return "only https:// URLs are fetched (plain http:// only to a loopback address)"
    if parts.username is not None or parts.password is not None:
        return "credentials in the URL are not supported"
    if not parts.hostname:
        return "the URL has no host"
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        return (
            "plain http:// is allowed only to a loopback address "
            "(127.0.0.0/8, ::1, localhost); use https://"
        )
    return None


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost`, nothing else (no DNS lookup)."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address == ipaddress.IPv6Address("::1") or address in _LOOPBACK


def check_ca(pem: bytes, path: str) -> None:
    """Refuse a `ca_file` that holds no PEM certificate (at load, off the loop)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError):
        raise ConfigError(f"{path}: not a PEM file of CA certificates") from None


def tls_context(ca_pem: bytes | None) -> ssl.SSLContext:
    """The system's trust store plus `ca_pem` (blocking: run it in a thread)."""
    context = ssl.create_default_context()
    if ca_pem is not None:
        context.load_verify_locations(cadata=ca_pem.decode("ascii"))
    return context


async def new_session(ca_pem: bytes | None) -> aiohttp.ClientSession:
    """The aiohttp client of one source: its own trust anchors, no decompression (the
    1 MiB cap is on what the provider sends), no cookies."""
    context = await asyncio.to_thread(tls_context, ca_pem)
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context, limit=2),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


async def get_json(
    session: aiohttp.ClientSession, url: str, timeout: float
) -> tuple[object, Mapping[str, str]]:
    """GET `url` → (its JSON document, the answer's headers).
    Fails: timeout, unreachable, http_status (any status but 200, redirects
    included: they are never followed), invalid (type, size, JSON)."""
    problem = url_problem(url)
    if problem is not None:
        raise FetchError("invalid", f"{url}: {problem}")
    try:
        async with session.get(
            url,
            allow_redirects=False,
            headers=_ACCEPT,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            _check_answer(url, response)
            raw = await _read_capped(url, response)
            headers = response.headers
    except TimeoutError:
        raise FetchError("timeout", f"{url}: no answer within {timeout:g} s") from None
    except (aiohttp.ClientError, OSError) as error:
        raise FetchError("unreachable", f"{url}: {type(error).__name__}") from None
    try:
        return parse_json(raw), headers
    except Rejection:
        raise FetchError("invalid", f"{url}: the answer is not valid JSON") from None


def _check_answer(url: str, response: aiohttp.ClientResponse) -> None:
    if response.status != 200:
        moved = " (redirects are not followed)" if 300 <= response.status < 400 else ""
        raise FetchError("http_status", f"{url}: answered HTTP {response.status}{moved}")
    media_type = response.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if not _JSON_TYPE.fullmatch(media_type):
        raise FetchError("invalid", f"{url}: the answer's Content-Type is not JSON")
    if response.headers.get("Content-Encoding", "identity").lower() != "identity":
        raise FetchError("invalid", f"{url}: the answer is compressed; identity was asked")


async def _read_capped(url: str, response: aiohttp.ClientResponse) -> bytes:
    """The body, refused as soon as it passes MAX_DOCUMENT_BYTES."""
    if (response.content_length or 0) > MAX_DOCUMENT_BYTES:
        raise FetchError("invalid", f"{url}: the answer is larger than 1 MiB")
    body = bytearray()
    async for chunk in response.content.iter_chunked(65_536):
        body += chunk
        if len(body) > MAX_DOCUMENT_BYTES:
            raise FetchError("invalid", f"{url}: the answer is larger than 1 MiB")
    return bytes(body)


async def discover(
    session: aiohttp.ClientSession, discovery: str, issuer: str | None, timeout: float
) -> str:
    """OIDC discovery: `{discovery}/.well-known/openid-configuration` → its `jwks_uri`.
    Fails as `get_json`, and invalid when its `issuer` is not `jwt.issuer`."""
    url = discovery.rstrip("/") + WELL_KNOWN
    document, _ = await get_json(session, url, timeout)
    if not isinstance(document, dict):
        raise FetchError("invalid", f"{url}: not a discovery document (a JSON object)")
    if document.get("issuer") != issuer:
        raise FetchError("invalid", f"{url}: its issuer is not jwt.issuer")
    jwks_uri = document.get("jwks_uri")
    if not isinstance(jwks_uri, str):
        raise FetchError("invalid", f"{url}: the document names no jwks_uri")
    return jwks_uri


async def fetch_keys(
    session: aiohttp.ClientSession, url: str, timeout: float, reserved: frozenset[str]
) -> Fetched:
    """The key set at `url`, checked; a kid in `reserved` (a static key's) fails it."""
    document, headers = await get_json(session, url, timeout)
    try:
        keys, skipped = parse_key_set(document, reserved)
    except FetchError as error:
        raise FetchError(error.result, f"{url}: {error.message}") from None
    return Fetched(keys, skipped, max_age(headers.get("Cache-Control")))


def parse_key_set(document: object, reserved: frozenset[str]) -> tuple[KeySet, tuple[str, ...]]:
    """A JWK set → (its signing keys, the skipped ones). Fails invalid: not a key set,
    a signing key failing the load-time checks, a kid twice or a static key's."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise FetchError("invalid", "not a key set (a JSON object with a `keys` list)")
    keys: dict[str, VerificationKey] = {}
    skipped: list[str] = []
    for index, jwk in enumerate(document["keys"]):
        why = _not_for_signing(jwk)
        if why is not None:
            skipped.append(f"keys[{index}]: {why}")
            continue
        key = _checked(jwk, f"keys[{index}]")
        if key.kid in keys or key.kid in reserved:
            raise FetchError("invalid", f"keys[{index}].kid {key.kid!r} is already used")
        keys[key.kid] = key
    return KeySet.of(keys.values()), tuple(skipped)


def _not_for_signing(jwk: object) -> str | None:
    """Why a provider's key is skipped (None: it is a signing key to check)."""
    if not isinstance(jwk, dict):
        return None  # not a JWK at all: the checks refuse it
    if jwk.get("use", "sig") != "sig":
        return "use is not 'sig'"
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return "key_ops lacks 'verify'"
    if not _one_of(jwk.get("kty"), _SIGNATURE_TYPES):
        return "key type is not RSA, EC or OKP"  # a shared (oct) key must never be public
    if "alg" in jwk and not _one_of(jwk["alg"], _SIGNATURE_ALGS):
        return "alg is not a supported signature algorithm"
    return None


def _one_of(value: object, names: frozenset[str]) -> bool:
    return isinstance(value, str) and value in names


def _checked(jwk: object, path: str) -> VerificationKey:
    """The load-time checks of a JWKS file; an RSA key without `alg` is RS256, the
    algorithm OpenID providers must support (Azure AD's keys carry no `alg`)."""
    if isinstance(jwk, dict) and jwk.get("kty") == "RSA" and "alg" not in jwk:
        jwk = {**jwk, "alg": "RS256"}
    try:
        return jwk_key(jwk, path)
    except ConfigError as error:
        raise FetchError("invalid", str(error)) from None


def max_age(cache_control: str | None) -> float | None:
    """`Cache-Control: max-age=N` → N clamped to [60 s, 24 h]; None when absent."""
    for directive in (cache_control or "").split(","):
        found = _MAX_AGE.fullmatch(directive.strip())
        if found is not None:
            low, high = MAX_AGE_BOUNDS
            return min(max(float(found.group(1)), low), high)
    return None
