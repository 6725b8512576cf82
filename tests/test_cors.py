"""CORS (SPEC §3.3) for any dialect, and replays of real browser-SDK requests."""

from __future__ import annotations

import io
import json
from typing import Any

import aiohttp
import pytest

from tests.conftest import StartSidecar
from tests.harness import WEB_ID, Collector, Sidecar, shared_testdata
from tests.http import Answer, event, events_url, post
from tests.test_metrics import scrape

SHOP = "https://shop.example.test"
CORS_STREAMS = f"""
- name: web
  id: {WEB_ID}
  type: public
  cors: {{allowed_origins: ["{SHOP}", "https://www.example.test"]}}
  customer_ids: {{allow: [cookie]}}
  event_types: {{allow: [page_visit]}}
- name: plain
  id: plain-1
  type: public
  customer_ids: {{allow: [cookie]}}
  event_types: {{allow: [page_visit]}}
- name: browser
  id: BROWSER_WK
  type: public
  dialect: segment
  cors: {{allowed_origins: ["{SHOP}"]}}
  customer_ids: {{default: deny, allow: [anonymous_id, user_id]}}
  event_types: {{default: deny, allow: [page, Product Viewed, Cart Viewed]}}
  customer_properties: {{default: deny, allow: [name], deny: [email]}}
- name: rudder
  id: RUDDER_WK
  type: public
  dialect: segment
  cors: {{allowed_origins: ["{SHOP}"]}}
  customer_ids: {{default: deny, allow: [anonymous_id, user_id]}}
  event_types: {{default: deny, allow: [page, Product Viewed, Cart Viewed]}}
  customer_properties: {{default: deny, allow: [name], deny: [email]}}
"""


@pytest.fixture
async def cors(make_sidecar: StartSidecar) -> Sidecar:
    return await make_sidecar(streams=CORS_STREAMS)


async def preflight(
    http: aiohttp.ClientSession, url: str, origin: str, request_headers: str = ""
) -> Answer:
    headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    if request_headers:
        headers["Access-Control-Request-Headers"] = request_headers
    async with http.options(url, headers=headers) as response:
        return Answer(response.status, response.headers, await response.read())


@pytest.mark.parametrize(
    ("url_suffix", "origin", "status"),
    [
        (f"/track/u/v1/customers/events?stream_id={WEB_ID}", SHOP, 204),
        (f"/track/u/v1/customers/events?stream_id={WEB_ID}", "https://www.example.test", 204),
        (f"/track/u/v1/customers/events?stream_id={WEB_ID}", "https://evil.example", 403),
        (f"/track/u/v1/customers/events?stream_id={WEB_ID}", "null", 403),
        ("/track/u/v1/customers/events", SHOP, 204),  # no stream in the URL: the union of origins
        ("/track/u/v1/customers/events", "https://evil.example", 403),
        ("/v1/identify", SHOP, 204),  # RudderStack's preflight carries no write key
        ("/v1/track?writeKey=BROWSER_WK", "https://www.example.test", 403),  # not this stream's
    ],
)
async def test_preflights_are_answered_for_allowed_origins_only(
    cors: Sidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    url_suffix: str,
    origin: str,
    status: int,
) -> None:
    answer = await preflight(
        http, cors.url + url_suffix, origin, "Content-Type, Authorization, AnonymousId"
    )
    assert answer.status == status
    if status == 204:
        assert answer.headers["Access-Control-Allow-Origin"] == origin
        assert answer.headers["Access-Control-Allow-Credentials"] == "true"
        assert answer.headers["Access-Control-Allow-Methods"] == "POST, OPTIONS"
        assert (
            answer.headers["Access-Control-Allow-Headers"]
            == "Content-Type, Authorization, AnonymousId"
        )
        assert answer.headers["Access-Control-Max-Age"] == "600"
        assert "Origin" in answer.headers["Vary"]
    else:
        assert answer.code == "origin_not_allowed"
        assert "Access-Control-Allow-Origin" not in answer.headers
    assert collector.received == []


@pytest.mark.parametrize("requested", ["X-" + "a" * 1100, "Bad Header\r\nX-Injected: 1", "x,,y"])
async def test_requested_headers_are_echoed_only_when_sane(
    cors: Sidecar, http: aiohttp.ClientSession, requested: str
) -> None:
    url = f"{cors.url}/track/u/v1/customers/events?stream_id={WEB_ID}"
    try:
        answer = await preflight(http, url, SHOP, requested)
    except ValueError:  # the client itself refuses to send a CR/LF in a header
        return
    assert answer.status == 204
    assert "Access-Control-Allow-Headers" not in answer.headers


