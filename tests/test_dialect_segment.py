"""The segment dialect (SPEC §3.2) through the running sidecar: mapping, batches,
write keys, limits, and the same rules giving the same decisions as bloomreach."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from typing import Any

import aiohttp
import pytest
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics import Client as SegmentClient

from tests.conftest import StartSidecar
from tests.harness import WEB_ID, Collector, Sidecar
from tests.http import Answer, events_url, post

SERVER_SECRET = "segment-server-secret-0123456789"

SEGMENT_STREAMS = f"""
- name: seg
  id: SEG_WK
  type: public
  dialect: segment
  customer_ids: {{default: deny, allow: [anonymous_id, user_id], deny: [previous_id]}}
  event_types: {{default: deny, allow: [Product Viewed, page, screen, group, alias], deny: [Debug]}}
  customer_properties: {{default: deny, allow: [name, plan], deny: [email]}}
  event_properties: {{default: allow, deny: [card_number]}}
  limits: {{max_message_bytes: 2048, max_batch_bytes: 8192}}
- name: seg-server
  id: SERVER_WK
  type: private
  dialect: segment
  secrets: [{{id: s, value: {{env: SERVER_SECRET}}}}]
  customer_ids: {{allow: [user_id, anonymous_id]}}
  event_types: {{allow: [Order Completed]}}
  customer_properties: {{allow: [email]}}
- name: web
  id: {WEB_ID}
  type: public
  dialect: bloomreach
  customer_ids: {{default: deny, allow: [cookie]}}
  event_types: {{default: deny, allow: [page_visit]}}
