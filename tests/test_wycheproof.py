"""Project Wycheproof JWS/JWK vectors through the verifier's JWS layer and key loader.

A vector passes when every `valid` case is accepted and every `invalid` case
rejected, with no exception other than a `Rejection`/`ConfigError` escaping.

Two kinds of vectors are set apart, each proven by its own test below:
- four `valid` vectors (from RFC 7520) are rejected on purpose: their JWK says
  one `alg` (PS256, or the non-existent "ES521") and the token header another
  (PS384, ES512). SPEC §5.2 takes the algorithm from the key, never the header;
  Envoy's jwt_verify_lib skips such keys too.
- four vectors contradict the rest of the file (the same in upstream
  Wycheproof): 367 and 370 are `invalid` but byte-identical to the `valid` 357;
  372 and 373 are `valid` but carry a `?`, which base64url forbids and which
  361-371 call invalid. No verifier can agree with both; strict base64url wins.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sidecar.errors import ConfigError, Rejection
from sidecar.keys import KeySet, jwk_key, load_jwks
from sidecar.sources import SourceReader
from sidecar.tokens import verify_jws
from tests.harness import shared_testdata

VECTORS = shared_testdata("wycheproof")
ALG_BOUND_TO_KEY = {346, 347, 350, 351}  # JWK alg differs from header alg: rejected by design
SELF_CONTRADICTORY = {367, 370, 372, 373}


def cases(name: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    document = json.loads((VECTORS / name).read_text())
    return [(group, test) for group in document["testGroups"] for test in group["tests"]]


def jws_keys(group: dict[str, Any]) -> KeySet:
    jwk = group.get("public") or group["private"]
    return KeySet.of([jwk_key(jwk, "wycheproof")])


def accepts(load_keys: Any, group: dict[str, Any], token: str) -> bool:
    try:
        keys = load_keys(group)
    except ConfigError:
        return False
    try:
        verify_jws(token, keys)
    except Rejection:
        return False
    return True


def jwks_keys(tmp_path: Path, group: dict[str, Any]) -> KeySet:
    keyset = group.get("public") or group["private"]
    (tmp_path / "jwks.json").write_text(json.dumps(keyset))
    return KeySet.of(load_jwks({"file": "jwks.json"}, "wycheproof", SourceReader(tmp_path)))


def run(name: str, load_keys: Any) -> tuple[Counter[str], list[int]]:
    counts: Counter[str] = Counter()
    mismatches = []
    for group, test in cases(name):
        accepted = accepts(load_keys, group, test["jws"])
        expected = test["result"]
        counts[f"{expected}/{'accepted' if accepted else 'rejected'}"] += 1
        if test["tcId"] in SELF_CONTRADICTORY or (
            expected == "valid" and not accepted and test["tcId"] in ALG_BOUND_TO_KEY
        ):
            counts["set apart"] += 1
            continue
        if (expected == "valid") != accepted and expected != "acceptable":
            mismatches.append(test["tcId"])
    return counts, mismatches


def test_jws_vectors() -> None:
    counts, mismatches = run("json_web_signature_test.json", jws_keys)
    print(f"\nWycheproof JWS: {dict(counts)}; mismatches: {mismatches}")
    assert mismatches == []
    assert counts["valid/accepted"] >= 40 and counts["invalid/rejected"] >= 350


def test_jwk_vectors(tmp_path: Path) -> None:
    counts, mismatches = run("json_web_key_test.json", lambda g: jwks_keys(tmp_path, g))
    print(f"\nWycheproof JWK: {dict(counts)}; mismatches: {mismatches}")
    assert mismatches == []
    assert counts["valid/accepted"] == 5


@pytest.mark.parametrize("tc_id", sorted(ALG_BOUND_TO_KEY))
def test_the_alg_bound_vectors_are_rejected_as_algorithm_mismatch(tc_id: int) -> None:
    [(group, test)] = [
        (g, t) for g, t in cases("json_web_signature_test.json") if t["tcId"] == tc_id
    ]
    jwk = dict(group["public"])
    if jwk["alg"] == "ES521":  # not a JOSE algorithm at all: the loader refuses the key
        with pytest.raises(ConfigError):
            jwk_key(jwk, "k")
        return
    with pytest.raises(Rejection) as caught:
        verify_jws(test["jws"], jws_keys(group))
    assert caught.value.reason.value == "token_algorithm_mismatch"


def test_the_self_contradictory_vectors_really_contradict_the_file() -> None:
    by_id = {t["tcId"]: t for _, t in cases("json_web_signature_test.json")}
    assert by_id[357]["result"] == "valid"
    for tc_id in (367, 370):
        assert by_id[tc_id]["jws"] == by_id[357]["jws"] and by_id[tc_id]["result"] == "invalid"
    for tc_id in (372, 373):
        assert "?" in by_id[tc_id]["jws"] and by_id[tc_id]["result"] == "valid"
    assert all(by_id[t]["result"] == "invalid" and "?" in by_id[t]["jws"] for t in (361, 362, 371))
