"""The built-in `amplitude` dialect (SPEC §3.5) through the running sidecar, with
requests as amplitude-analytics sends them; every answer carries `code` (the SDK
reads it instead of the status), request-level 400s name `missing_field` (else the
SDK re-sends every event), an unknown key is Amplitude's "Invalid API key"."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.conftest import StartSidecar
from tests.harness import Collector, Sidecar
from tests.http import post

KEY = "amp-key-0001"
STREAMS = f"""
- name: amp
  id: {KEY}
  type: public
  dialect: amplitude
  template: public
  customer_ids: {{allow: [user_id]}}
  event_types: {{allow: [view, signup], deny: [debug]}}
  customer_properties: {{allow: [plan], deny: [email]}}
  event_properties: {{default: allow, deny: [card_number]}}
"""


@pytest.fixture
async def amplitude(make_sidecar: StartSidecar) -> Sidecar:
    return await make_sidecar(streams=STREAMS)


def body(*events: dict[str, Any], key: str = KEY) -> dict[str, Any]:
    """What amplitude-analytics posts (keys sorted, as it writes them)."""
    return {"api_key": key, "events": list(events), "options": {"min_id_length": 1}}


def event(event_type: str, **extra: Any) -> dict[str, Any]:
    return {"device_id": "d-1", "event_type": event_type, "insert_id": "i", "time": 1, **extra}


async def test_events_and_identify_operations_are_judged_and_rewritten(
    amplitude: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    sent = body(
        event("view", event_properties={"page": "/", "card_number": "4111"}, user_id="u-1"),
        event("debug"),
        event("$identify", user_properties={
            "$set": {"plan": "gold", "email": "e@x"}, "$setOnce": {"email": "e@x"},
            "$unset": {"email": "-"}, "$clearAll": "-", "plan": "x", "email": "y"}),
        event("signup", user_properties={"email": "e@x", "plan": "p"}),
    )  # fmt: skip
    answer = await post(http, f"{amplitude.url}/2/httpapi", sent)
    assert answer.status == 200 and answer.headers["X-Trackgate-Rejected"] == "1"
    events = collector.received[0].json["events"]
    assert [e["event_type"] for e in events] == ["view", "$identify", "signup"]
    assert events[0]["event_properties"] == {"page": "/"} and events[0]["user_id"] == "u-1"
    assert events[1]["user_properties"] == {
        "$set": {"plan": "gold"},
        "$setOnce": {},
        "$unset": {},
        "$clearAll": "-",
        "plan": "x",
    }
    assert events[2]["user_properties"] == {"plan": "p"}


async def test_every_event_rejected_is_a_2xx_with_code(
    amplitude: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    answer = await post(http, f"{amplitude.url}/batch", body(event("debug")))
    assert answer.status == 200
    assert answer.json["code"] == 200 and answer.json["events_ingested"] == 0
    assert collector.received == []


async def test_an_unknown_key_is_amplitudes_invalid_api_key(
    amplitude: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    answer = await post(http, f"{amplitude.url}/2/httpapi", body(event("view"), key="nope"))
    assert answer.status == 400
    assert answer.json["code"] == 400 and answer.json["error"].startswith("Invalid API key: ")
    assert collector.received == []


@pytest.mark.parametrize(
    ("sent", "status", "code"),
    [
        ({"api_key": KEY, "events": {"a": 1}}, 400, "malformed_payload"),
        ({"api_key": KEY, "events": [], "EVENTS": []}, 400, "malformed_payload"),
        ({"api_key": KEY, "API_KEY": "x", "events": []}, 400, "malformed_payload"),
    ],
)
async def test_a_rejected_request_names_missing_field_so_the_sdk_drops_it(
    amplitude: Sidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    sent: dict[str, Any],
    status: int,
    code: str,
) -> None:
    answer = await post(http, f"{amplitude.url}/2/httpapi", sent)
    assert answer.status == status
    assert answer.json["code"] == status and answer.json["missing_field"] == code
    assert collector.received == []


async def test_an_upstream_failure_keeps_a_5xx_code_so_the_sdk_retries(
    make_sidecar: StartSidecar, http: aiohttp.ClientSession
) -> None:
    sidecar = await make_sidecar(streams=STREAMS, upstream="http://127.0.0.1:1")
    answer = await post(http, f"{sidecar.url}/2/httpapi", body(event("view")))
    assert answer.status == 502 and answer.json["code"] == 502