async def test_streams_without_cors_do_not_answer_preflights(
    cors: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    answer = await preflight(
        http, f"{cors.url}/track/u/v1/customers/events?stream_id=plain-1", SHOP
    )
    assert answer.status == 200  # the collector's answer
    assert [r.method for r in collector.received] == ["OPTIONS"]


@pytest.mark.parametrize(
    ("origin", "status"),
    [(SHOP, 200), ("https://evil.example", 403), (None, 200)],
)
async def test_requests_carry_cors_headers_and_disallowed_origins_are_never_forwarded(
    cors: Sidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    origin: str | None,
    status: int,
) -> None:
    headers = {"Origin": origin} if origin else {}
    answer = await post(http, events_url(cors.url), event(), headers=headers)
    assert answer.status == status
    if origin == SHOP:
        assert answer.headers["Access-Control-Allow-Origin"] == SHOP
        assert answer.headers["Access-Control-Allow-Credentials"] == "true"
    else:
        assert "Access-Control-Allow-Origin" not in answer.headers
    if status == 403:
        assert answer.code == "origin_not_allowed"
    assert len(collector.received) == (1 if status == 200 else 0)


async def test_error_responses_to_allowed_origins_are_readable(
    cors: Sidecar, http: aiohttp.ClientSession
) -> None:
    answer = await post(
        http, events_url(cors.url), event("internal_debug"), headers={"Origin": SHOP}
    )
    assert (answer.status, answer.code) == (403, "event_type_denied")
    assert answer.headers["Access-Control-Allow-Origin"] == SHOP


# -- replays of real browser-SDK requests -------------------------------------------------

HOP = {"host", "content-length", "connection"}


def captures(name: str) -> list[dict[str, Any]]:
    path = shared_testdata("captures") / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize(
    "name",
    [
        "seg_browser_standard.jsonl",
        "seg_browser_batch.jsonl",
        "rudder_xhr.jsonl",
        "rudder_beacon.jsonl",
    ],
)
async def test_browser_sdk_captures_replay(
    cors: Sidecar, collector: Collector, http: aiohttp.ClientSession, name: str
) -> None:
    recorded = captures(name)
    posts = 0
    for capture in recorded:
        headers = {k: v for k, v in capture["headers"].items() if k.lower() not in HOP}
        async with http.request(
            capture["method"],
            cors.url + capture["path"],
            data=capture["body"].encode(),
            headers=headers,
        ) as response:
            body = await response.read()
            if capture["method"] == "OPTIONS":
                assert response.status == 204, body
                assert (
                    response.headers["Access-Control-Allow-Origin"] == capture["headers"]["Origin"]
                )
                assert (
                    response.headers["Access-Control-Allow-Headers"]
                    == capture["headers"]["Access-Control-Request-Headers"]
                )
                continue
            posts += 1
            assert response.status == 200, body
            if "Origin" in capture["headers"]:
                assert (
                    response.headers["Access-Control-Allow-Origin"] == capture["headers"]["Origin"]
                )
    assert len(collector.received) == posts > 0
    for received, capture in zip(
        collector.received, [c for c in recorded if c["method"] == "POST"], strict=True
    ):
        assert received.path_qs == capture["path"]
        sent, got = json.loads(capture["body"]), received.json
        messages = got.get("batch", [got])
        assert messages and all("email" not in json.dumps(m.get("traits", {})) for m in messages)
        assert all("email" not in (m.get("context", {}).get("traits") or {}) for m in messages)
        assert len(messages) == len(sent.get("batch", [sent]))  # nothing of these was dropped


# -- what a page script can read, how preflights are cached, logged and counted ---------


@pytest.mark.parametrize("body", [event(), event("internal_debug")], ids=["200", "403"])
async def test_page_scripts_may_read_the_request_id_and_rejected_count(
    cors: Sidecar, http: aiohttp.ClientSession, body: dict[str, Any]
) -> None:
    """Finding 10: without Access-Control-Expose-Headers a browser hides X-Request-Id
    and X-Trackgate-Rejected from the page."""
    answer = await post(http, events_url(cors.url), body, headers={"Origin": SHOP})
    assert answer.headers["Access-Control-Expose-Headers"] == "X-Request-Id, X-Trackgate-Rejected"
    assert answer.headers["X-Request-Id"]


@pytest.mark.parametrize("origin", [SHOP, "https://evil.example"])
async def test_preflight_answers_vary_by_origin_and_requested_headers(
    cors: Sidecar, http: aiohttp.ClientSession, origin: str
) -> None:
    url = f"{cors.url}/track/u/v1/customers/events?stream_id={WEB_ID}"
    answer = await preflight(http, url, origin, "Content-Type")
    assert answer.headers.getall("Vary") == ["Origin, Access-Control-Request-Headers"]
    assert answer.headers["X-Request-Id"]


async def test_preflights_are_logged_as_preflight_and_denied_ones_counted_as_rejections(
    cors: Sidecar, http: aiohttp.ClientSession, log_lines: io.StringIO
) -> None:
    """Finding 10: granted preflights were logged as `outcome: rejected`."""
    url = f"{cors.url}/track/u/v1/customers/events?stream_id={WEB_ID}"
    granted = await preflight(http, url, SHOP)
    denied = await preflight(http, url, "https://evil.example")
    assert (granted.status, denied.status) == (204, 403)
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    logged = {
        line["request_id"]: (line["outcome"], line["reason"])
        for line in lines
        if line["event"] == "request"
    }
    assert logged[granted.headers["X-Request-Id"]] == ("preflight", None)
    assert logged[denied.headers["X-Request-Id"]] == ("rejected", "origin_not_allowed")
    samples = await scrape(http, cors)
    counted = {
        (name, dict(labels).get("outcome") or dict(labels).get("reason")): v
        for (name, labels), v in samples.items()
        if name in ("trackgate_requests_total", "trackgate_rejections_total")
    }
    assert counted == {
        ("trackgate_requests_total", "rejected"): 1,
        ("trackgate_rejections_total", "origin_not_allowed"): 1,
    }
