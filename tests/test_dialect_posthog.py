"""The built-in `posthog` dialect (SPEC §3.5, a declaration shipped with trackgate)
through the running sidecar, with requests as posthog-python and posthog-js send
them: judged, rewritten, and answered as PostHog's SDKs need (exactly 200)."""

from __future__ import annotations

import gzip
import json
from typing import Any

import aiohttp
import pytest

from tests.conftest import StartSidecar
from tests.harness import Collector, Sidecar
from tests.http import post

KEY = "phc_test_key_0001"
STREAMS = f"""
- name: ph
  id: {KEY}
  type: public
  dialect: posthog
  customer_ids: {{default: deny, allow: [distinct_id], deny: [anon_distinct_id]}}
  event_types: {{default: deny, allow: [$pageview, signup], deny: [debug]}}
  customer_properties: {{default: deny, allow: [plan], deny: [email]}}
  event_properties: {{default: allow, deny: [card_number]}}
"""


@pytest.fixture
async def posthog(make_sidecar: StartSidecar) -> Sidecar:
    return await make_sidecar(streams=STREAMS)


def event(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "event": name,
        "distinct_id": "u-1",
        "properties": {"$lib": "posthog-python", "path": "/"},
        "uuid": "0190-aaaa",
        **extra,
    }


def batch(*events: dict[str, Any]) -> dict[str, Any]:
    """What posthog-python posts to /batch/."""
    return {"batch": list(events), "historical_migration": False, "sent_at": "x", "api_key": KEY}


