"""The built-in `snowplow` dialect (SPEC §3.5) through the running sidecar, with tp2
payloads as snowplow-tracker sends them (base64 on and off): the app id names the
stream, `e` the event type, self-describing events are judged inside `ue_pr` /
`ue_px` (kept in their form), and rejections use only statuses trackers drop."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import pytest

from tests.conftest import StartSidecar
from tests.harness import Collector, Sidecar
from tests.http import post

APP = "sp-app-0001"
TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
UNSTRUCT = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
STREAMS = f"""
- name: sp
  id: {APP}
  type: public
  dialect: snowplow
  template: public
  customer_ids: {{deny: [network_user_id]}}
  event_types: {{allow: [com.acme/link_click, add-to-basket], deny: [debug]}}
  event_properties: {{default: allow, deny: [card_number, se_la]}}
"""


@pytest.fixture
async def snowplow(make_sidecar: StartSidecar, collector: Collector) -> Sidecar:
    collector.body = b"ok"
    return await make_sidecar(streams=STREAMS)


def payload(*events: dict[str, str]) -> dict[str, Any]:
    return {"schema": PAYLOAD, "data": list(events)}


def event(e: str, **fields: str) -> dict[str, str]:
    return {"e": e, "eid": "e-1", "tv": "py-1.1.0", "aid": APP, "p": "pc", "duid": "d-1", **fields}


def self_describing(data: dict[str, Any], *, base64_on: bool) -> dict[str, str]:
    envelope = {
        "schema": UNSTRUCT,
        "data": {"schema": "iglu:com.acme/link_click/jsonschema/1-0-0", "data": data},
    }
    text = json.dumps(envelope, ensure_ascii=False)
    if base64_on:
        return event("ue", ue_px=base64.urlsafe_b64encode(text.encode()).decode())
    return event("ue", ue_pr=text)


def unpack(item: dict[str, str]) -> Any:
    if "ue_px" in item:
        return json.loads(base64.urlsafe_b64decode(item["ue_px"]))
    return json.loads(item["ue_pr"])


@pytest.mark.parametrize("base64_on", [True, False], ids=["ue_px", "ue_pr"])
async def test_events_are_judged_and_self_describing_data_kept_in_its_form(
    snowplow: Sidecar, collector: Collector, http: aiohttp.ClientSession, base64_on: bool
) -> None:
    body = payload(
        self_describing({"target": "/x", "card_number": "4111"}, base64_on=base64_on),
        event("pv", url="https://shop.example.com/", tnuid="n-1"),
        event("se", se_ca="shop", se_ac="add-to-basket", se_la="secret", se_va="2.5"),
        event("se", se_ca="shop", se_ac="debug"),
    )
    answer = await post(http, f"{snowplow.url}{TP2}", body)
    assert (answer.status, answer.body) == (200, b"ok")
    assert answer.headers["X-Trackgate-Rejected"] == "1"
    sent = collector.received[0].json["data"]
    assert [item["e"] for item in sent] == ["ue", "pv", "se"]
    assert unpack(sent[0])["data"]["data"] == {"target": "/x"}
    if base64_on:  # URL-safe alphabet, padded, as the Python tracker writes it
        assert "+" not in sent[0]["ue_px"] and "/" not in sent[0]["ue_px"]
        assert len(sent[0]["ue_px"]) % 4 == 0
    assert "tnuid" not in sent[1] and sent[1]["duid"] == "d-1"
    assert "se_la" not in sent[2] and sent[2]["se_va"] == "2.5"
    assert all(isinstance(v, str) for item in sent for v in item.values())


async def test_an_unpadded_ue_px_that_needed_no_padding_is_written_back_unpadded(
    snowplow: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    # The JS tracker writes URL-safe base64 without padding; a text whose length is
    # a multiple of 4 does not show it, and the rewrite follows the declaration.
    kept = json.dumps(_envelope({"target": "/xy"}), separators=(",", ":")).encode()
    assert len(kept) % 3  # the rewritten text needs padding
    card = next(c for c in ("4" * n for n in range(1, 4)) if not len(_sent(c)) % 3)
    sent_text = _sent(card)
    ue_px = base64.urlsafe_b64encode(sent_text).decode()
    assert "=" not in ue_px  # nothing shows whether the tracker pads
    answer = await post(http, f"{snowplow.url}{TP2}", payload(event("ue", ue_px=ue_px)))
    assert answer.status == 200
    written = collector.received[0].json["data"][0]["ue_px"]
    assert "=" not in written
    assert unpack({"ue_px": written + "=" * (-len(written) % 4)})["data"]["data"] == {
        "target": "/xy"
    }


def _sent(card: str) -> bytes:
    return json.dumps(_envelope({"target": "/xy", "card_number": card})).encode()


def _envelope(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": UNSTRUCT,
        "data": {"schema": "iglu:com.acme/link_click/jsonschema/1-0-0", "data": data},
    }


async def test_an_event_with_both_ue_pr_and_ue_px_of_different_schemas_is_dropped(
    snowplow: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    allowed = self_describing({"target": "/x"}, base64_on=False)
    hidden = {
        "schema": UNSTRUCT,
        "data": {"schema": "iglu:com.acme/debug/jsonschema/1-0-0", "data": {"card": "4111"}},
    }
    both = {**allowed, "ue_px": base64.urlsafe_b64encode(json.dumps(hidden).encode()).decode()}
    answer = await post(http, f"{snowplow.url}{TP2}", payload(both, event("pv")))
    assert (answer.status, answer.body) == (200, b"ok")
    assert answer.headers["X-Trackgate-Rejected"] == "1"
    assert [item["e"] for item in collector.received[0].json["data"]] == ["pv"]


async def test_every_event_rejected_is_200_ok_and_nothing_sent(
    snowplow: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    answer = await post(http, f"{snowplow.url}{TP2}", payload(event("se", se_ac="debug")))
    assert (answer.status, answer.body) == (200, b"ok")
    assert collector.received == []


@pytest.mark.parametrize(
    ("body", "method", "status", "code"),
    [
        (payload(event("pv"), {**event("pv"), "aid": "other"}), "POST", 400, "stream_id_conflict"),
        (payload({**event("pv"), "aid": "other"}), "POST", 403, "unknown_stream"),
        (payload({**event("pv"), "AID": "x"}), "POST", 400, "malformed_payload"),
        (payload(event("pv")), "PUT", 400, "method_not_allowed"),  # 405 would be retried
    ],
)
async def test_rejections_use_only_statuses_trackers_drop(
    snowplow: Sidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    body: Any,
    method: str,
    status: int,
    code: str,
) -> None:
    answer = await post(http, f"{snowplow.url}{TP2}", body, method=method)
    assert answer.status == status
    assert answer.body.decode().startswith(f"{code}: ")
    assert collector.received == []
