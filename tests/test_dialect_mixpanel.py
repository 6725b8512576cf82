"""The built-in `mixpanel` dialect (SPEC §3.5) through the running sidecar, with forms
as mixpanel-python (`data=` JSON) and mixpanel-browser (`data=` base64 JSON) send
them: judged, rewritten in the same form, answered with Mixpanel's verbose JSON."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, quote_plus

import aiohttp
import pytest

from tests.conftest import StartSidecar
from tests.harness import Collector, Sidecar
from tests.http import post

TOKEN = "mp-token-0001"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
STREAMS = f"""
- name: mp
  id: {TOKEN}
  type: public
  dialect: mixpanel
  customer_ids: {{default: deny, allow: [distinct_id, device_id], deny: [user_id]}}
  event_types: {{default: deny, allow: [view, signup], deny: [debug]}}
  customer_properties: {{default: deny, allow: [plan], deny: [email, password]}}
  event_properties: {{default: allow, deny: [card_number]}}
"""


@pytest.fixture
async def mixpanel(make_sidecar: StartSidecar, collector: Collector) -> Sidecar:
    collector.body = b'{"status": 1, "error": null}'
    return await make_sidecar(streams=STREAMS)


def form(data: Any, *, base64_json: bool = False) -> bytes:
    text = json.dumps(data, separators=(",", ":"))
    if base64_json:
        text = base64.b64encode(text.encode()).decode()
    return f"data={quote_plus(text)}&verbose=1&ip=0".encode()


def sent_data(body: bytes, *, base64_json: bool = False) -> Any:
    fields = parse_qs(body.decode(), keep_blank_values=True)
    assert fields["verbose"] == ["1"] and fields["ip"] == ["0"]
    (value,) = fields["data"]
    return json.loads(base64.b64decode(value) if base64_json else value)


def track(name: str, **properties: Any) -> dict[str, Any]:
    return {"event": name, "properties": {"token": TOKEN, "distinct_id": "u-1", **properties}}


@pytest.mark.parametrize("base64_json", [False, True], ids=["json", "base64"])
async def test_track_is_judged_and_written_back_in_its_form(
    mixpanel: Sidecar, collector: Collector, http: aiohttp.ClientSession, base64_json: bool
) -> None:
    events = [track("view", card_number="4111", page="/", **{"$user_id": "u-9"}), track("debug")]
    answer = await post(
        http, f"{mixpanel.url}/track", raw=form(events, base64_json=base64_json), headers=FORM
    )
    assert (answer.status, answer.json) == (200, {"status": 1, "error": None})
    assert answer.headers["X-Trackgate-Rejected"] == "1"
    (received,) = collector.received
    assert sent_data(received.body, base64_json=base64_json) == [
        {"event": "view", "properties": {"token": TOKEN, "distinct_id": "u-1", "page": "/"}}
    ]


async def test_engage_operators_lose_denied_names_unset_lists_too(
    mixpanel: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    update = {
        "$token": TOKEN,
        "$distinct_id": "u-1",
        "$time": 1,
        "$set": {"plan": "gold", "email": "e@x"},
        "$set_once": {"password": "x"},
        "$unset": ["email", "plan"],
    }
    answer = await post(http, f"{mixpanel.url}/engage", raw=form(update), headers=FORM)
    assert answer.status == 200
    assert sent_data(collector.received[0].body) == {
        **update,
        "$set": {"plan": "gold"},
        "$set_once": {},
        "$unset": ["plan"],
    }


async def test_every_event_rejected_is_status_1_and_nothing_sent(
    mixpanel: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    answer = await post(http, f"{mixpanel.url}/track/", raw=form(track("debug")), headers=FORM)
    assert (answer.status, answer.json) == (200, {"status": 1, "error": None})
    assert collector.received == []


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (
            form(track("view") | {"properties": {"token": "other", "distinct_id": "u"}}),
            FORM,
            403,
            "unknown_stream",
        ),
        (
            form([track("view"), {"event": "view", "properties": {"token": "other"}}]),
            FORM,
            400,
            "stream_id_conflict",
        ),
        # the token is inside the body: a body that does not decode names no stream
        (b"data=%7Bnot-json&verbose=1", FORM, 403, "unknown_stream"),
        (form(track("view")) + b"&Data=x", FORM, 403, "unknown_stream"),
        (form(track("view", Token="x")), FORM, 400, "malformed_payload"),
        (form(track("view")), {"Content-Type": "application/json"}, 400, "malformed_payload"),
    ],
)
async def test_a_rejected_request_is_status_0_and_nothing_sent(
    mixpanel: Sidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    body: bytes,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    answer = await post(http, f"{mixpanel.url}/track", raw=body, headers=headers)
    assert answer.status == status
    assert answer.json["status"] == 0 and answer.json["error"].startswith(f"{code}: ")
    assert collector.received == []


@pytest.mark.parametrize("query", ["data=x", "Data=x", "data%5B%5D=x", "verbose=1&DATA="])
async def test_a_query_parameter_named_like_the_form_field_is_refused(
    mixpanel: Sidecar, collector: Collector, http: aiohttp.ClientSession, query: str
) -> None:
    answer = await post(
        http, f"{mixpanel.url}/track?{query}", raw=form(track("view")), headers=FORM
    )
    assert answer.status == 400
    assert answer.json["error"].startswith("malformed_payload: ")
    assert collector.received == []


async def test_import_takes_the_same_form(
    mixpanel: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    answer = await post(http, f"{mixpanel.url}/import", raw=form([track("signup")]), headers={
        **FORM, "Authorization": "Basic YXBpLXNlY3JldDo="})  # fmt: skip
    assert answer.status == 200
    (received,) = collector.received
    assert received.headers["Authorization"] == "Basic YXBpLXNlY3JldDo="  # the collector's own
    assert received.body == form([track("signup")])


PRIVATE = f"""
- name: mp-import
  id: {TOKEN}
  type: private
  dialect: mixpanel
  secrets: [{{id: api-secret, value: {{env: MP_SECRET}}}}]
  customer_ids: {{default: deny, allow: [distinct_id]}}
  event_types: {{default: deny, allow: [signup]}}
"""


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Authorization": "Basic " + base64.b64encode(b"the-api-secret:").decode()}, 200),
        ({"X-Stream-Secret": "the-api-secret"}, 200),
        ({"Authorization": "Basic " + base64.b64encode(b"other-secret:").decode()}, 401),
        ({"Authorization": "Basic " + base64.b64encode(b":the-api-secret").decode()}, 401),
        ({}, 401),
    ],
)
async def test_a_private_import_takes_its_secret_as_the_basic_user(
    make_sidecar: StartSidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    headers: dict[str, str],
    status: int,
) -> None:
    collector.body = b'{"status": 1, "error": null}'
    sidecar = await make_sidecar(streams=PRIVATE, env={"MP_SECRET": "the-api-secret"})
    answer = await post(http, f"{sidecar.url}/import", raw=form([track("signup")]), headers={**FORM, **headers})  # fmt: skip
    assert answer.status == status
    if status == 200:
        (received,) = collector.received
        assert "Authorization" not in received.headers and "X-Stream-Secret" not in received.headers
    else:
        assert answer.json["status"] == 0 and collector.received == []
