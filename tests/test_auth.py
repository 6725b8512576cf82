"""Credentials: what a request presents to its stream, found once (SPEC §5.1, §5.2, §3.3)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from sidecar.auth import credentials, single_token
from sidecar.config import load_rules
from sidecar.errors import Reason, Rejection
from sidecar.rules import Stream

RULES = """
version: 1
server: {upstream: {url: "http://127.0.0.1:1"}}
streams:
  - {name: backend, id: b-1, type: private, secrets: [{id: s, sha256: "%s"}]}
  - name: web
    id: w-1
    type: public
    jwt:
      enforcement: %s
      keys: [{kid: k, alg: HS256, secret: {env: SECRET}}]
      token_from: [{header: Authorization, scheme: Bearer}, {cookie: tg_token}]
"""


def streams(tmp_path: Path, enforcement: str = "enforce") -> dict[str, Stream]:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES % ("a" * 64, enforcement))
    return {s.name: s for s in load_rules(path, {"SECRET": "s" * 32}).streams}


def headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_a_private_stream_s_secrets_come_from_both_places(tmp_path: Path) -> None:
    basic = "Basic " + base64.b64encode(b"b-1:pw").decode()
    found = credentials(
        streams(tmp_path)["backend"], headers(("Authorization", basic), ("X-Stream-Secret", "x"))
    )
    assert found.secrets == (b"x", b"pw")
    assert found.tokens == frozenset()
    assert {"authorization", "x-stream-secret"} <= found.consumed


def test_tokens_come_from_every_place_and_are_consumed(tmp_path: Path) -> None:
    web = streams(tmp_path)["web"]
    found = credentials(
        web, headers(("Authorization", "Bearer t1"), ("Cookie", "a=1; tg_token=t2"))
    )
    assert found.tokens == {"t1", "t2"} and found.secrets == ()
    assert "authorization" in found.consumed
    with pytest.raises(Rejection) as ambiguous:
        single_token(found.tokens)
    assert ambiguous.value.reason is Reason.TOKEN_AMBIGUOUS
    assert single_token(frozenset({"t1"})) == "t1" and single_token(frozenset()) is None


def test_with_enforcement_off_no_token_is_read_but_its_header_is_still_consumed(
    tmp_path: Path,
) -> None:
    found = credentials(streams(tmp_path, "off")["web"], headers(("Authorization", "Bearer t1")))
    assert found.tokens == frozenset() and "authorization" in found.consumed
