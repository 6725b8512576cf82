"""The built-in snowplow dialect (SPEC §3.5) driven by the real snowplow-tracker SDK.

The tracker's `Emitter` posts payload_data batches to a tap in front of the
sidecar, which forwards to the recording collector answering as Snowplow does
(`200 ok`). Both with `encode_base64` on (`ue_px`, URL-safe base64 with padding)
and off (`ue_pr`, JSON in a string): the self-describing data is decoded on both
sides and compared, and must come back in the form the tracker sent it. The
emitter's `on_failure` must never be called for accepted events, and its retry
timer must stay idle. What snowplow-tracker does with each answer:
/work/briefs/sdk-wire.md §4.
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest
from snowplow_tracker import (
    Emitter,
    PageView,
    SelfDescribing,
    SelfDescribingJson,
    StructuredEvent,
    Subject,
    Tracker,
)
from snowplow_tracker.events import Event

from tests.conftest import StartSidecar
from tests.harness import Collector, Sidecar, free_port
from tests.sdks import (
    Tap,
    access_lines,
    b64decode,
    late_collector,
    sdk_problems,
    until,
    without,
)

APP = "sp-trackgate-app"

STREAMS = f"""
- name: sp
  id: {APP}
  type: public
  dialect: snowplow
  customer_ids: {{default: deny, allow: [domain_user_id, network_user_id], deny: [user_id]}}
  event_types:
    default: deny
    allow: [page_view, add-to-basket, com.acme/product_viewed]
    deny: [com.acme/debug]
  customer_properties: {{default: deny}}
  event_properties: {{default: allow, deny: [card_number, se_la]}}
"""

# Bytes whose base64 holds the characters the two alphabets differ in ("ÿ" → "_").
LABEL = "grüße ☃ ÿÿÿ ~~~ ??? >>>"


def events() -> list[Event]:
    return [
        PageView(page_url="https://shop.example.com/p?x=1&y=ü", page_title="Shop ÿ", context=[
            SelfDescribingJson("iglu:com.acme/build/jsonschema/1-0-0", {"release": "1.2 ÿ"}),
        ]),  # a context (`cx` / `co`): not judged, forwarded as sent
        StructuredEvent("shop", "add-to-basket", label="sku-1", property_="size", value=2.5),
        SelfDescribing(SelfDescribingJson("iglu:com.acme/product_viewed/jsonschema/1-0-0", {
            "sku": "X-1", "price": 12.5, "card_number": "4111111111111111", "label": LABEL,
            "nested": {"card_number": "kept"},
        })),
        SelfDescribing(SelfDescribingJson("iglu:com.acme/debug/jsonschema/1-0-0", {"x": 1})),
    ]  # fmt: skip


@pytest.fixture
async def gate(make_sidecar: StartSidecar, collector: Collector, tap: Tap) -> Sidecar:
    collector.body = b"ok"
    sidecar = await make_sidecar(streams=STREAMS)
    tap.target = sidecar.url
    return sidecar


class Run:
    """One emitter and tracker, and what the emitter's callbacks saw."""

    def __init__(self, tap: Tap, base64: bool, app: str = APP, batch: int = 10) -> None:
        host, port = tap.url.removeprefix("http://").rsplit(":", 1)
        self.ok: list[int] = []
        self.failed: list[list[dict[str, Any]]] = []
        self.emitter = Emitter(host, protocol="http", port=int(port), batch_size=batch,
                               on_success=lambda sent: self.ok.append(len(sent)),
                               on_failure=lambda n, failed: self.failed.append(failed))  # fmt: skip
        subject = Subject().set_user_id("known-user-77").set_domain_user_id("duid-1")
        subject.set_network_user_id("nuid-1")
        self.tracker = Tracker(
            "ns", self.emitter, subject=subject, app_id=app, encode_base64=base64
        )

    def send(self, items: list[Event]) -> None:
        for item in items:
            self.tracker.track(item)
        self.tracker.flush()

    @property
    def retrying(self) -> bool:
        return self.emitter.retry_timer.is_active() or self.emitter.event_store.size() > 0


def self_describing(event: dict[str, str]) -> tuple[str, Any]:
    """The form (`ue_px` or `ue_pr`) and the decoded envelope of a self-describing event."""
    if "ue_px" in event:
        return "ue_px", json.loads(b64decode(event["ue_px"], urlsafe=True))
    return "ue_pr", json.loads(event["ue_pr"])


def expected(sent: dict[str, str]) -> dict[str, str] | None:
    """A sent event as the rules must leave it (without its self-describing data), or None."""
    if sent["e"] == "ue" and self_describing(sent)[1]["data"]["schema"].startswith(
        "iglu:com.acme/debug/"
    ):
        return None
    return without(sent, "uid", "se_la", "ue_px", "ue_pr")


