"""The token verifier and its cache (pure: a fake clock, no sockets)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest

from sidecar.config import load_rules
from sidecar.errors import ConfigError, Reason, Rejection
from sidecar.rules import Stream
from sidecar.tokens import TokenVerifier

SECRET_A = "a" * 32
SECRET_B = "b" * 32
NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def stream(tmp_path: Path, keys: str, name: str = "web", checks: str = "") -> Stream:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        "version: 1\nserver: {upstream: {url: 'http://127.0.0.1:1'}}\nstreams:\n"
        f"  - name: {name}\n    id: {name}-id\n    type: public\n"
        f"    jwt: {{leeway_seconds: 0, keys: [{keys}]{checks}}}\n"
    )
    return load_rules(path, {"A": SECRET_A, "B": SECRET_B}).streams[0]


KEY_A = "{kid: a, alg: HS256, secret: {env: A}}"
KEY_B = "{kid: b, alg: HS256, secret: {env: B}}"


def token(kid: str = "a", secret: str = SECRET_A, exp: float = NOW + 60, **claims: Any) -> str:
    """Signed as given: PyJWT's encode would refuse some claims the tests need (iss: [])."""
    payload = json.dumps({"ids": {"registered": "u"}, "exp": exp, **claims}).encode()
    return jwt.api_jws.encode(payload, secret, "HS256", headers={"kid": kid})


def test_a_cached_token_causes_no_signature_verification(
    tmp_path: Path, signature_checks: list[str]
) -> None:
    verifier = TokenVerifier(clock=Clock())
    web = stream(tmp_path, KEY_A)
    first = verifier.verify(web, token())
    for _ in range(5):
        assert verifier.verify(web, token()) == first
    assert signature_checks == ["a"]
    assert verifier.signature_checks == 1


def test_the_cache_never_keeps_a_token_past_its_exp(
    tmp_path: Path, signature_checks: list[str]
) -> None:
    clock = Clock()
    verifier = TokenVerifier(clock=clock)
    web = stream(tmp_path, KEY_A)
    minted = token(exp=NOW + 10)
    verifier.verify(web, minted)
    clock.now = NOW + 11
    with pytest.raises(Rejection) as caught:
        verifier.verify(web, minted)
    assert caught.value.reason is Reason.TOKEN_EXPIRED
    assert len(signature_checks) == 2


def test_a_key_change_flushes_the_streams_cache(
    tmp_path: Path, signature_checks: list[str]
) -> None:
    verifier = TokenVerifier(clock=Clock())
    both = stream(tmp_path, f"{KEY_A}, {KEY_B}")
    old = token("a", SECRET_A)
    verifier.verify(both, old)
    verifier.verify(both, token("b", SECRET_B))
    only_b = stream(tmp_path, KEY_B)  # the old key was deleted
    with pytest.raises(Rejection) as caught:
        verifier.verify(only_b, old)
    assert caught.value.reason is Reason.TOKEN_UNKNOWN_KID
    verifier.verify(only_b, token("b", SECRET_B))
    assert len(signature_checks) == 3  # the "b" token was verified again after the flush


ISSUER = "https://idp.example.com/"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iss": ISSUER, "aud": "tracking"}, None),
        ({"iss": ISSUER, "aud": ["other", "tracking"]}, None),
        ({"iss": "https://idp.example.com", "aud": "tracking"}, Reason.TOKEN_ISSUER_INVALID),
        ({"iss": [ISSUER], "aud": "tracking"}, Reason.TOKEN_ISSUER_INVALID),
        ({"aud": "tracking"}, Reason.TOKEN_ISSUER_INVALID),
        ({"iss": ISSUER, "aud": "Tracking"}, Reason.TOKEN_AUDIENCE_INVALID),
        ({"iss": ISSUER, "aud": []}, Reason.TOKEN_AUDIENCE_INVALID),
        ({"iss": ISSUER, "aud": ["tracking", 7]}, Reason.TOKEN_AUDIENCE_INVALID),
        ({"iss": ISSUER}, Reason.TOKEN_AUDIENCE_INVALID),
    ],
)
def test_issuer_must_match_exactly_and_aud_must_name_an_audience(
    tmp_path: Path, claims: dict[str, Any], reason: Reason | None
) -> None:
    checked = stream(tmp_path, KEY_A, checks=f", issuer: '{ISSUER}', audiences: [tracking, x]")
    try:
        TokenVerifier(clock=Clock()).verify(checked, token(**claims))
    except Rejection as failure:
        assert failure.reason is reason
    else:
        assert reason is None


