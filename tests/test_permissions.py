"""Command-level permissions of SPEC §5.3 through the running sidecar.

Every test asserts on what the collector recorded, not only on the status.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.harness import STANDARD_STREAMS, Collector, Sidecar
from tests.http import customers_url, event, events_url, post


@pytest.mark.parametrize(
    ("event_type", "ids", "status", "code"),
    [
        ("page_visit", {"cookie": "c"}, 200, None),
        ("internal_debug", {"cookie": "c"}, 403, "event_type_denied"),  # denied by default
        ("purchase", {"cookie": "c"}, 200, None),  # signed_only acts as allow without JWT
        ("page_visit", {"phone_id": "+1555"}, 403, "no_customer_ids"),  # the only id is denied
        ("page_visit", {"email_id": "a@b.c"}, 403, "no_customer_ids"),  # denied by default
        ("page_visit", {}, 403, "no_customer_ids"),
        ("internal_debug", {"phone_id": "+1"}, 403, "event_type_denied"),  # event type first
    ],
)
async def test_event_types_and_customer_ids(
    sidecar: Sidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    event_type: str,
    ids: dict[str, str],
    status: int,
    code: str | None,
) -> None:
    body = {"customer_ids": ids, "event_type": event_type}
    answer = await post(http, events_url(sidecar.url), body)
    assert answer.status == status
    if code:
        assert answer.json == {"success": False, "code": code, "errors": [answer.json["errors"][0]]}
        assert collector.received == []
    else:
        assert [r.json for r in collector.received] == [body]


async def test_identifier_stripping_keeps_only_allowed_ids(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    body = event(cookie="c-1", phone_id="+15550100", registered="ada@example.com")
    answer = await post(http, events_url(sidecar.url), body)
    assert answer.status == 200
    [received] = collector.received
    assert received.json["customer_ids"] == {"cookie": "c-1", "registered": "ada@example.com"}
    assert b"+15550100" not in received.body
    assert answer.headers["X-Trackgate-Stripped"] == "customer_ids=phone_id"


@pytest.mark.parametrize(
    ("endpoint", "properties", "kept"),
    [
        # customer updates: properties are customer properties (default deny)
        (
            "customers",
            {"first_name": "Ada", "password": "pw", "email": "a@b.c", "utm_source": "x"},
            {"first_name": "Ada", "email": "a@b.c"},
        ),
        # events: properties are event properties (default allow, card_number denied)
        (
            "events",
            {"first_name": "Ada", "password": "pw", "card_number": "4111", "utm_source": "x"},
            {"first_name": "Ada", "password": "pw", "utm_source": "x"},
        ),
    ],
)
async def test_properties_are_stripped_by_command_kind(
    sidecar: Sidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    endpoint: str,
    properties: dict[str, str],
    kept: dict[str, str],
) -> None:
    if endpoint == "customers":
        url = customers_url(sidecar.url)
        body: dict[str, Any] = {"customer_ids": {"cookie": "c"}, "properties": properties}
    else:
        url = events_url(sidecar.url)
        body = {
            "customer_ids": {"cookie": "c"},
            "event_type": "view_item",
            "properties": properties,
        }
    answer = await post(http, url, body)
    assert answer.status == 200
    [received] = collector.received
    assert received.json == {**body, "properties": kept}
    assert list(received.json) == list(body)  # key order kept


@pytest.mark.parametrize(
    "body",
    [
        {"customer_ids": {"cookie": "c"}, "event_type": "page_visit", "properties": None},
        {"customer_ids": {"cookie": "c"}, "event_type": "page_visit", "timestamp": None},
        {"customer_ids": {"cookie": "c"}, "event_type": "page_visit"},
    ],
)
async def test_null_properties_and_timestamp_are_valid(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession, body: dict[str, Any]
) -> None:
    answer = await post(http, events_url(sidecar.url), body)
    assert answer.status == 200
    assert collector.received[0].json == body


async def test_an_unmodified_command_is_forwarded_byte_for_byte(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    raw = (
        b'{ "timestamp" : 1.000000000000000000001, "event_type":"page_visit",\n'
        b' "customer_ids":{"cookie":"\\u00e9t\\u00e9"},'
        b' "extra": {"big": 123456789012345678901234567890},'
        b' "properties": {"emoji": "\xf0\x9f\x8e\x89", "n": -0.0, "e": 1E+2} }'
    )
    answer = await post(http, events_url(sidecar.url), raw=raw)
    assert answer.status == 200
    assert collector.received[0].body == raw


async def test_a_rewritten_command_keeps_everything_else_in_meaning(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    raw = (
        b'{"timestamp": 1700000000.125, "event_type": "page_visit",'
        b' "customer_ids": {"phone_id": "+1", "cookie": "\\u00e9t\\u00e9"},'
        b' "unknown_field": {"nested": [1, 2.5, null, true]},'
        b' "properties": {"emoji": "\xf0\x9f\x8e\x89", "card_number": "4111",'
        b' "big": 123456789012345678901234567890}}'
    )
    answer = await post(http, events_url(sidecar.url), raw=raw)
    assert answer.status == 200
    received = collector.received[0].json
    assert list(received) == [
        "timestamp",
        "event_type",
        "customer_ids",
        "unknown_field",
        "properties",
    ]
    assert received["customer_ids"] == {"cookie": "été"}
    assert received["unknown_field"] == {"nested": [1, 2.5, None, True]}
    assert received["properties"] == {"emoji": "🎉", "big": 123456789012345678901234567890}
    assert received["timestamp"] == 1700000000.125
    assert collector.received[0].headers["Content-Length"] == str(len(collector.received[0].body))


async def test_debug_headers_are_off_unless_configured(
    make_sidecar: Any, collector: Collector, http: aiohttp.ClientSession
) -> None:
    sidecar = await make_sidecar(
        streams=STANDARD_STREAMS.replace("debug_headers: true", "debug_headers: false")
    )
    answer = await post(http, events_url(sidecar.url), event(cookie="c", phone_id="+1"))
    assert answer.status == 200
    assert "X-Trackgate-Stripped" not in answer.headers
    assert collector.received[0].json["customer_ids"] == {"cookie": "c"}