@pytest.mark.parametrize("base64", [True, False], ids=["base64", "json"])
async def test_a_batch_from_snowplow_tracker(
    gate: Sidecar, collector: Collector, tap: Tap, base64: bool
) -> None:
    run = Run(tap, base64)
    with sdk_problems("snowplow_tracker.emitters") as problems:
        await asyncio.to_thread(run.send, events())
    assert problems == [] and run.failed == [] and run.ok == [4]
    assert not run.retrying
    assert len(tap.received) == 1 and len(collector.received) == 1  # once, no retry
    sent, forwarded = tap.received[0].json, collector.received[0]
    assert int(forwarded.headers["Content-Length"]) == len(forwarded.body)
    received = forwarded.json
    assert without(received, "data") == without(sent, "data")
    wanted = [(s, e) for s in sent["data"] if (e := expected(s)) is not None]
    assert [without(r, "ue_px", "ue_pr") for r in received["data"]] == [e for _, e in wanted]
    assert all(isinstance(v, str) for r in received["data"] for v in r.values())
    for (source, _), event in zip(wanted, received["data"], strict=True):
        if source["e"] != "ue":
            continue
        sent_form, sent_envelope = self_describing(source)
        received_form, envelope = self_describing(event)
        assert received_form == sent_form == ("ue_px" if base64 else "ue_pr")
        if base64:
            assert "_" in source["ue_px"] and len(event["ue_px"]) % 4 == 0  # URL-safe, padded
        data = sent_envelope["data"]
        assert envelope == {
            **sent_envelope,
            "data": {**data, "data": without(data["data"], "card_number")},
        }
    assert "known-user-77" not in forwarded.body.decode()


async def test_every_event_rejected_is_a_success_for_the_tracker(
    gate: Sidecar, collector: Collector, tap: Tap
) -> None:
    run = Run(tap, base64=True)
    await asyncio.to_thread(run.send, events()[3:])
    assert run.failed == [] and run.ok == [1] and not run.retrying
    assert collector.received == [] and len(tap.received) == 1
    assert tap.answers[0][0] == 200


async def test_an_unknown_app_id_is_refused_without_a_retry(
    gate: Sidecar, collector: Collector, tap: Tap, log_lines: io.StringIO
) -> None:
    run = Run(tap, base64=True, app="sp-unknown-app")
    await asyncio.to_thread(run.send, events()[:1])
    assert collector.received == [] and len(tap.received) == 1
    assert tap.answers[0][0] in (400, 401, 403, 410, 422)  # statuses the tracker does not retry
    assert len(run.failed) == 1 and run.ok == [] and not run.retrying
    assert [line["reason"] for line in access_lines(log_lines)] == ["unknown_stream"]


async def test_two_app_ids_in_one_batch_are_a_conflict(
    gate: Sidecar, collector: Collector, tap: Tap, log_lines: io.StringIO
) -> None:
    """Two trackers sharing one emitter put both app ids in one request."""
    run = Run(tap, base64=True, batch=2)
    other = Tracker("other", run.emitter, app_id="sp-other-app")

    def send() -> None:
        run.tracker.track(events()[0])
        other.track(events()[0])  # the second event fills the batch: one request

    await asyncio.to_thread(send)
    assert collector.received == [] and len(tap.received) == 1
    assert tap.answers[0][0] == 400
    assert [line["reason"] for line in access_lines(log_lines)] == ["stream_id_conflict"]
    assert len(run.failed) == 1 and not run.retrying


async def test_an_upstream_failure_is_retried_by_the_tracker_and_delivered_once(
    make_sidecar: StartSidecar, tap: Tap
) -> None:
    """The collector is down: trackgate answers 502 (a status the tracker retries), the
    emitter's retry timer re-sends; the collector is back: delivered once."""
    port = free_port()
    sidecar = await make_sidecar(streams=STREAMS, upstream=f"http://127.0.0.1:{port}")
    tap.target = sidecar.url
    run = Run(tap, base64=True)
    await asyncio.to_thread(run.send, events()[:1])
    assert tap.answers[0][0] == 502 and len(run.failed) == 1 and run.ok == []
    back = Collector(body=b"ok")
    async with late_collector(back, port):
        await until(lambda: run.ok)
    assert run.ok == [1] and not run.retrying
    assert len(back.received) == 1
    eid = tap.received[0].json["data"][0]["eid"]
    assert [e["eid"] for e in back.received[0].json["data"]] == [eid]
