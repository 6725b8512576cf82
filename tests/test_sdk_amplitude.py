"""The built-in amplitude dialect (SPEC §3.5) driven by the real amplitude-analytics SDK.

The SDK posts to a tap in front of the sidecar, which forwards to the recording
collector answering as Amplitude does (`{"code": 200, …}`: the SDK reads `code`
from the body). What the SDK sent is compared with what the collector received;
the SDK's callback must see only 2xx codes, and nothing may be left queued for a
retry. What amplitude-analytics does with each answer: /work/briefs/sdk-wire.md §2.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from amplitude import Amplitude, BaseEvent, Config, EventOptions, Identify
from amplitude.storage import InMemoryStorage, InMemoryStorageProvider

from tests.conftest import StartSidecar
from tests.harness import Collector, Sidecar, free_port
from tests.sdks import Tap, late_collector, live_threads, sdk_problems, without

KEY = "amp_trackgate_sdk_test_key"

STREAMS = f"""
- name: amp
  id: {KEY}
  type: public
  dialect: amplitude
  customer_ids: {{default: deny, allow: [device_id], deny: [user_id]}}
  event_types: {{default: deny, allow: [product_viewed, page_view], deny: [debug_event]}}
  customer_properties: {{default: deny, allow: [name, plan, visits, old_flag], deny: [email, password]}}
  event_properties: {{default: allow, deny: [card_number]}}
"""

COLLECTOR_ANSWER = (
    b'{"code": 200, "events_ingested": 1, "payload_size_bytes": 1, "server_upload_time": 1}'
)


class KeptStorage(InMemoryStorageProvider):
    """The SDK's own in-memory storage, kept where the test can look at it."""

    storage: InMemoryStorage | None = None

    def get_storage(self) -> InMemoryStorage:
        self.storage = InMemoryStorage()
        return self.storage


def events() -> list[BaseEvent | tuple[Identify, EventOptions]]:
    return [
        BaseEvent("product_viewed", user_id="user-0001", device_id="device-0001",
                  event_properties={"sku": "X-1", "price": 12.5, "card_number": "4111111111111111",
                                    "label": "grüße ☃", "nested": {"card_number": "kept"}},
                  user_properties={"plan": "pro", "email": "ada@example.com"}),
        (Identify().set("name", "Ada").set("email", "ada@example.com").set_once("plan", "free")
         .unset("password").unset("old_flag").add("visits", 1),
         EventOptions(device_id="device-0001")),
        BaseEvent("debug_event", device_id="device-0001", event_properties={"x": 1}),
        BaseEvent("page_view", user_id="user-0002"),  # its only id is denied
        BaseEvent("page_view", device_id="device-0002", event_properties={"path": "/"}),
    ]  # fmt: skip


@pytest.fixture
async def gate(make_sidecar: StartSidecar, collector: Collector, tap: Tap) -> Sidecar:
    collector.body = COLLECTOR_ANSWER
    sidecar = await make_sidecar(streams=STREAMS)
    tap.target = sidecar.url
    return sidecar


class Run:
    """One SDK client: its callback calls, its storage, and the threads it started."""

    def __init__(self, url: str, key: str = KEY, batch: int = 100) -> None:
        self.calls: list[tuple[str, int, str | None]] = []
        self.kept = KeptStorage()
        self.threads = live_threads()
        # min_id_length is sent as the request's "options", which must survive
        config = Config(server_url=url, flush_queue_size=batch, flush_interval_millis=60_000,
                        callback=self.callback, storage_provider=self.kept,
                        min_id_length=5)  # fmt: skip
        self.client = Amplitude(key, config)

    def callback(self, event: BaseEvent, code: int, message: str | None) -> None:
        self.calls.append((event.event_type, code, message))

    def send(self, items: list[BaseEvent | tuple[Identify, EventOptions]]) -> None:
        """Queue the events, then shut down: flushes and waits for the sending pool."""
        for item in items:
            if isinstance(item, tuple):
                self.client.identify(*item)
            else:
                self.client.track(item)
        self.client.shutdown()
        storage = self.kept.storage
        assert storage is not None
        with storage.lock:  # wake the SDK's consumer thread if it still waits for a batch
            storage.lock.notify_all()
        for thread in live_threads() - self.threads:
            thread.join(timeout=20)

    @property
    def left_queued(self) -> int:
        assert self.kept.storage is not None
        return self.kept.storage.total_events


