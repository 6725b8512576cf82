"""The built-in posthog dialect (SPEC §3.5) driven by the real posthog-python SDK.

The SDK posts to a tap in front of the sidecar, which forwards to the recording
collector answering as PostHog does (`200 {"status": 1}`). What the SDK sent
(read at the tap) is compared with what the collector received: allowed events
arrive with denied properties and ids stripped and nothing else changed, denied
events never arrive, and the SDK sees success (no `on_error`, no error log, no
second request). What posthog-python does with each answer: /work/briefs/sdk-wire.md §1.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import aiohttp
import pytest
from posthog import Posthog

from tests.conftest import StartSidecar
from tests.harness import Collector, Sidecar, free_port
from tests.http import post
from tests.sdks import Tap, late_collector, live_threads, sdk_problems, until, without

KEY = "phc_trackgate_sdk_test_key"

STREAMS = f"""
- name: ph
  id: {KEY}
  type: public
  dialect: posthog
  customer_ids: {{default: deny, allow: [distinct_id], deny: [anon_distinct_id]}}
  event_types: {{default: deny, allow: [product_viewed, $pageview], deny: [debug_event]}}
  customer_properties: {{default: deny, allow: [name, plan], deny: [email]}}
  event_properties: {{default: allow, deny: [card_number]}}
"""

Call = tuple[str, tuple[Any, ...], dict[str, Any]]

CALLS: list[Call] = [
    ("capture", ("product_viewed",), {"distinct_id": "user-1", "properties": {
        "sku": "X-1", "price": 12.5, "qty": 3, "card_number": "4111111111111111",
        "label": "grüße ☃", "tags": ["a", "b"], "nested": {"card_number": "kept: not top level"},
        "$set_once": {"plan": "trial", "email": "ada@example.com"},  # person properties on an event
    }}),
    ("capture", ("debug_event",), {"distinct_id": "user-1", "properties": {"x": 1}}),
    ("set", (), {"distinct_id": "user-1", "properties": {"name": "Ada", "email": "ada@example.com"}}),
    ("set_once", (), {"distinct_id": "user-1", "properties": {"plan": "pro", "email": "a@b.c"}}),
    # what posthog-js sends on identify(): the anonymous id and $set / $set_once in properties
    ("capture", ("$identify",), {"distinct_id": "user-1", "properties": {
        "$anon_distinct_id": "anon-7", "$set": {"name": "Ada", "email": "ada@example.com"},
        "$set_once": {"plan": "free", "email": "first@example.com"},
    }}),
    ("capture", ("$pageview",), {"distinct_id": "user-1", "properties": {
        "$current_url": "https://shop.example.com/p?q=1",
    }}),
]  # fmt: skip


@pytest.fixture
async def gate(make_sidecar: StartSidecar, collector: Collector, tap: Tap) -> Sidecar:
    """The sidecar with the posthog stream, a collector answering as PostHog, the tap before it."""
    collector.body = b'{"status": 1}'
    sidecar = await make_sidecar(streams=STREAMS)
    tap.target = sidecar.url
    return sidecar


def run(client: Posthog, calls: list[Call]) -> None:
    """The SDK's calls, then flush and shut down (joins the consumer thread)."""
    for method, args, kwargs in calls:
        getattr(client, method)(*args, **kwargs)
    client.flush()
    client.shutdown()


def sent_document(tap: Tap, index: int = 0) -> dict[str, Any]:
    request = tap.received[index]
    body = request.body
    if request.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    document: dict[str, Any] = json.loads(body)
    return document


