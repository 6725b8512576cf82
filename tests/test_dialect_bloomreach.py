"""The bloomreach dialect's batches (SPEC §3.1) through the running sidecar."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.harness import Collector, Sidecar
from tests.http import batch_url, event, post


def command(event_type: str = "page_visit", **ids: str) -> dict[str, Any]:
    return {"name": "customers/events", "data": event(event_type, **ids)}


async def test_a_batch_with_denied_commands_forwards_the_rest_and_keeps_result_order(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    commands = [
        command("page_visit"),
        command("internal_debug"),  # denied event type
        {
            "name": "customers",
            "data": {"customer_ids": {"cookie": "c"}, "properties": {"first_name": "A"}},
        },
        command("page_visit", phone_id="+1"),  # no customer id left
        {"name": "system/time", "data": {}},
    ]
    answer = await post(http, batch_url(sidecar.url), {"commands": commands})
    assert answer.status == 200
    [received] = collector.received
    assert received.json == {"commands": [commands[0], commands[2], commands[4]]}
    results = answer.json["results"]
    assert answer.json["success"] is True
    assert results[0] == {"success": True, "n": 0}
    assert results[1]["code"] == "event_type_denied" and results[1]["success"] is False
    assert results[1]["errors"] == ["event type 'internal_debug' is not allowed on stream 'web'"]
    assert results[2] == {"success": True, "n": 1}
    assert results[3]["code"] == "no_customer_ids"
    assert results[4] == {"success": True, "n": 2}


async def test_a_batch_strips_inside_forwarded_commands(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    commands = [command("page_visit", cookie="c", phone_id="+1"), command("view_item")]
    answer = await post(http, batch_url(sidecar.url), {"commands": commands, "extra": 1})
    assert answer.status == 200
    received = collector.received[0].json
    assert received["extra"] == 1
    assert received["commands"][0]["data"]["customer_ids"] == {"cookie": "c"}
    assert received["commands"][1] == commands[1]
    assert answer.json == {
        "success": True,
        "results": [{"success": True, "n": 0}, {"success": True, "n": 1}],
    }


async def test_a_fully_rejected_batch_is_answered_without_forwarding(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    commands = [command("internal_debug"), command("page_visit", phone_id="+1")]
    answer = await post(http, batch_url(sidecar.url), {"commands": commands})
    assert answer.status == 200
    assert collector.received == []
    assert answer.json["success"] is True
    assert [r["code"] for r in answer.json["results"]] == ["event_type_denied", "no_customer_ids"]


async def test_a_malformed_command_is_rejected_alone(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    commands = [
        command(),
        {"name": "crm/unknown", "data": {}},
        {"name": "customers/events", "data": []},
    ]
    answer = await post(http, batch_url(sidecar.url), {"commands": commands})
    assert answer.status == 200
    assert collector.received[0].json == {"commands": [commands[0]]}
    assert [r.get("code") for r in answer.json["results"]] == [
        None,
        "malformed_payload",
        "malformed_payload",
    ]


@pytest.mark.parametrize(
    "body",
    [{"commands": [command()] * 51}, {"commands": {}}, {"cmds": []}, [command()]],
)
async def test_malformed_batches_are_400(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession, body: object
) -> None:
    answer = await post(http, batch_url(sidecar.url), body)
    assert (answer.status, answer.code) == (400, "malformed_payload")
    assert collector.received == []


async def test_a_batch_of_fifty_is_accepted(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    answer = await post(http, batch_url(sidecar.url), {"commands": [command()] * 50})
    assert answer.status == 200
    assert len(collector.received[0].json["commands"]) == 50


async def test_collector_failure_on_a_partial_batch_is_relayed(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    collector.status = 500
    collector.body = b'{"success":false}'
    answer = await post(
        http, batch_url(sidecar.url), {"commands": [command(), command("internal_debug")]}
    )
    assert (answer.status, answer.body) == (500, b'{"success":false}')


async def test_unalignable_collector_results_are_relayed_with_a_rejected_count(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    collector.body = b'{"success":true}'  # no results list to re-assemble
    answer = await post(
        http, batch_url(sidecar.url), {"commands": [command(), command("internal_debug")]}
    )
    assert (answer.status, answer.body) == (200, b'{"success":true}')
    assert answer.headers["X-Trackgate-Rejected"] == "1"