async def test_a_batch_is_judged_and_rewritten(
    posthog: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    body = batch(
        event("$pageview", properties={"path": "/", "card_number": "4111", "$anon_distinct_id": "a-1"}),
        event("debug"),
        event("$set", **{"$set": {"plan": "gold", "email": "e@x"}}),
        event("signup", properties={"$set": {"email": "e@x", "plan": "pro"}, "$set_once": {"email": 1}}),
    )  # fmt: skip
    answer = await post(http, f"{posthog.url}/batch/", body)
    assert answer.status == 200
    assert answer.headers["X-Trackgate-Rejected"] == "1"
    (received,) = collector.received
    sent = received.json
    assert [e["event"] for e in sent["batch"]] == ["$pageview", "$set", "signup"]
    assert sent["batch"][0]["properties"] == {"path": "/"}
    assert sent["batch"][1]["$set"] == {"plan": "gold"}
    assert sent["batch"][2]["properties"] == {"$set": {"plan": "pro"}, "$set_once": {}}
    assert {k: v for k, v in sent.items() if k != "batch"} == {
        "historical_migration": False,
        "sent_at": "x",
        "api_key": KEY,
    }


async def test_an_unmodified_batch_is_forwarded_byte_for_byte(
    posthog: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    raw = json.dumps(batch(event("$pageview"), event("signup")), indent=1).encode()
    answer = await post(http, f"{posthog.url}/batch/", raw=raw)
    assert answer.status == 200
    assert collector.received[0].body == raw


async def test_every_event_rejected_is_answered_200_status_1_and_nothing_sent(
    posthog: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    answer = await post(http, f"{posthog.url}/batch/", batch(event("debug"), event("other")))
    assert (answer.status, answer.json) == (200, {"status": 1})
    assert answer.headers["X-Trackgate-Rejected"] == "2"
    assert collector.received == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/e/", [event("$pageview", properties={"token": KEY})]),
        ("/e/", {"api_key": KEY, "batch": [event("$pageview")]}),
        ("/capture/", {**event("$pageview"), "api_key": KEY}),
        ("/i/v0/e/", event("$pageview", properties={"token": KEY, "distinct_id": "u-1"})),
        ("/track/", event("$pageview", **{"$token": KEY})),
    ],
)
async def test_the_browser_endpoints_take_an_event_an_array_or_a_batch(
    posthog: Sidecar, collector: Collector, http: aiohttp.ClientSession, path: str, body: Any
) -> None:
    answer = await post(http, f"{posthog.url}{path}", body, headers={"Content-Type": "text/plain"})
    assert answer.status == 200
    assert collector.received[0].path_qs == path


@pytest.mark.parametrize("path", ["/e/", "/capture/", "/batch/"])
async def test_an_empty_batch_beside_an_event_is_refused(
    posthog: Sidecar, collector: Collector, http: aiohttp.ClientSession, path: str
) -> None:
    # PostHog's capture reads a falsy `batch` as "one event": the body's own
    body = {**event("debug", properties={"card_number": "4111"}), "api_key": KEY, "batch": []}
    answer = await post(http, f"{posthog.url}{path}", body)
    assert (answer.status, answer.json["code"]) == (400, "malformed_payload")
    assert collector.received == []


async def test_group_set_is_one_event_property_stripped_whole(
    make_sidecar: StartSidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    streams = STREAMS.replace("allow: [$pageview, signup]", "allow: [$groupidentify]").replace(
        "deny: [card_number]", "deny: [$group_set]"
    )
    sidecar = await make_sidecar(streams=streams)
    group = {"$group_type": "company", "$group_key": "c-1", "$group_set": {"name": "Acme"}}
    body = batch(event("$groupidentify", properties=group))
    answer = await post(http, f"{sidecar.url}/batch/", body)
    assert answer.status == 200
    assert collector.received[0].json["batch"][0]["properties"] == {
        "$group_type": "company",
        "$group_key": "c-1",
    }


async def test_an_unknown_key_is_refused_with_a_detail(
    posthog: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    answer = await post(
        http, f"{posthog.url}/batch/", {**batch(event("$pageview")), "api_key": "phc_other"}
    )
    assert answer.status == 403
    assert answer.json["code"] == "unknown_stream" and answer.json["detail"]
    assert collector.received == []


async def test_two_keys_in_one_request_conflict(
    posthog: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    body = batch(event("$pageview", properties={"token": "phc_other"}))
    answer = await post(http, f"{posthog.url}/batch/", body)
    assert (answer.status, answer.json["code"]) == (400, "stream_id_conflict")
    assert collector.received == []


async def test_a_look_alike_key_is_refused(
    posthog: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    body = batch(event("$pageview", properties={"$SET": {"email": "e@x"}}))
    answer = await post(http, f"{posthog.url}/batch/", body)
    assert (answer.status, answer.json["code"]) == (400, "malformed_payload")
    assert collector.received == []


async def test_gzip_is_accepted_and_forwarded_plain(
    posthog: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    body = batch(event("$pageview", properties={"path": "/", "card_number": "4111"}))
    raw = gzip.compress(json.dumps(body).encode())
    answer = await post(
        http, f"{posthog.url}/batch/", raw=raw, headers={"Content-Encoding": "gzip"}
    )
    assert answer.status == 200
    (received,) = collector.received
    assert "Content-Encoding" not in received.headers
    assert received.json["batch"][0]["properties"] == {"path": "/"}


async def test_a_create_alias_carries_an_alias_id(
    posthog: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    body = batch(event("$create_alias", properties={"distinct_id": "u-1", "alias": "u-2"}))
    answer = await post(http, f"{posthog.url}/batch/", body)
    assert answer.status == 200  # $create_alias is not an allowed event type: answered
    assert answer.headers["X-Trackgate-Rejected"] == "1" and collector.received == []


async def test_posthog_js_gzip_without_content_encoding_is_read_by_its_magic_bytes(
    posthog: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    """posthog-js's default `gzip-js`: a gzipped text/plain body, no Content-Encoding."""
    body = {
        "api_key": KEY,
        "batch": [event("$pageview", properties={"path": "/", "card_number": "1"})],
    }
    raw = gzip.compress(json.dumps(body).encode())
    answer = await post(http, f"{posthog.url}/e/", raw=raw, headers={"Content-Type": "text/plain"})
    assert answer.status == 200
    assert collector.received[0].json["batch"][0]["properties"] == {"path": "/"}
    bomb = gzip.compress(b"[" + b" " * 2_000_000 + b"]")
    answer = await post(http, f"{posthog.url}/e/", raw=bomb, headers={"Content-Type": "text/plain"})
    assert (answer.status, answer.json["code"]) == (413, "payload_too_large")
    assert len(collector.received) == 1


async def test_other_dialects_do_not_read_gzip_without_its_header(
    make_sidecar: StartSidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    sidecar = await make_sidecar()  # bloomreach
    raw = gzip.compress(b'{"customer_ids": {"cookie": "c"}, "event_type": "page_visit"}')
    url = (
        f"{sidecar.url}/track/u/v1/customers/events?stream_id=40494d18-e714-4c8c-bbd9-35225de4e81d"
    )
    answer = await post(http, url, raw=raw)
    assert (answer.status, answer.json["code"]) == (400, "malformed_payload")
    assert collector.received == []
