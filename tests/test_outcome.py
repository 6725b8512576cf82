"""Shadow mode (SPEC §5.2a), end to end: a `mode: monitor` stream forwards every
request that passes §5.1 unchanged and records exactly what `mode: enforce` does.

Two streams with the same rules and the same `jwt` block, `web` (enforce) and
`shadow` (monitor), get the same requests; what `web` rejects and strips must
be what `shadow` counts as would-reject and would-strip, while `shadow`'s
collector receives every body byte for byte.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sidecar.cli import main
from tests.conftest import StartSidecar
from tests.harness import WEB_ID, Collector, Sidecar
from tests.http import batch_url, customers_url, event, events_url, post
from tests.jwt_keys import forge_hmac
from tests.test_metrics import scrape, value

SHADOW_ID = "shadow-1"
SECRET = "s" * 32
RULES = """
  jwt:
    enforcement: {jwt}
    keys: [{{kid: k1, alg: HS256, secret: {{env: SHADOW_TEST_SECRET}}}}]
  customer_ids: {{default: deny, allow: [cookie], signed_only: [registered], deny: [phone_id]}}
  event_types: {{default: deny, allow: [page_visit], signed_only: [purchase]}}
  customer_properties: {{default: deny, allow: [first_name], deny: [password]}}
  event_properties: {{default: allow, deny: [card_number]}}
"""


def twin_streams(jwt: str = "enforce") -> str:
    rules = RULES.format(jwt=jwt)
    return f"""