def test_a_new_audience_applies_to_tokens_already_cached(
    tmp_path: Path, signature_checks: list[str]
) -> None:
    """A reload that adds `audiences` (same keys) drops the cache: a token verified
    without the check must not stay valid until its exp."""
    verifier = TokenVerifier(clock=Clock())
    minted = token(aud="other-app")
    verifier.verify(stream(tmp_path, KEY_A), minted)
    checked = stream(tmp_path, KEY_A, checks=", audiences: [tracking]")
    with pytest.raises(Rejection) as caught:
        verifier.verify(checked, minted)
    assert caught.value.reason is Reason.TOKEN_AUDIENCE_INVALID
    assert len(signature_checks) == 2


def test_streams_do_not_share_verified_tokens(tmp_path: Path, signature_checks: list[str]) -> None:
    verifier = TokenVerifier(clock=Clock())
    minted = token()
    verifier.verify(stream(tmp_path, KEY_A, "web"), minted)
    verifier.verify(stream(tmp_path, KEY_A, "app"), minted)
    assert len(signature_checks) == 2


def test_failed_tokens_are_not_cached(tmp_path: Path, signature_checks: list[str]) -> None:
    verifier = TokenVerifier(clock=Clock())
    web = stream(tmp_path, KEY_A)
    forged = token(secret=SECRET_B)
    for _ in range(2):
        with pytest.raises(Rejection) as caught:
            verifier.verify(web, forged)
        assert caught.value.reason is Reason.TOKEN_BAD_SIGNATURE
    assert len(signature_checks) == 2


def test_the_cache_is_bounded(tmp_path: Path) -> None:
    verifier = TokenVerifier(maxsize=3, clock=Clock())
    web = stream(tmp_path, KEY_A)
    for n in range(10):
        verifier.verify(web, token(exp=NOW + 60 + n))
    assert len(verifier._caches["web"]) == 3


def test_a_full_cache_drops_expired_tokens_before_live_ones(
    tmp_path: Path, signature_checks: list[str]
) -> None:
    clock = Clock()
    verifier = TokenVerifier(maxsize=3, clock=clock)
    web = stream(tmp_path, KEY_A)
    live, soon, sooner = token(exp=NOW + 600), token(exp=NOW + 20), token(exp=NOW + 10)
    for each in (live, soon, sooner):
        verifier.verify(web, each)
    clock.now = NOW + 30  # `soon` and `sooner` have expired; `live` is the oldest entry
    verifier.verify(web, token(exp=NOW + 900))
    checks = len(signature_checks)
    verifier.verify(web, live)
    assert len(signature_checks) == checks  # still cached: the expired went first
    assert len(verifier._caches["web"]) == 2


def test_a_cached_token_is_not_used_past_its_exp(tmp_path: Path) -> None:
    clock = Clock()
    verifier = TokenVerifier(clock=clock)
    web = stream(tmp_path, KEY_A)
    short = token(exp=NOW + 5)
    verifier.verify(web, short)
    clock.now = NOW + 5 + 3600  # past exp and any leeway
    with pytest.raises(Rejection) as caught:
        verifier.verify(web, short)
    assert caught.value.reason is Reason.TOKEN_EXPIRED


