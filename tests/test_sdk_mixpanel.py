"""The built-in mixpanel dialect (SPEC §3.5) driven by the real mixpanel-python SDK.

The SDK posts form bodies (`data=<JSON>&verbose=1&ip=0`) to a tap in front of the
sidecar, which forwards to the recording collector answering as Mixpanel does
(`{"status": 1, "error": null}`). The form is decoded on both sides and compared:
allowed events and profile updates arrive with denied properties and ids
stripped (inside `$set`, `$set_once`, `$add`, `$append`, `$union`, `$remove`, and the name
list of `$unset`), the other form fields unchanged; the SDK raises on anything
but `status: 1`, so a call that returns is a success it saw. What mixpanel-python
does with each answer: /work/briefs/sdk-wire.md §3.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from mixpanel import BufferedConsumer, Consumer, Mixpanel, MixpanelException

from tests.conftest import StartSidecar
from tests.harness import Collector, Sidecar, free_port
from tests.http import post
from tests.sdks import Tap, b64decode, form, late_collector, sdk_problems, without

TOKEN = "mp_trackgate_sdk_test_token"
IMPORT_TOKEN = "mp_trackgate_import_token"
IMPORT_SECRET = "mixpanel-api-secret-0123456789abcdef"

STREAMS = f"""
- name: mp
  id: {TOKEN}
  type: public
  dialect: mixpanel
  customer_ids: {{default: deny, allow: [distinct_id, device_id], deny: [user_id]}}
  event_types: {{default: deny, allow: [product_viewed, page_view], deny: [debug_event]}}
  customer_properties: {{default: deny, allow: [name, plan, visits, tags, old_flag], deny: [email]}}
  event_properties: {{default: allow, deny: [card_number]}}
- name: mp-import
  id: {IMPORT_TOKEN}
  type: private
  dialect: mixpanel
  secrets: [{{id: api-secret, value: {{env: MP_SECRET}}}}]
  customer_ids: {{default: deny, allow: [distinct_id]}}
  event_types: {{default: deny, allow: [product_viewed], deny: [debug_event]}}
  customer_properties: {{default: deny}}
  event_properties: {{default: allow, deny: [card_number]}}
"""

Step = Callable[[Mixpanel], None]

EVENT = {"sku": "X-1", "price": 12.5, "card_number": "4111111111111111", "label": "grüße ☃ a+b&c=d",
         "$device_id": "device-1", "$user_id": "known-user-77", "nested": {"card_number": "kept"}}  # fmt: skip

STEPS: list[Step] = [
    lambda mp: mp.track("user-1", "product_viewed", EVENT),
    lambda mp: mp.track("user-1", "debug_event", {"x": 1}),
    lambda mp: mp.track("user-1", "page_view", {"path": "/"}),
    lambda mp: mp.people_set("user-1", {"name": "Ada", "email": "ada@example.com"}),
    lambda mp: mp.people_set_once("user-1", {"plan": "free", "email": "first@example.com"}),
    lambda mp: mp.people_increment("user-1", {"visits": 1, "email": 2}),
    lambda mp: mp.people_union("user-1", {"tags": ["a"], "email": ["x@example.com"]}),
    lambda mp: mp.people_append("user-1", {"tags": "c", "email": "z@example.com"}),
    lambda mp: mp.people_remove("user-1", {"tags": "b", "email": "y@example.com"}),
    lambda mp: mp.people_unset("user-1", ["old_flag", "email"]),
    lambda mp: mp.people_delete("user-1"),  # {"$delete": ""}: no properties, forwarded as is
]


@pytest.fixture
async def gate(make_sidecar: StartSidecar, collector: Collector, tap: Tap) -> Sidecar:
    collector.body = b'{"status": 1, "error": null}'
    sidecar = await make_sidecar(streams=STREAMS, env={"MP_SECRET": IMPORT_SECRET})
    tap.target = sidecar.url
    return sidecar


def consumer(kind: type[Consumer] | type[BufferedConsumer], url: str) -> Any:
    return kind(events_url=f"{url}/track", people_url=f"{url}/engage", import_url=f"{url}/import")


def run(mp: Mixpanel, steps: list[Step], flush: Callable[[], None] | None = None) -> None:
    for step in steps:
        step(mp)
    if flush is not None:
        flush()


def messages(body: bytes) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The JSON messages of a form body (an array or one object) and the other fields."""
    fields = form(body)
    data = json.loads(fields.pop("data"))
    return (data if isinstance(data, list) else [data]), fields