"""


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
async def segment(make_sidecar: StartSidecar) -> Sidecar:
    return await make_sidecar(streams=SEGMENT_STREAMS, env={"SERVER_SECRET": SERVER_SECRET})


async def send(
    http: aiohttp.ClientSession,
    sidecar: Sidecar,
    path: str,
    body: Any,
    *,
    write_key: str | None = "SEG_WK",
    headers: dict[str, str] | None = None,
) -> Answer:
    sent = {"Authorization": basic(write_key)} if write_key else {}
    return await post(http, sidecar.url + path, body, headers={**sent, **(headers or {})})


# -- mapping, endpoint by endpoint -----------------------------------------------------

MAPPING = [
    # (path, message, what the collector gets: None = rejected with code)
    ("/v1/track", {"userId": "u1", "event": "Product Viewed", "properties": {"sku": "X", "card_number": "4111"}},
     {"userId": "u1", "event": "Product Viewed", "properties": {"sku": "X"}}),
    ("/v1/t", {"anonymousId": "a1", "event": "Product Viewed", "properties": {"sku": "X"}},
     {"anonymousId": "a1", "event": "Product Viewed", "properties": {"sku": "X"}}),
    ("/v1/track", {"userId": "u1", "event": "Debug"}, "event_type_denied"),
    ("/v1/track", {"userId": "u1", "event": "Unlisted"}, "event_type_denied"),
    ("/v1/identify", {"userId": "u1", "traits": {"name": "Ada", "email": "a@b.c", "age": 3}},
     {"userId": "u1", "traits": {"name": "Ada"}}),
    ("/v1/i", {"userId": None, "anonymousId": "a1", "traits": {"plan": "pro"}},
     {"userId": None, "anonymousId": "a1", "traits": {"plan": "pro"}}),
    ("/v1/page", {"anonymousId": "a1", "name": "Home", "properties": {"path": "/"},
                  "context": {"traits": {"email": "a@b.c", "name": "Ada"}, "locale": "en"}},
     {"anonymousId": "a1", "name": "Home", "properties": {"path": "/"},
      "context": {"traits": {"name": "Ada"}, "locale": "en"}}),
    ("/v1/p", {"anonymousId": "a1"}, {"anonymousId": "a1"}),
    ("/v1/screen", {"userId": "u1", "name": "Cart"}, {"userId": "u1", "name": "Cart"}),
    ("/v1/s", {"userId": "u1", "name": "Cart"}, {"userId": "u1", "name": "Cart"}),
    ("/v1/group", {"userId": "u1", "groupId": "g1", "traits": {"size": 3, "card_number": "4111"}},
     {"userId": "u1", "groupId": "g1", "traits": {"size": 3}}),
    ("/v1/g", {"userId": "u1", "groupId": "g1"}, {"userId": "u1", "groupId": "g1"}),
    ("/v1/alias", {"userId": "u1", "previousId": "old"}, {"userId": "u1"}),
    ("/v1/a", {"previousId": "old"}, "no_customer_ids"),
    ("/v1/track", {"userId": None, "anonymousId": None, "event": "Product Viewed"}, "no_customer_ids"),
    ("/v1/track", {"userId": 7, "event": "Product Viewed"}, "malformed_payload"),
    ("/v1/track", {"userId": "u1"}, "malformed_payload"),
    ("/v1/track", {"userId": "u1", "event": "Product Viewed", "type": "page"}, "malformed_payload"),
    ("/v1/identify", {"userId": "u1", "context": {"traits": ["x"]}}, "malformed_payload"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "message", "expected"), MAPPING)
async def test_mapping(
    segment: Sidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    path: str,
    message: dict[str, Any],
    expected: dict[str, Any] | str,
) -> None:
    answer = await send(http, segment, path, message)
    if isinstance(expected, str):
        assert answer.status in (400, 403)
        assert answer.json == {
            "success": False,
            "code": expected,
            "message": answer.json["message"],
        }
        assert collector.received == []
    else:
        assert answer.status == 200
        assert [r.json for r in collector.received] == [expected]
        assert collector.received[0].path_qs == path


async def test_a_batch_drops_rejected_messages_and_counts_them(
    segment: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    batch = [
        {
            "type": "track",
            "userId": "u1",
            "event": "Product Viewed",
            "properties": {"card_number": "4"},
        },
        {"type": "track", "userId": "u1", "event": "Debug"},
        {"type": "identify", "anonymousId": "a1", "traits": {"plan": "pro", "email": "x@y.z"}},
        {"type": "alias", "previousId": "p"},
        "not a message",
    ]
    body = {
        "batch": batch,
        "context": {"traits": {"email": "x@y.z", "name": "A"}, "ip": "1.2.3.4"},
        "sentAt": "now",
    }
    answer = await send(http, segment, "/v1/batch", body)
    assert answer.status == 200
    assert answer.headers["X-Trackgate-Rejected"] == "3"
    received = collector.received[0].json
    assert received["batch"] == [
        {"type": "track", "userId": "u1", "event": "Product Viewed", "properties": {}},
        {"type": "identify", "anonymousId": "a1", "traits": {"plan": "pro"}},
    ]
    assert received["context"] == {
        "traits": {"name": "A"},
        "ip": "1.2.3.4",
    }  # batch context stripped too
    assert received["sentAt"] == "now"


async def test_a_fully_rejected_batch_is_answered_without_forwarding(
    segment: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    answer = await send(
        http, segment, "/v1/b", {"batch": [{"type": "track", "userId": "u", "event": "Debug"}]}
    )
    assert answer.status == 200 and answer.json == {"success": True}
    assert answer.headers["X-Trackgate-Rejected"] == "1"
    assert collector.received == []


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/b", "/v1/import", "/beacon/v1/batch"])
async def test_every_batch_path(
    segment: Sidecar, collector: Collector, http: aiohttp.ClientSession, path: str
) -> None:
    body = {"batch": [{"type": "page", "anonymousId": "a"}]}
    answer = await send(http, segment, f"{path}?writeKey=SEG_WK", body, write_key=None,
                        headers={"Content-Type": "text/plain;charset=UTF-8"})  # fmt: skip
    assert answer.status == 200
    assert "X-Trackgate-Rejected" not in answer.headers
    assert collector.received[0].body == json.dumps(body).encode()  # unmodified: byte for byte


@pytest.mark.parametrize(
    ("url_suffix", "headers", "body", "status", "code"),
    [
        ("", {"Authorization": basic("SEG_WK")}, {"writeKey": "SEG_WK"}, 200, None),
        ("?writeKey=SEG_WK", {}, {}, 200, None),
        ("", {}, {"writeKey": "SEG_WK"}, 200, None),
        ("", {}, {}, 403, "unknown_stream"),
        ("", {"Authorization": basic("NOPE")}, {}, 403, "unknown_stream"),
        (
            "",
            {"Authorization": basic("SEG_WK")},
            {"writeKey": "SERVER_WK"},
            400,
            "stream_id_conflict",
        ),
        ("?writeKey=SERVER_WK", {"Authorization": basic("SEG_WK")}, {}, 400, "stream_id_conflict"),
        ("", {"Authorization": basic(WEB_ID)}, {}, 404, "unknown_endpoint"),  # a bloomreach stream
    ],
)
async def test_the_write_key(
    segment: Sidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    url_suffix: str,
    headers: dict[str, str],
    body: dict[str, str],
    status: int,
    code: str | None,
) -> None:
    message = {"anonymousId": "a", **body}
    answer = await send(
        http, segment, "/v1/page" + url_suffix, message, write_key=None, headers=headers
    )
    assert (answer.status, answer.code if code else None) == (status, code)
    assert len(collector.received) == (1 if status == 200 else 0)


@pytest.mark.parametrize(
    ("password", "status", "code"),
    [("", 401, "secret_missing"), ("wrong", 401, "secret_invalid"), (SERVER_SECRET, 200, None)],
)
async def test_a_private_stream_takes_its_secret_as_the_basic_password(
    segment: Sidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    password: str,
    status: int,
    code: str | None,
) -> None:
    message = {
        "userId": "u1",
        "event": "Order Completed",
        "context": {"traits": {"email": "a@b.c"}},
    }
    answer = await send(http, segment, "/v1/track", message, write_key=None,
                        headers={"Authorization": basic("SERVER_WK", password)})  # fmt: skip
    assert (answer.status, answer.code if code else None) == (status, code)
    if status == 200:
        [received] = collector.received
        assert received.headers["Authorization"] == basic(
            "SERVER_WK"
        )  # the write key, not the secret
        assert SERVER_SECRET not in json.dumps(dict(received.headers))
        assert received.json == message


@pytest.mark.parametrize(
    ("path", "size", "status"),
    [
        ("/v1/track", 1500, 200),
        ("/v1/track", 3000, 413),
        ("/v1/batch", 3000, 413),
        ("/v1/batch", 9000, 413),
    ],
)
async def test_size_limits_per_message_and_batch(
    segment: Sidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    path: str,
    size: int,
    status: int,
) -> None:
    message = {
        "type": "track",
        "userId": "u",
        "event": "Product Viewed",
        "properties": {"pad": "x" * size},
    }
    body = {"batch": [message]} if path == "/v1/batch" else message
    if size == 9000:  # many small messages, together over the batch limit
        body = {"batch": [{**message, "properties": {"pad": "x" * 1000}}] * 9}
    answer = await send(http, segment, path, body)
    assert answer.status == status
    if status == 413:
        assert answer.code == "payload_too_large" and collector.received == []


# -- real SDKs ------------------------------------------------------------------------------


def run_sdk(client: Any, calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> list[Any]:
    """Drive an SDK client in its own thread: queue the calls, flush, shut down."""
    for method, args, kwargs in calls:
        getattr(client, method)(*args, **kwargs)
    client.flush()
    client.join()
    return []


SDK_CALLS: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("identify", ("user-1",), {"traits": {"name": "Ada", "email": "ada@example.com"}}),
    ("track", ("user-1", "Product Viewed"), {"properties": {"sku": "X", "card_number": "4111"}}),
    ("track", ("user-1", "Debug"), {"properties": {}}),
    ("page", ("user-1",), {"name": "Home", "properties": {"path": "/"}}),
]


def check_sdk_traffic(collector: Collector) -> list[dict[str, Any]]:
    messages = [m for r in collector.received for m in r.json["batch"]]
    assert [m["type"] for m in messages] == ["identify", "track", "page"]  # Debug dropped
    identify = messages[0]
    traits = identify.get("traits") or identify["context"]["traits"]  # RudderStack: context.traits
    assert traits == {"name": "Ada"}  # email stripped
    assert messages[1]["properties"] == {"sku": "X"}  # card_number stripped
    assert all(m["userId"] == "user-1" for m in messages)
    return messages


@pytest.mark.parametrize("gzip_body", [False, True])
async def test_segment_analytics_python(
    segment: Sidecar, collector: Collector, gzip_body: bool
) -> None:
    errors: list[Any] = []
    client = SegmentClient("SEG_WK", host=segment.url, on_error=lambda e, batch: errors.append(e),
                    gzip=gzip_body, max_retries=0, upload_interval=0.05)  # fmt: skip
    await asyncio.to_thread(run_sdk, client, SDK_CALLS)
    assert errors == []  # the SDK saw success for what was forwarded
    received = collector.received[0]
    assert received.headers["Authorization"] == basic("SEG_WK")
    assert received.json["writeKey"] == "SEG_WK"
    check_sdk_traffic(collector)


async def test_rudder_sdk_python(make_sidecar: StartSidecar, collector: Collector) -> None:
    sidecar = await make_sidecar(
        streams=SEGMENT_STREAMS.replace("SEG_WK", "RUDDER_WK"), env={"SERVER_SECRET": SERVER_SECRET}
    )
    errors: list[Any] = []
    client = RudderClient("RUDDER_WK", host=sidecar.url, on_error=lambda e, batch: errors.append(e),
                    max_retries=0, upload_interval=0.05)  # fmt: skip
    await asyncio.to_thread(run_sdk, client, SDK_CALLS)
    assert errors == []
    received = collector.received[0]
    assert received.headers["Authorization"] == basic("RUDDER_WK")
    assert "writeKey" not in received.json  # rudder sends the key only in Basic auth
    assert "Content-Encoding" not in received.headers  # gzip from the SDK, plain to the collector
    check_sdk_traffic(collector)


async def test_a_gzip_segment_batch_is_forwarded_plain(
    segment: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    body = json.dumps({"batch": [{"type": "page", "anonymousId": "a"}]}).encode()
    answer = await post(
        http,
        segment.url + "/v1/batch",
        raw=gzip.compress(body),
        headers={"Authorization": basic("SEG_WK"), "Content-Encoding": "gzip"},
    )
    assert answer.status == 200
    assert collector.received[0].body == body


# -- one table, two dialects --------------------------------------------------------------

BOTH = """
- name: web-br
  id: BR_ID
  type: public
  dialect: bloomreach
  RULES