def expected(sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kept = []
    for original in sent:
        if original["event_type"] == "debug_event" or "device_id" not in original:
            continue
        event = without(original, "user_id")
        if "event_properties" in event:
            event["event_properties"] = without(event["event_properties"], "card_number")
        properties = event.get("user_properties")
        if properties is not None:
            properties = without(properties, "email")
            for operator, names in list(properties.items()):
                if operator.startswith("$"):
                    properties[operator] = without(names, "email", "password")
            event["user_properties"] = properties
        kept.append(event)
    return kept


@pytest.mark.parametrize("path", ["/2/httpapi", "/batch"])
async def test_a_batch_from_amplitude_analytics(
    gate: Sidecar, collector: Collector, tap: Tap, path: str
) -> None:
    run = Run(tap.url + path)
    with sdk_problems("amplitude") as problems:
        await asyncio.to_thread(run.send, events())
    assert problems == []
    # every event gets the success callback (rejected ones too: the batch was a 2xx)
    assert sorted(run.calls) == sorted(
        (e.event_type if isinstance(e, BaseEvent) else "$identify", 200, "Event sent successfully.")
        for e in events()
    )
    assert run.left_queued == 0  # nothing re-queued for a retry
    assert live_threads() <= run.threads  # the SDK's consumer and pool threads have ended
    assert len(tap.received) == 1 and tap.received[0].path_qs == path
    sent = tap.received[0].json
    assert sent["options"] == {"min_id_length": 5}
    assert len(collector.received) == 1
    forwarded = collector.received[0]
    assert forwarded.path_qs == path
    assert int(forwarded.headers["Content-Length"]) == len(forwarded.body)
    received = forwarded.json
    assert without(received, "events") == without(sent, "events")  # api_key (and options)
    assert received["events"] == expected(sent["events"])
    text = forwarded.body.decode()
    assert "ada@example.com" not in text and "user-000" not in text and "password" not in text


async def test_every_event_rejected_is_a_success_for_the_sdk(
    gate: Sidecar, collector: Collector, tap: Tap
) -> None:
    run = Run(tap.url + "/2/httpapi")
    with sdk_problems("amplitude") as problems:
        await asyncio.to_thread(run.send, [events()[2]])
    assert problems == [] and collector.received == []
    assert run.calls == [("debug_event", 200, "Event sent successfully.")]
    assert run.left_queued == 0 and len(tap.received) == 1
    status, body = tap.answers[0]
    assert 200 <= status < 300 and json.loads(body)["code"] == 200


async def test_an_unknown_key_is_refused_and_the_sdk_drops_the_batch(
    gate: Sidecar, collector: Collector, tap: Tap
) -> None:
    run = Run(tap.url + "/2/httpapi", key="amp_unknown_key")
    with sdk_problems("amplitude") as problems:
        await asyncio.to_thread(run.send, events()[:1])
    assert collector.received == []
    assert len(tap.received) == 1 and run.left_queued == 0  # dropped, not retried
    answer = json.loads(tap.answers[0][1])
    assert answer["code"] == 400 and answer["error"].startswith("Invalid API key:")
    assert [r.getMessage() for r in problems] == ["Invalid API Key"]
    assert run.calls == []  # the SDK drops an invalid key's batch without a callback


async def test_an_upstream_failure_is_retried_by_the_sdk_and_delivered_once(
    make_sidecar: StartSidecar, tap: Tap
) -> None:
    """The collector is down: trackgate answers 5xx with a `code` the SDK reads as a
    server failure, the SDK keeps the events queued; the collector is back: the next
    flush delivers them once, with the success callback."""
    port = free_port()
    sidecar = await make_sidecar(streams=STREAMS, upstream=f"http://127.0.0.1:{port}")
    tap.target = sidecar.url
    run = Run(tap.url + "/2/httpapi")

    def first_attempt() -> None:
        run.client.track(events()[4])
        for future in run.client.flush():
            if future is not None:
                future.result()

    await asyncio.to_thread(first_attempt)
    status, body = tap.answers[0]
    assert status == 502 and json.loads(body)["code"] == 502
    assert run.calls == [] and run.left_queued == 1  # kept for a retry, not dropped
    back = Collector(body=COLLECTOR_ANSWER)
    async with late_collector(back, port):
        await asyncio.to_thread(run.send, [])
    assert run.calls == [("page_view", 200, "Event sent successfully.")]
    assert run.left_queued == 0 and len(back.received) == 1
    assert back.received[0].json["events"] == tap.received[-1].json["events"]
    assert [e["insert_id"] for e in back.received[0].json["events"]] == [
        e["insert_id"] for e in tap.received[0].json["events"]
    ]
