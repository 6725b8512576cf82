"""Fuzzing the dialects' decoding (issue 12 findings 1, 6, 7).

1. Sans-IO: hypothesis drives every dialect's decode — both dialects, single and
   batch endpoints — with random JSON, dialect-shaped or not, and the decision
   and rewrite after it: only a `Rejection` may come out, never another exception
   (which the handler would answer with 500).
2. The regression corpus (tests/fixtures/fuzz/*.json): the concrete inputs the
   red team's fuzzer found, each sent through the real sidecar: it gets its
   answer (a 4xx, or a batch answered locally), never a 500, and nothing of it
   reaches the collector.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.auth import Principal
from sidecar.body import Body
from sidecar.config import load_rules
from sidecar.dialects import BUILTIN_ROUTER
from sidecar.errors import Rejection
from sidecar.policy import decide
from sidecar.rules import Rules
from tests import payloads
from tests.conftest import StartSidecar
from tests.harness import ROOT, STANDARD_STREAMS, WEB_ID, Collector, rules_text
from tests.http import post

STREAMS = (
    STANDARD_STREAMS
    + """
- name: seg
  id: SEG_WK
  type: public
  dialect: segment
  customer_ids: {default: deny, allow: [anonymous_id], deny: [previous_id]}
  event_types: {default: deny, allow: [Product Viewed, page, identify, group]}
  customer_properties: {default: deny, allow: [name], deny: [email]}
  event_properties: {default: allow, deny: [password]}
"""
)
ENDPOINTS = {
    "bloomreach": ["/track/u/v1/customers/events", "/track/u/v1/customers", "/track/u/v1/batch"],
    "segment": ["/v1/track", "/v1/identify", "/v1/page", "/v1/group", "/v1/alias", "/v1/batch"],
}
PATHS = [path for paths in ENDPOINTS.values() for path in paths]


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Rules:
    path = tmp_path_factory.mktemp("fuzz") / "rules.yaml"
    path.write_text(
        rules_text("http://127.0.0.1:9", STREAMS, "limits: {max_names_per_object: 3}\n")
    )
    return load_rules(path, {"BACKEND_SECRET": "b" * 32})


def shaped(path: str) -> st.SearchStrategy[Any]:
    """Bodies shaped like the endpoint's, with junk values and look-alike keys."""
    if path.startswith("/track/"):
        return payloads.bloomreach(wild=True, misspell=True)[path.removeprefix("/track/u/v1/")]
    bodies = payloads.segment(wild=True, misspell=True, write_key="SEG_WK")
    return bodies[path.removeprefix("/v1/")]


def judge(rules: Rules, path: str, raw: bytes) -> None:
    """What the handler does between reading the body and forwarding it."""
    endpoint = BUILTIN_ROUTER.match(path)
    assert endpoint is not None
    stream = rules.find("SEG_WK" if path.startswith("/v1/") else WEB_ID)
    assert stream is not None
    try:
        payload = endpoint.dialect.decode(endpoint, Body(raw), stream, rules.server.limits)
    except Rejection:
        return
    decision = decide(stream, Principal(), payload.commands)
    if decision.forwards_any and decision.modified:
        endpoint.dialect.encode(payload, decision.verdicts)


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=120, deadline=None)
@given(data=st.data(), ascii_only=st.booleans())
def test_decoding_random_json_only_ever_rejects(
    rules: Rules, path: str, data: st.DataObject, ascii_only: bool
) -> None:
    document = data.draw(st.one_of(payloads.JSON, shaped(path)))
    judge(rules, path, payloads.render(document, ascii_only).encode())


# -- the regression corpus, through the real sidecar --------------------------------------

CASES: list[dict[str, Any]] = [
    case
    for corpus in sorted((ROOT / "tests" / "fixtures" / "fuzz").glob("*.json"))
    for case in json.loads(corpus.read_text())
]


def body_of(case: dict[str, Any]) -> bytes:
    if "body_base64" in case:
        return base64.b64decode(case["body_base64"])
    return str(case["body"]).encode()


@pytest.mark.parametrize("case", CASES, ids=[f"finding {c['finding']}: {c['name']}" for c in CASES])
async def test_the_fuzz_corpus_is_refused_and_never_forwarded(
    make_sidecar: StartSidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    case: dict[str, Any],
) -> None:
    sidecar = await make_sidecar(streams=STREAMS)
    answer = await post(
        http, sidecar.url + case["path"], raw=body_of(case), headers=case["headers"]
    )
    assert answer.status == case["status"], answer.body
    assert answer.code == case["code"]
    if "rejected" in case:
        assert answer.headers["X-Trackgate-Rejected"] == str(case["rejected"])
    assert collector.received == []


def test_the_corpus_covers_findings_1_6_and_7() -> None:
    assert {1, 6, 7} <= {case["finding"] for case in CASES}