@pytest.mark.parametrize("claims", ['"exp":NaN', '"exp":Infinity', '"exp":1,"exp":2'])
def test_claims_that_are_not_strict_json_are_malformed(tmp_path: Path, claims: str) -> None:
    """NaN would pass every exp comparison; duplicate members are read differently
    by different parsers. Both are refused before any claim is read."""
    payload = '{"ids":{"registered":"u"},' + claims + "}"
    signed = jwt.api_jws.encode(payload.encode(), SECRET_A, "HS256", headers={"kid": "a"})
    with pytest.raises(Rejection) as failure:
        TokenVerifier(clock=Clock()).verify(stream(tmp_path, KEY_A), signed)
    assert failure.value.reason is Reason.TOKEN_MALFORMED


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ('"exp":1' + "0" * 400, Reason.TOKEN_LIFETIME_TOO_LONG),
        ('"exp":-1' + "0" * 400, Reason.TOKEN_EXPIRED),
        (f'"exp":{int(NOW) + 60},"nbf":1' + "0" * 400, Reason.TOKEN_CLAIMS_INVALID),
    ],
)
def test_integers_past_the_float_range_are_judged_not_crashed_on(
    tmp_path: Path, claims: str, reason: Reason
) -> None:
    payload = '{"ids":{"registered":"u"},' + claims + "}"
    signed = jwt.api_jws.encode(payload.encode(), SECRET_A, "HS256", headers={"kid": "a"})
    with pytest.raises(Rejection) as failure:
        TokenVerifier(clock=Clock()).verify(stream(tmp_path, KEY_A), signed)
    assert failure.value.reason is reason


# -- jwt.kid_required: false (SPEC §5.2 step 2: Braze's tokens carry no kid) ------------

KEY_C = "{kid: c, alg: HS384, secret: {env: C}}"
SECRET_C = "c" * 48


def kidless(secret: str = SECRET_B, alg: str = "HS256", exp: float = NOW + 60) -> str:
    """A token whose header is only {"alg", "typ"}."""
    payload = json.dumps({"ids": {"registered": "u"}, "exp": exp}).encode()
    return jwt.api_jws.encode(payload, secret, alg)


def kidless_stream(tmp_path: Path, keys: str) -> Stream:
    path = tmp_path / "kidless.yaml"
    path.write_text(
        "version: 1\nserver: {upstream: {url: 'http://127.0.0.1:1'}}\nstreams:\n"
        "  - name: web\n    id: web-id\n    type: public\n"
        f"    jwt: {{leeway_seconds: 0, kid_required: false, keys: [{keys}]}}\n"
    )
    env = {"A": SECRET_A, "B": SECRET_B, "C": SECRET_C}
    return load_rules(path, env).streams[0]


def test_a_token_without_kid_is_tried_against_each_key_of_its_alg(
    tmp_path: Path, signature_checks: list[str]
) -> None:
    assert "kid" not in jwt.get_unverified_header(kidless())
    verifier = TokenVerifier(clock=Clock())
    web = kidless_stream(tmp_path, f"{KEY_A}, {KEY_B}, {KEY_C}")
    assert verifier.verify(web, kidless()).signed_ids == {"registered": "u"}
    assert signature_checks == ["a", "b"]  # each HS256 key in turn, never the HS384 one
    for _ in range(3):
        verifier.verify(web, kidless())  # cached: one dict lookup
    assert verifier.signature_checks == 1
    with pytest.raises(Rejection) as failure:
        verifier.verify(web, kidless(secret="x" * 32))
    assert failure.value.reason is Reason.TOKEN_BAD_SIGNATURE
    with pytest.raises(Rejection) as failure:
        verifier.verify(web, kidless(secret="x" * 64, alg="HS512"))
    assert failure.value.reason is Reason.TOKEN_ALGORITHM_MISMATCH
    assert verifier.verify(web, token()).signed_ids  # a token with kid still names its key


def test_a_token_without_kid_needs_kid_required_false(tmp_path: Path) -> None:
    with pytest.raises(Rejection) as failure:
        TokenVerifier(clock=Clock()).verify(stream(tmp_path, KEY_B), kidless())
    assert failure.value.reason is Reason.TOKEN_UNKNOWN_KID


def test_kid_required_false_allows_at_most_three_keys(tmp_path: Path) -> None:
    key_d = "{kid: d, alg: HS256, secret: {env: A}}"
    with pytest.raises(ConfigError) as failure:
        kidless_stream(tmp_path, f"{KEY_A}, {KEY_B}, {KEY_C}, {key_d}")
    assert "streams[0].jwt.kid_required" in str(failure.value)
