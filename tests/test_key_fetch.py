"""What a provider sends, judged without sockets (`sidecar/keys/fetch.py`): key sets,
Cache-Control and URLs, table-driven and with hypothesis."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from sidecar.keys.fetch import FetchError, max_age, parse_key_set, url_problem


def ec_jwk(kid: str = "ec-1", **extra: Any) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key)), "kid": kid, **extra}


def rsa_jwk(kid: str = "rsa-1", bits: int = 2048, **extra: Any) -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key()
    return {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key)), "kid": kid, **extra}


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({"use": "enc"}, "use is not 'sig'"),
        ({"key_ops": ["encrypt"]}, "key_ops lacks 'verify'"),
        ({"alg": "ECDH-ES"}, "alg is not a supported signature algorithm"),
    ],
)
def test_keys_not_for_signatures_are_skipped(extra: dict[str, Any], why: str) -> None:
    keys, skipped = parse_key_set({"keys": [ec_jwk(**extra), ec_jwk("ok")]}, frozenset())
    assert (list(keys.by_kid), skipped) == (["ok"], (f"keys[0]: {why}",))


def test_a_shared_secret_is_never_taken_from_a_provider() -> None:
    oct_key = {"kty": "oct", "kid": "hs", "alg": "HS256", "k": "c2VjcmV0" * 8}
    keys, skipped = parse_key_set({"keys": [oct_key]}, frozenset())
    assert (len(keys), skipped) == (0, ("keys[0]: key type is not RSA, EC or OKP",))


def test_an_rsa_key_without_alg_is_rs256_as_azure_ad_publishes_it() -> None:
    keys, _ = parse_key_set({"keys": [rsa_jwk(use="sig")]}, frozenset())
    assert keys.by_kid["rsa-1"].alg == "RS256"


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ([], "not a key set"),
        ({"keys": {}}, "not a key set"),
        ({"keys": ["x"]}, "keys[0]: a JWK is an object"),
        ({"keys": [rsa_jwk(bits=1024)]}, "at least 2048 are needed"),
        ({"keys": [{**ec_jwk(), "d": "AAAA"}]}, "holds private key material"),
        ({"keys": [ec_jwk(kid="")]}, "every key needs a non-empty kid"),
        ({"keys": [ec_jwk("twice"), ec_jwk("twice")]}, "keys[1].kid 'twice' is already used"),
        ({"keys": [ec_jwk("static-1")]}, "keys[0].kid 'static-1' is already used"),
    ],
)
def test_a_set_that_fails_the_checks_fails_the_fetch(document: object, problem: str) -> None:
    with pytest.raises(FetchError) as caught:
        parse_key_set(document, frozenset({"static-1"}))
    assert caught.value.result == "invalid"
    assert problem in caught.value.message


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)
JWK_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "kty": st.sampled_from(["RSA", "EC", "OKP", "oct", "x"]) | JSON,
        "kid": st.text(max_size=4) | JSON,
        "alg": st.sampled_from(["RS256", "ES256", "EdDSA", "none"]) | JSON,
        "use": st.sampled_from(["sig", "enc"]) | JSON,
        "key_ops": JSON,
        "crv": st.sampled_from(["P-256", "Ed25519"]) | JSON,
        "x": st.text(max_size=6) | JSON,
        "n": st.text(max_size=6) | JSON,
        "e": st.sampled_from(["AQAB"]) | JSON,
    },
)


@given(st.dictionaries(st.just("keys"), st.lists(JWK_FIELDS | JSON, max_size=4)) | JSON)
def test_any_document_is_a_key_set_or_a_fetch_error(document: object) -> None:
    try:
        keys, _ = parse_key_set(document, frozenset())
    except FetchError as error:
        assert error.result == "invalid"
    else:
        assert all(key.alg != "none" for key in keys.by_kid.values())


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("no-cache", None),
        ("public, max-age=300", 300),
        ("MAX-AGE=300", 300),
        ("max-age=5", 60),  # clamped up to a minute
        ("max-age=0", 60),
        ("max-age=999999999", 86_400),  # and down to a day
        ("max-age=-1", None),
        ("max-age=1e3", None),
        ('max-age="300"', None),
        ("max-age=٣٠٠", None),  # Arabic-Indic digits are not digits here
        ("s-maxage=10, max-age=120", 120),
    ],
)
def test_cache_control_max_age_is_read_strictly_and_clamped(
    header: str | None, seconds: float | None
) -> None:
    assert max_age(header) == seconds


@given(st.text())
def test_cache_control_never_fails_and_stays_in_bounds(header: str) -> None:
    seconds = max_age(header)
    assert seconds is None or 60 <= seconds <= 86_400


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://idp.example.com/.well-known/jwks.json", None),
        ("http://127.0.0.1:8080/jwks", None),
        ("http://127.9.9.9/jwks", None),
        ("http://[::1]:8080/jwks", None),
        ("http://localhost/jwks", None),
        ("http://idp.example.com/jwks", "allowed only to a loopback address"),
        ("http://10.0.0.1/jwks", "allowed only to a loopback address"),
        ("http://127.0.0.1.nip.io/jwks", "allowed only to a loopback address"),
        ("http://2130706433/jwks", "allowed only to a loopback address"),
        ("http://[::ffff:127.0.0.1]/jwks", "allowed only to a loopback address"),
        ("file:///etc/jwks.json", "only https:// URLs are fetched"),
        ("https://user:pw@idp.example.com/jwks", "credentials in the URL"),
        ("https://idp.example.com:99999/jwks", "not a valid URL"),
        ("https:///jwks", "no host"),
    ],
)
def test_urls_are_https_or_loopback_http(url: str, problem: str | None) -> None:
    found = url_problem(url)
    assert found == problem if problem is None else problem in (found or "")