def expected_batch(sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sent batch as the stream's rules must leave it."""
    kept = []
    for original in sent:
        if original["event"] == "debug_event":
            continue
        message = dict(original)
        properties = without(message["properties"], "card_number", "$anon_distinct_id")
        for operator in ("$set", "$set_once"):
            if operator in message:
                message[operator] = without(message[operator], "email")
            if operator in properties:
                properties[operator] = without(properties[operator], "email")
        message["properties"] = properties
        kept.append(message)
    return kept


@pytest.mark.parametrize("compress", [False, True], ids=["json", "gzip"])
async def test_a_batch_from_posthog_python(
    gate: Sidecar, collector: Collector, tap: Tap, compress: bool
) -> None:
    errors: list[tuple[Exception, list[Any]]] = []
    threads = live_threads()
    client = Posthog(KEY, host=tap.url, gzip=compress, flush_at=100, flush_interval=60,
                     max_retries=3, on_error=lambda e, batch: errors.append((e, batch)))  # fmt: skip
    with sdk_problems("posthog") as problems:
        await asyncio.to_thread(run, client, CALLS)
    assert errors == [] and problems == []  # the SDK saw success
    assert len(tap.received) == 1 and tap.answers[0][0] == 200  # one request, no retry
    assert (tap.received[0].path_qs, tap.received[0].headers.get("Content-Encoding")) == (
        "/batch/", "gzip" if compress else None,
    )  # fmt: skip
    sent = sent_document(tap)
    assert [m["event"] for m in sent["batch"]] == [c[1][0] if c[1] else f"${c[0]}" for c in CALLS]
    assert len(collector.received) == 1
    forwarded = collector.received[0]
    assert "Content-Encoding" not in forwarded.headers  # plain JSON to the collector
    assert int(forwarded.headers["Content-Length"]) == len(forwarded.body)
    received = forwarded.json
    assert without(received, "batch") == without(sent, "batch")  # api_key, sent_at, …
    assert received["batch"] == expected_batch(sent["batch"])
    text = forwarded.body.decode()
    assert "ada@example.com" not in text and "anon-7" not in text
    assert live_threads() <= threads  # the consumer thread has ended


async def test_every_command_rejected_is_a_success_for_the_sdk(
    gate: Sidecar, collector: Collector, tap: Tap
) -> None:
    """Sync mode: one request per call; the denied event alone is answered 200 by trackgate."""
    client = Posthog(KEY, host=tap.url, sync_mode=True)
    with sdk_problems("posthog") as problems:
        await asyncio.to_thread(run, client, [CALLS[1], CALLS[5]])
    assert problems == []
    assert [status for status, _ in tap.answers] == [200, 200]
    assert len(collector.received) == 1  # only the page view
    assert [m["event"] for m in collector.received[0].json["batch"]] == ["$pageview"]


async def test_an_alias_is_judged_by_both_its_ids(
    make_sidecar: StartSidecar, collector: Collector, tap: Tap
) -> None:
    """`alias()` sends `$create_alias` with the previous id as `distinct_id` and the new
    one in `properties.alias` (an id too): forwarded when both id types are allowed,
    stripped when the new one is denied (it would travel unjudged otherwise)."""
    collector.body = b'{"status": 1}'
    streams = STREAMS.replace("allow: [product_viewed, $pageview]", "allow: [$create_alias]")
    sidecar = await make_sidecar(
        streams=streams.replace("deny: [anon_distinct_id]", "deny: [x]").replace(
            "[distinct_id]", "[distinct_id, alias]"
        )
    )
    tap.target = sidecar.url
    client = Posthog(KEY, host=tap.url, sync_mode=True)
    alias: Call = ("alias", ("anon-7", "user-1"), {})
    with sdk_problems("posthog") as problems:
        await asyncio.to_thread(run, client, [alias])
    assert problems == [] and len(collector.received) == 1
    assert collector.received[0].body == tap.received[0].body  # unchanged: as sent, byte for byte

    denied = await make_sidecar(
        streams=streams.replace("deny: [anon_distinct_id]", "deny: [alias]")
    )
    tap.target = denied.url
    with sdk_problems("posthog") as problems:
        await asyncio.to_thread(run, Posthog(KEY, host=tap.url, sync_mode=True), [alias])
    assert problems == [] and tap.answers[-1][0] == 200  # the SDK sees success
    assert len(collector.received) == 2  # the denied new id stripped, the rest forwarded
    sent = sent_document(tap, -1)
    message = sent["batch"][0]
    message["properties"] = without(message["properties"], "alias")
    assert collector.received[1].json == sent


async def test_an_unknown_key_is_refused_and_the_sdk_drops_the_batch(
    gate: Sidecar, collector: Collector, tap: Tap
) -> None:
    errors: list[Exception] = []
    client = Posthog("phc_unknown_key", host=tap.url, flush_at=100, flush_interval=60,
                     max_retries=3, on_error=lambda e, batch: errors.append(e))  # fmt: skip
    with sdk_problems("posthog") as problems:
        await asyncio.to_thread(run, client, CALLS[:1])
    assert collector.received == []
    assert len(tap.received) == 1  # a 4xx: dropped, not retried
    status = tap.answers[0][0]
    assert 400 <= status < 500 and status not in (408, 429)
    assert len(errors) == 1 and getattr(errors[0], "status", None) == status
    assert [r.getMessage() for r in problems if r.levelname == "ERROR"]  # "error uploading: …"


async def test_an_upstream_failure_is_retried_by_the_sdk_and_delivered_once(
    make_sidecar: StartSidecar, tap: Tap
) -> None:
    """The collector is down for the first attempt: trackgate answers 502, the SDK's
    consumer retries (after `Retry-After`), the collector is back: delivered once."""
    port = free_port()
    sidecar = await make_sidecar(streams=STREAMS, upstream=f"http://127.0.0.1:{port}")
    tap.target = sidecar.url
    errors: list[Exception] = []
    client = Posthog(KEY, host=tap.url, flush_at=100, flush_interval=60, max_retries=10,
                     on_error=lambda e, batch: errors.append(e))  # fmt: skip
    sending = asyncio.create_task(asyncio.to_thread(run, client, CALLS[:1]))
    await until(lambda: tap.answers)
    assert tap.answers[0][0] == 502
    back = Collector(body=b'{"status": 1}')
    async with late_collector(back, port):
        await sending
    assert errors == []
    assert [status for status, _ in tap.answers][-1] == 200
    assert {status for status, _ in tap.answers[:-1]} == {502}
    assert len(back.received) == 1  # delivered once
    assert [m["uuid"] for m in back.received[0].json["batch"]] == [
        m["uuid"] for m in sent_document(tap)["batch"]
    ]


# posthog-js 1.449.2 is a browser SDK; its wire form, read from its code, is replayed
# here (lib/src/request.js:136-170, 546-560; lib/src/posthog-core.js:358,695):
# `/e/` with {"api_key", "batch", "sent_at"}, each event's ids and token in `properties`.
JS_EVENTS: list[dict[str, Any]] = [
    {"uuid": "019a0000-0000-7000-8000-000000000001", "event": "$pageview",
     "properties": {"$current_url": "https://shop.example.com/", "distinct_id": "anon-7",
                    "token": KEY, "$lib": "web", "card_number": "4111"},
     "timestamp": "2026-12-02T08:00:00.000Z"},
    {"uuid": "019a0000-0000-7000-8000-000000000002", "event": "$identify",
     "properties": {"distinct_id": "user-1", "$anon_distinct_id": "anon-7", "token": KEY,
                    "$set": {"name": "Ada", "email": "ada@example.com"}},
     "$set": {"name": "Ada", "email": "ada@example.com"}, "$set_once": {"plan": "free"},
     "timestamp": "2026-12-02T08:00:01.000Z"},
    {"uuid": "019a0000-0000-7000-8000-000000000003", "event": "debug_event",
     "properties": {"distinct_id": "user-1", "token": KEY}},
]  # fmt: skip


async def test_the_wire_form_of_posthog_js_without_compression(
    gate: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    """posthog-js with `disable_compression: true` (plain JSON): exactly 200 back, or
    posthog-js retries (retry-queue.js:110)."""
    body = {"api_key": KEY, "batch": JS_EVENTS, "sent_at": "2026-12-02T08:00:02.000Z"}
    answer = await post(http, f"{gate.url}/e/", body)
    assert answer.status == 200
    received = collector.received[0].json
    assert without(received, "batch") == without(body, "batch")
    assert received["batch"] == expected_batch(JS_EVENTS)


async def test_the_default_gzip_js_of_posthog_js(
    gate: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    """posthog-js's default `gzip-js` sends a gzip body as text/plain with neither
    `Content-Encoding` nor `?compression` (request.js:148-154, 546-549); read by its
    magic bytes, judged, and forwarded as plain JSON."""
    body = {"api_key": KEY, "batch": JS_EVENTS, "sent_at": "2026-12-02T08:00:02.000Z"}
    raw = gzip.compress(json.dumps(body).encode(), mtime=0)
    answer = await post(http, f"{gate.url}/e/", raw=raw, headers={"Content-Type": "text/plain"})
    assert answer.status == 200
    forwarded = collector.received[0]
    assert "Content-Encoding" not in forwarded.headers
    assert int(forwarded.headers["Content-Length"]) == len(forwarded.body)
    assert forwarded.json["batch"] == expected_batch(JS_EVENTS)
