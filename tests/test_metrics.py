"""Metrics (SPEC §6.3) and the access log (§6.4), from known traffic."""

from __future__ import annotations

import io
import json

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import StartSidecar
from tests.harness import BACKEND_ID, BACKEND_SECRET, Collector, Sidecar
from tests.http import batch_url, event, events_url, post
from tests.jwt_keys import ENV, Keys, jwt_streams, mint

ACCESS_FIELDS = {
    "time", "request_id", "stream", "dialect", "endpoint", "status", "outcome", "reason",
    "commands_forwarded", "commands_rejected", "rejections", "stripped", "duration_ms",
    "upstream_status",
}  # fmt: skip


async def scrape(
    http: aiohttp.ClientSession, sidecar: Sidecar
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with http.get(f"{sidecar.admin_url}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], metric: str, /, **labels: str
) -> float:
    return samples.get((metric, frozenset(labels.items())), 0.0)


async def test_counters_match_known_traffic(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    url = events_url(sidecar.url)
    await post(http, url, event("page_visit"))
    await post(http, url, event("view_item"))
    await post(http, url, event("internal_debug"))  # event_type_denied
    await post(
        http, url, event("page_visit", cookie="c", phone_id="+1", email_id="a@b")
    )  # 2 stripped
    commands = [
        {"name": "customers/events", "data": event(t)} for t in ("page_visit", "nope", "view_item")
    ]
    await post(http, batch_url(sidecar.url), {"commands": commands})
    await post(http, events_url(sidecar.url, "no-such-stream"), event())
    await post(http, events_url(sidecar.url, BACKEND_ID), event("purchase"))  # secret_missing
    await post(
        http,
        events_url(sidecar.url, BACKEND_ID),
        event("purchase"),
        headers={"X-Stream-Secret": BACKEND_SECRET},
    )
    samples = await scrape(http, sidecar)

    requests = "trackgate_requests_total"
    assert value(samples, requests, stream="web", dialect="bloomreach", outcome="forwarded") == 4
    assert value(samples, requests, stream="web", dialect="bloomreach", outcome="rejected") == 1
    assert (
        value(samples, requests, stream="_unknown", dialect="bloomreach", outcome="rejected") == 1
    )
    assert value(samples, requests, stream="backend", dialect="bloomreach", outcome="rejected") == 1
    assert (
        value(samples, requests, stream="backend", dialect="bloomreach", outcome="forwarded") == 1
    )
    rejections = "trackgate_rejections_total"
    assert (
        value(samples, rejections, stream="web", reason="event_type_denied") == 2
    )  # 1 request + 1 command
    assert value(samples, rejections, stream="_unknown", reason="unknown_stream") == 1
    assert value(samples, rejections, stream="backend", reason="secret_missing") == 1
    assert value(samples, "trackgate_commands_total", stream="web", outcome="forwarded") == 5
    assert value(samples, "trackgate_commands_total", stream="web", outcome="rejected") == 2
    stripped = "trackgate_stripped_total"
    assert value(samples, stripped, stream="web", set="customer_ids", name="phone_id") == 1
    assert (
        value(samples, stripped, stream="web", set="customer_ids", name="_undefined") == 1
    )  # email_id
    assert value(samples, "trackgate_request_duration_seconds_count", stream="web") == 5
    assert value(samples, "trackgate_upstream_duration_seconds_count") == 5
    assert value(samples, "trackgate_in_flight_requests") == 0
    assert value(samples, "trackgate_config_reloads_total", result="success") == 1
    assert value(samples, "trackgate_config_info", version=sidecar.holder.current.version) == 1
    assert value(samples, "trackgate_config_last_reload_success_timestamp_seconds") > 1.7e9
    assert len(collector.received) == 5
    label_values = {v for (_, labels) in samples for _, v in labels}
    assert "+1" not in label_values and "no-such-stream" not in label_values


async def test_jwt_and_monitor_metrics(
    make_sidecar: StartSidecar,
    http: aiohttp.ClientSession,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    keys = Keys.create(tmp_path_factory.mktemp("keys"))
    sidecar = await make_sidecar(streams=jwt_streams(keys, "monitor"), env=ENV)
    signed = {"customer_ids": {"cookie": "c", "registered": "u-1"}, "event_type": "purchase"}
    for token in (None, mint(keys), mint(keys), mint(keys)[:-4] + "AAAA", mint(keys, ttl=-60)):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        assert (await post(http, events_url(sidecar.url), signed, headers=headers)).status == 200
    samples = await scrape(http, sidecar)
    jwt = "trackgate_jwt_verifications_total"
    assert value(samples, jwt, stream="web", result="valid") == 2
    assert value(samples, jwt, stream="web", result="token_bad_signature") == 1
    assert value(samples, jwt, stream="web", result="token_expired") == 1
    would = "trackgate_would_reject_total"
    assert (
        value(samples, would, stream="web", reason="signature_required") == 1
    )  # the tokenless one
    assert value(samples, would, stream="web", reason="token_bad_signature") == 1
    assert value(samples, would, stream="web", reason="token_expired") == 1


async def test_access_log_lines_hold_the_fields_and_no_secret(
    make_sidecar: StartSidecar,
    http: aiohttp.ClientSession,
    log_lines: io.StringIO,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    keys = Keys.create(tmp_path_factory.mktemp("keys"))
    sidecar = await make_sidecar()
    jwt_sidecar = await make_sidecar(streams=jwt_streams(keys), env=ENV)
    token = mint(keys, ids={"registered": "ada@example.com"})
    sent = [
        (
            events_url(sidecar.url, BACKEND_ID),
            {"X-Stream-Secret": BACKEND_SECRET},
            event("purchase", registered="ada@example.com"),
        ),
        (
            events_url(sidecar.url, BACKEND_ID),
            {"Authorization": "Basic a2V5Oldyb25nLXNlY3JldA=="},
            event(),
        ),
        (
            events_url(jwt_sidecar.url),
            {"Authorization": f"Bearer {token}"},
            event("purchase", cookie="c-77", registered="ada@example.com"),
        ),
        (
            events_url(jwt_sidecar.url),
            {"Authorization": f"Bearer {token[:-3]}abc"},
            event("purchase", registered="ada@example.com"),
        ),
        (
            events_url(sidecar.url),
            {},
            event("page_visit", cookie="c-secret-cookie", phone_id="+15550100"),
        ),
    ]
    for url, headers, body in sent:
        await post(http, url, body, headers=headers)
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    access = [line for line in lines if line["event"] == "request"]
    assert len(access) == len(sent)
    for line in access:
        assert set(line) >= ACCESS_FIELDS, line
    assert [line["status"] for line in access] == [200, 401, 200, 401, 200]
    assert access[1]["reason"] == "secret_invalid" and access[3]["reason"] == "token_bad_signature"
    assert [line["rejections"] for line in access] == [
        {},
        {"secret_invalid": 1},
        {},
        {"token_bad_signature": 1},
        {},
    ]
    assert access[4]["stripped"] == {"customer_ids": 1}
    text = log_lines.getvalue()
    for secret in (
        BACKEND_SECRET,
        "wrong-secret",
        token,
        token.split(".")[2],
        "ada@example.com",
        "c-77",
        "c-secret-cookie",
        "+15550100",
    ):
        assert secret not in text