def expected_event(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "properties": without(event["properties"], "card_number", "$user_id")}


def expected_update(update: dict[str, Any]) -> dict[str, Any]:
    update = dict(update)
    for operator in ("$set", "$set_once", "$add", "$append", "$union", "$remove"):
        if operator in update:
            update[operator] = without(update[operator], "email")
    if "$unset" in update:
        update["$unset"] = [name for name in update["$unset"] if name != "email"]
    return update


async def test_a_buffered_batch_from_mixpanel_python(
    gate: Sidecar, collector: Collector, tap: Tap
) -> None:
    buffered = consumer(BufferedConsumer, tap.url)
    mp = Mixpanel(TOKEN, consumer=buffered)
    with sdk_problems("mixpanel") as problems:
        await asyncio.to_thread(run, mp, STEPS, buffered.flush)  # raises unless status 1
    assert problems == []
    assert [r.path_qs for r in tap.received] == ["/track", "/engage"]  # one batch each, once
    assert [r.path_qs for r in collector.received] == ["/track", "/engage"]
    for sent, forwarded in zip(tap.received, collector.received, strict=True):
        sent_messages, sent_fields = messages(sent.body)
        received_messages, received_fields = messages(forwarded.body)
        assert received_fields == sent_fields == {"verbose": "1", "ip": "0"}
        assert forwarded.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert int(forwarded.headers["Content-Length"]) == len(forwarded.body)
        if sent.path_qs == "/track":
            wanted = [expected_event(e) for e in sent_messages if e["event"] != "debug_event"]
        else:
            wanted = [expected_update(u) for u in sent_messages]
        assert received_messages == wanted
        text = form(forwarded.body)["data"]
        assert "ada@example.com" not in text and "known-user-77" not in text


async def test_one_request_per_call_and_a_fully_rejected_one_is_a_success(
    gate: Sidecar, collector: Collector, tap: Tap
) -> None:
    mp = Mixpanel(TOKEN, consumer=consumer(Consumer, tap.url))
    with sdk_problems("mixpanel") as problems:
        await asyncio.to_thread(run, mp, STEPS[:4])  # each call raises unless status 1
    assert problems == []
    assert [r.path_qs for r in tap.received] == ["/track", "/track", "/track", "/engage"]
    assert all(json.loads(body) == {"status": 1, "error": None} for _, body in tap.answers)
    assert [r.path_qs for r in collector.received] == ["/track", "/track", "/engage"]
    sent = [messages(r.body)[0][0] for r in tap.received]
    received = [messages(r.body)[0][0] for r in collector.received]
    assert received == [expected_event(sent[0]), sent[2], expected_update(sent[3])]
    assert collector.received[1].body == tap.received[2].body  # unmodified: byte for byte


async def test_an_unknown_token_raises_in_the_sdk_and_nothing_is_forwarded(
    gate: Sidecar, collector: Collector, tap: Tap
) -> None:
    mp = Mixpanel("mp_unknown_token", consumer=consumer(Consumer, tap.url))
    with pytest.raises(MixpanelException, match="Mixpanel error: "):
        await asyncio.to_thread(run, mp, STEPS[:1])
    assert collector.received == [] and len(tap.received) == 1
    assert json.loads(tap.answers[0][1])["status"] == 0


async def test_import_with_the_api_secret_as_basic_user(
    gate: Sidecar, collector: Collector, tap: Tap
) -> None:
    """mixpanel-python's /import: the same form body, `Authorization: Basic base64(secret:)`."""
    mp = Mixpanel(IMPORT_TOKEN, consumer=consumer(Consumer, tap.url))

    def imports(mp: Mixpanel) -> None:
        mp.import_data(None, "user-9", "product_viewed", 1_700_000_000,
                       {"sku": "Y", "card_number": "4111"}, api_secret=IMPORT_SECRET)  # fmt: skip
        mp.import_data(None, "user-9", "debug_event", 1_700_000_000, {}, api_secret=IMPORT_SECRET)

    await asyncio.to_thread(run, mp, [imports])
    assert [r.path_qs for r in tap.received] == ["/import", "/import"]
    assert tap.received[0].headers["Authorization"].startswith("Basic ")
    assert len(collector.received) == 1
    sent, _ = messages(tap.received[0].body)
    received, fields = messages(collector.received[0].body)
    assert received == [expected_event(sent[0])] and fields == {"verbose": "1", "ip": "0"}
    assert "Authorization" not in collector.received[0].headers  # the consumed secret