- name: web-seg
  id: SEG_ID
  type: public
  dialect: segment
  RULES
"""
SHARED_RULES = """customer_ids: {default: deny, allow: [user_id, anonymous_id], deny: [previous_id]}
  event_types: {default: deny, allow: [checkout, page], deny: [debug]}
  customer_properties: {default: deny, allow: [name], deny: [email]}
  event_properties: {default: allow, deny: [card_number]}"""

LOGICAL_EVENTS = [
    # (ids, event type, event properties) → expected outcome, kept ids, kept properties
    (
        {"user_id": "u1"},
        "checkout",
        {"total": 5, "card_number": "4"},
        (200, ["user_id"], ["total"]),
    ),
    ({"user_id": "u1", "previous_id": "p"}, "checkout", {}, (200, ["user_id"], [])),
    ({"anonymous_id": "a"}, "debug", {}, (403, "event_type_denied")),
    ({"anonymous_id": "a"}, "unknown", {}, (403, "event_type_denied")),
    ({"previous_id": "p"}, "checkout", {}, (403, "no_customer_ids")),
]
SEGMENT_FIELDS = {"user_id": "userId", "anonymous_id": "anonymousId", "previous_id": "previousId"}


@pytest.mark.parametrize(("ids", "event_type", "properties", "expected"), LOGICAL_EVENTS)
async def test_the_same_rules_decide_the_same_for_both_dialects(
    make_sidecar: StartSidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    ids: dict[str, str],
    event_type: str,
    properties: dict[str, Any],
    expected: tuple[Any, ...],
) -> None:
    sidecar = await make_sidecar(streams=BOTH.replace("RULES", SHARED_RULES))
    bloomreach = await post(http, events_url(sidecar.url, "BR_ID"),
                            {"customer_ids": ids, "event_type": event_type, "properties": properties})  # fmt: skip
    message: dict[str, Any] = {SEGMENT_FIELDS[k]: v for k, v in ids.items()}
    message |= {"event": event_type, "properties": properties}
    segment_answer = await send(http, sidecar, "/v1/track", message, write_key="SEG_ID")
    for answer in (bloomreach, segment_answer):
        assert answer.status == expected[0]
        if expected[0] != 200:
            assert answer.code == expected[1]
    if expected[0] == 200:
        br, seg = (r.json for r in collector.received)
        assert sorted(br["customer_ids"]) == expected[1]
        assert sorted(k for k, f in SEGMENT_FIELDS.items() if f in seg) == expected[1]
        assert sorted(br["properties"]) == sorted(seg["properties"]) == expected[2]


async def test_batch_context_traits_are_judged_beside_a_message_s_own(
    segment: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    """Finding 7: a collector merges the batch context into each message's, so the
    batch's `context.traits` are judged even where a message has its own; a
    stripped name leaves both levels."""
    message = {"type": "track", "anonymousId": "a1", "event": "Product Viewed"}
    body = {
        "batch": [
            {**message, "context": {"traits": {"name": "Ada"}}},
            {**message, "context": {"traits": {"plan": "pro"}}},
        ],
        "context": {"traits": {"email": "a@b.c", "plan": "pro"}, "locale": "en"},
    }
    answer = await send(http, segment, "/v1/batch", body)
    assert answer.status == 200
    assert "X-Trackgate-Rejected" not in answer.headers
    (received,) = collector.received
    assert received.json["context"] == {"traits": {"plan": "pro"}, "locale": "en"}
    assert [m["context"] for m in received.json["batch"]] == [
        {"traits": {"name": "Ada"}},
        {"traits": {"plan": "pro"}},
    ]