- name: web
  id: {WEB_ID}
  type: public
{rules}
- name: shadow
  id: {SHADOW_ID}
  type: public
  mode: monitor
{rules}
"""


def token(ids: dict[str, str], exp_in: int = 3600) -> str:
    claims = {"ids": ids, "exp": int(time.time()) + exp_in}
    return forge_hmac({"alg": "HS256", "kid": "k1", "typ": "JWT"}, claims, SECRET.encode())


def purchase(**ids: str) -> dict[str, Any]:
    return event("purchase", **ids)


def batch(*events: dict[str, Any]) -> dict[str, Any]:
    return {"commands": [{"name": "customers/events", "data": e} for e in events]}


# (name, url maker, body, token): each request goes to both streams.
REQUESTS: list[tuple[str, Any, dict[str, Any], str | None]] = [
    ("allowed", events_url, event(), None),
    ("stripped id and property", events_url,
     {**event(cookie="c", phone_id="p"), "properties": {"card_number": "4111", "path": "/"}}, None),
    ("denied event type", events_url, event("internal_debug"), None),
    ("no ids left", events_url, event(phone_id="p"), None),
    ("signature missing", events_url, purchase(cookie="c", registered="u-1"), None),
    ("signed", events_url, purchase(cookie="c", registered="u-1"), token({"registered": "u-1"})),
    ("token expired", events_url, purchase(registered="u-1"), token({"registered": "u-1"}, -600)),
    ("ids mismatch", events_url, purchase(registered="u-2"), token({"registered": "u-1"})),
    ("customer update", customers_url,
     {"customer_ids": {"cookie": "c"}, "properties": {"first_name": "A", "password": "x", "shoe": 9}},
     None),
    ("batch", batch_url,
     batch(event(), event("nope"), event(cookie="c", phone_id="p"), purchase(cookie="c")), None),
]  # fmt: skip


async def send(
    http: aiohttp.ClientSession, base: str, stream_id: str, request: tuple[Any, ...]
) -> int:
    _, url, body, bearer = request
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    answer = await post(http, url(base, stream_id), body, headers=headers)
    return answer.status


@pytest.fixture
async def twins(make_sidecar: StartSidecar) -> Sidecar:
    return await make_sidecar(streams=twin_streams(), env={"SHADOW_TEST_SECRET": SECRET})


async def test_monitor_records_exactly_what_enforce_does_and_forwards_unchanged(
    twins: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    enforced = [await send(http, twins.url, WEB_ID, r) for r in REQUESTS]
    shadowed = [await send(http, twins.url, SHADOW_ID, r) for r in REQUESTS]
    assert sorted(set(enforced)) == [200, 401, 403]  # the rules bite under enforce
    assert shadowed == [200] * len(REQUESTS)
    received = [r for r in collector.received if f"stream_id={SHADOW_ID}" in r.path_qs]
    assert [r.body for r in received] == [json.dumps(r[2]).encode() for r in REQUESTS]
    assert all("Authorization" not in r.headers for r in received)  # tokens are consumed
    samples = await scrape(http, twins)
    for (name, labels), count in samples.items():
        by = dict(labels)
        if name == "trackgate_rejections_total" and by["stream"] == "web":
            shadow = {**by, "stream": "shadow"}
            assert value(samples, "trackgate_would_reject_total", **shadow) == count, by
        if name == "trackgate_stripped_total" and by["stream"] == "web":
            assert (
                value(samples, "trackgate_would_strip_total", **{**by, "stream": "shadow"}) == count
            )

    def total(metric: str, stream: str) -> float:
        return sum(
            v for (n, labels), v in samples.items() if n == metric and ("stream", stream) in labels
        )

    rejected, stripped = (
        total("trackgate_rejections_total", "web"),
        total("trackgate_stripped_total", "web"),
    )
    assert total("trackgate_would_reject_total", "shadow") == rejected == 7
    assert total("trackgate_would_strip_total", "shadow") == stripped == 5
    assert (
        total("trackgate_rejections_total", "shadow")
        == total("trackgate_stripped_total", "shadow")
        == 0
    )
    assert total("trackgate_would_reject_total", "web") == 0
    strips = {k: v for k, v in samples.items() if k[0] == "trackgate_would_strip_total"}
    assert value(samples, "trackgate_would_strip_total", stream="shadow",
                 set="customer_properties", name="_undefined") == 1  # fmt: skip
    assert strips and all(dict(k[1])["name"] in {"phone_id", "card_number", "password",
                                                  "_undefined"} for k in strips)  # fmt: skip
    assert value(samples, "trackgate_requests_total", stream="shadow", dialect="bloomreach",
                 outcome="forwarded") == len(REQUESTS)  # fmt: skip


async def test_without_jwt_enforcement_signed_only_acts_as_allow_and_records_nothing(
    make_sidecar: StartSidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    sidecar = await make_sidecar(streams=twin_streams("off"), env={"SHADOW_TEST_SECRET": SECRET})
    answer = await post(http, events_url(sidecar.url, SHADOW_ID), purchase(cookie="c"))
    assert answer.status == 200
    samples = await scrape(http, sidecar)
    assert not [k for k in samples if k[0] == "trackgate_would_reject_total"]


async def test_request_checks_still_reject_in_monitor_mode(
    twins: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    malformed = await post(http, events_url(twins.url, SHADOW_ID), raw=b'{"customer_ids": 1')
    assert (malformed.status, malformed.code) == (400, "malformed_payload")
    unknown = await post(http, f"{twins.url}/nope?stream_id={SHADOW_ID}", event())
    assert unknown.status == 404
    one_bad = batch(event(), event())
    one_bad["commands"][1]["data"] = {"customer_ids": "not an object"}
    answer = await post(http, batch_url(twins.url, SHADOW_ID), one_bad)
    assert answer.status == 200
    assert [r.get("code") for r in answer.json["results"]] == [None, "malformed_payload"]
    [received] = collector.received
    assert received.json == batch(event())  # only the malformed command was dropped


async def test_the_access_log_says_what_enforce_would_do(
    twins: Sidecar, http: aiohttp.ClientSession, log_lines: io.StringIO
) -> None:
    for request in REQUESTS[1:3]:  # stripped; denied event type
        await send(http, twins.url, SHADOW_ID, request)
    lines = [json.loads(x) for x in log_lines.getvalue().splitlines()]
    stripped, denied = [x for x in lines if x["event"] == "request"]
    assert stripped["would_strip"] == {"customer_ids": 1, "event_properties": 1}
    assert stripped["would_reject"] == {} and stripped["stripped"] == {}
    assert denied["would_reject"] == {"event_type_denied": 1}
    assert denied["status"] == 200 and denied["outcome"] == "forwarded"
    assert "phone_id" not in log_lines.getvalue()  # counts, never names or values


# -- trackgate explain ----------------------------------------------------------------


def explain(
    capsys: pytest.CaptureFixture[str], rules: Path, stream: str, body: object, *flags: str
) -> tuple[int, dict[str, Any], str]:
    path = rules.parent / "body.json"
    path.write_text(json.dumps(body))
    code = main(["explain", "--config", str(rules), "--stream", stream, *flags, str(path)])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


async def test_explain_shows_both_outcomes_for_a_monitor_stream(
    twins: Sidecar, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHADOW_TEST_SECRET", SECRET)
    body = batch(event(), event("nope"), event(cookie="c", phone_id="p"))
    code, report, _ = explain(capsys, twins.rules_path, "shadow", body)
    assert code == 0 and report["mode"] == "monitor"
    assert report["request"]["outcome"] == "forwarded" and report["forwarded_body"] == body
    assert [c["outcome"] for c in report["commands"]] == ["forwarded"] * 3
    assert [c["would_reject"] for c in report["commands"]] == [[], ["event_type_denied"], []]
    assert report["commands"][2]["would_strip"] == {"customer_ids": ["phone_id"]}
    enforce = report["enforce"]
    assert [c["outcome"] for c in enforce["commands"]] == ["forwarded", "rejected", "forwarded"]
    assert enforce["forwarded_body"]["commands"][1]["data"]["customer_ids"] == {"cookie": "c"}
    assert report["would"] == {
        "reject": {"event_type_denied": 1},
        "strip": {"customer_ids": ["phone_id"]},
    }
    code, enforced, _ = explain(capsys, twins.rules_path, "web", body)
    assert "enforce" not in enforced and enforced["would"] == report["would"]
    assert [c["reason"] for c in enforced["commands"]] == [c["reason"] for c in enforce["commands"]]


@pytest.mark.parametrize(
    ("body", "fail_on", "code"),
    [
        (event(), ["reject", "strip"], 0),
        (event(cookie="c", phone_id="p"), ["reject"], 0),
        (event(cookie="c", phone_id="p"), ["strip"], 1),
        (event("nope"), ["reject"], 1),
        (event("nope"), [], 0),
        ({"customer_ids": 1}, ["reject"], 1),  # malformed: rejected in every mode
    ],
)
@pytest.mark.parametrize("stream", ["web", "shadow"])
async def test_explain_fail_on_gates_a_rules_change(
    twins: Sidecar,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stream: str,
    body: dict[str, Any],
    fail_on: list[str],
    code: int,
) -> None:
    monkeypatch.setenv("SHADOW_TEST_SECRET", SECRET)
    flags = [f"--fail-on={kind}" for kind in fail_on]
    exit_code, _, err = explain(capsys, twins.rules_path, stream, body, *flags)
    assert exit_code == code
    assert ("enforce would" in err) == bool(code)