async def test_import_with_a_wrong_secret_is_refused(
    gate: Sidecar, collector: Collector, tap: Tap
) -> None:
    mp = Mixpanel(IMPORT_TOKEN, consumer=consumer(Consumer, tap.url))
    with pytest.raises(MixpanelException):
        await asyncio.to_thread(
            mp.import_data, None, "user-9", "product_viewed", 1_700_000_000, {},
            api_secret="not-the-secret-0123456789",
        )  # fmt: skip
    assert collector.received == [] and len(tap.received) == 1


async def test_an_upstream_failure_raises_and_the_kept_batch_is_delivered_once_later(
    make_sidecar: StartSidecar, tap: Tap
) -> None:
    """mixpanel-python does not retry over http: the flush raises (nothing lost
    silently) and the BufferedConsumer keeps the batch; the next flush, with the
    collector back, delivers it once."""
    port = free_port()
    sidecar = await make_sidecar(
        streams=STREAMS, upstream=f"http://127.0.0.1:{port}", env={"MP_SECRET": IMPORT_SECRET}
    )
    tap.target = sidecar.url
    buffered = consumer(BufferedConsumer, tap.url)
    mp = Mixpanel(TOKEN, consumer=buffered)
    with pytest.raises(MixpanelException, match="upstream_unavailable"):
        await asyncio.to_thread(run, mp, STEPS[2:3], buffered.flush)
    assert tap.answers[0][0] == 502
    back = Collector(body=b'{"status": 1, "error": null}')
    async with late_collector(back, port):
        await asyncio.to_thread(buffered.flush)
    assert len(tap.received) == 2 and len(back.received) == 1
    assert messages(back.received[0].body)[0] == messages(tap.received[0].body)[0]


# mixpanel-browser 2.83.0 is a browser SDK; its wire form, read from its code, is
# replayed here: to a host that is not *.mixpanel.com it posts `data=` + the URI-encoded,
# standard, padded base64 of the JSON batch, `verbose`, `ip` and `_` in the query
# (src/mixpanel-core.js:307-311, 653-681, 1046-1051; src/utils.js:749-790).
def browser_form(batch: list[dict[str, Any]]) -> bytes:
    text = json.dumps(batch, separators=(",", ":"), ensure_ascii=False)
    return ("data=" + quote(base64.b64encode(text.encode()).decode(), safe="")).encode()


BROWSER_EVENTS: list[dict[str, Any]] = [
    {"event": "product_viewed", "properties": {
        "token": TOKEN, "distinct_id": "$device:d-1", "$device_id": "d-1", "$user_id": "known-user-77",
        "time": 1796197843.7, "$insert_id": "i-1", "mp_lib": "web", "card_number": "4111",
        "label": "ÿÿÿ >>> ???"}},
    {"event": "debug_event", "properties": {"token": TOKEN, "distinct_id": "$device:d-1"}},
]  # fmt: skip


async def test_the_wire_form_of_mixpanel_browser(
    gate: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    """The batch comes back in the same carrier (standard alphabet, padded); the answer
    is 200 with Mixpanel's JSON (the batcher needs a 200; request-batcher.js:257-296)."""
    target = f"{gate.url}/track/?verbose=1&ip=1&_=1796197843700"
    body = browser_form(BROWSER_EVENTS)
    assert b"%2B" in body or b"%2F" in body  # the alphabet is visible in what is sent
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = await post(http, target, raw=body, headers=form_type)
    assert answer.status == 200 and answer.json == {"status": 1, "error": None}
    forwarded = collector.received[0]
    assert forwarded.path_qs == "/track/?verbose=1&ip=1&_=1796197843700"
    fields = form(forwarded.body)
    assert list(fields) == ["data"]
    assert json.loads(b64decode(fields["data"], urlsafe=False)) == [
        expected_event(BROWSER_EVENTS[0])
    ]
