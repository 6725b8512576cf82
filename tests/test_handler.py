"""Request-level checks of SPEC §5.1, in order, through the running sidecar."""

from __future__ import annotations

import base64
import gzip
import json
import tracemalloc
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import StartSidecar
from tests.harness import (
    BACKEND_ID,
    BACKEND_SECRET,
    OLD_BACKEND_SECRET,
    WEB_ID,
    Collector,
    Sidecar,
    start_collector,
)
from tests.http import batch_url, customers_url, event, events_url, post


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "path",
    ["/", "/track/u/v1/nope", "/track/u/v1/customers/events/extra", "/track/v2/projects//batch"],
)
async def test_unknown_endpoint_is_404(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession, path: str
) -> None:
    answer = await post(http, f"{sidecar.url}{path}?stream_id={WEB_ID}", event())
    assert (answer.status, answer.code) == (404, "unknown_endpoint")
    assert answer.json["success"] is False and answer.json["errors"]
    assert collector.received == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_only_post_is_allowed(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession, method: str
) -> None:
    answer = await post(http, events_url(sidecar.url), event(), method=method)
    assert (answer.status, answer.code) == (405, "method_not_allowed")
    assert answer.headers["Allow"] == "POST"
    assert collector.received == []


@pytest.mark.parametrize(
    ("case", "raw", "headers"),
    [
        ("plain body over the limit", b'{"x":"' + b"a" * 70_000 + b'"}', {}),
        (
            "gzip bomb",
            gzip.compress(b'{"x":"' + b"0" * 20_000_000 + b'"}'),
            {"Content-Encoding": "gzip"},
        ),
    ],
)
async def test_bodies_over_max_body_bytes_are_413(
    make_sidecar: StartSidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    case: str,
    raw: bytes,
    headers: dict[str, str],
) -> None:
    sidecar = await make_sidecar(server="max_body_bytes: 65536\n")
    if case == "gzip bomb":
        assert len(raw) < 65536  # small on the wire, 20 MB once expanded
    answer = await post(http, events_url(sidecar.url), raw=raw, headers=headers)
    assert (answer.status, answer.code) == (413, "payload_too_large")
    assert collector.received == []


async def test_gzip_body_is_forwarded_plain_with_its_length(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    plain = json.dumps(event()).encode()
    answer = await post(
        http,
        events_url(sidecar.url),
        raw=gzip.compress(plain),
        headers={"Content-Encoding": "gzip"},
    )
    assert answer.status == 200
    [received] = collector.received
    assert received.body == plain
    assert received.headers["Content-Length"] == str(len(plain))
    assert "Content-Encoding" not in received.headers


@pytest.mark.parametrize(
    ("url_suffix", "headers", "status", "code"),
    [
        ("/track/u/v1/customers/events", {}, 403, "unknown_stream"),
        ("/track/u/v1/customers/events?stream_id=not-configured", {}, 403, "unknown_stream"),
        ("/track/v2/projects/not-configured/customers/events", {}, 403, "unknown_stream"),
        (
            f"/track/u/v1/customers/events?stream_id={WEB_ID}",
            {"X-Stream-Id": BACKEND_ID},
            400,
            "stream_id_conflict",
        ),
        (
            f"/track/v2/projects/{WEB_ID}/customers/events?stream_id={BACKEND_ID}",
            {},
            400,
            "stream_id_conflict",
        ),
        (
            f"/track/v2/projects/{WEB_ID}/customers/events",
            {"X-Stream-Id": BACKEND_ID},
            400,
            "stream_id_conflict",
        ),
    ],
)
async def test_stream_must_be_named_once_and_configured(
    sidecar: Sidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    url_suffix: str,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    answer = await post(http, sidecar.url + url_suffix, event(), headers=headers)
    assert (answer.status, answer.code) == (status, code)
    assert collector.received == []


@pytest.mark.parametrize(
    ("url_suffix", "headers"),
    [
        (f"/track/u/v1/customers/events?stream_id={WEB_ID}", {}),
        ("/track/u/v1/customers/events", {"X-Stream-Id": WEB_ID}),
        (f"/track/v2/projects/{WEB_ID}/customers/events", {}),
        (
            f"/track/v2/projects/{WEB_ID}/customers/events?stream_id={WEB_ID}",
            {"X-Stream-Id": WEB_ID},
        ),
    ],
)
async def test_stream_id_is_found_in_query_header_or_path(
    sidecar: Sidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    url_suffix: str,
    headers: dict[str, str],
) -> None:
    answer = await post(http, sidecar.url + url_suffix, event(), headers=headers)
    assert answer.status == 200
    [received] = collector.received
    assert received.path_qs == url_suffix


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "secret_missing"),
        ({"X-Stream-Secret": "wrong"}, 401, "secret_invalid"),
        ({"Authorization": basic("key", "wrong")}, 401, "secret_invalid"),
        ({"Authorization": "Basic !!notbase64!!"}, 401, "secret_invalid"),
        (
            {"Authorization": basic("key", BACKEND_SECRET), "X-Stream-Secret": "wrong"},
            401,
            "secret_invalid",
        ),
        ({"Authorization": "Bearer " + BACKEND_SECRET}, 401, "secret_missing"),
        ({"X-Stream-Secret": BACKEND_SECRET}, 200, None),
        ({"Authorization": basic("key-id", BACKEND_SECRET)}, 200, None),
        ({"X-Stream-Secret": OLD_BACKEND_SECRET}, 200, None),
        ({"Authorization": basic("", OLD_BACKEND_SECRET)}, 200, None),
    ],
)
async def test_private_streams_need_an_active_secret(
    sidecar: Sidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    headers: dict[str, str],
    status: int,
    code: str | None,
) -> None:
    answer = await post(
        http, events_url(sidecar.url, BACKEND_ID), event("purchase"), headers=headers
    )
    assert answer.status == status
    if code:
        assert answer.code == code
        assert collector.received == []
        assert BACKEND_SECRET not in answer.body.decode()
    else:
        [received] = collector.received
        forwarded = {name.lower() for name in received.headers}
        assert "authorization" not in forwarded and "x-stream-secret" not in forwarded
        assert BACKEND_SECRET.encode() not in received.body


@pytest.mark.parametrize(
    ("raw", "headers"),
    [
        (b"{not json", {}),
        (b"[]", {}),
        (b'"a string"', {}),
        (b'{"customer_ids":{"cookie":"c"}}', {}),
        (b'{"customer_ids":{"cookie":"c"},"event_type":""}', {}),
        (b'{"customer_ids":["cookie"],"event_type":"page_visit"}', {}),
        (b'{"customer_ids":{"cookie":7},"event_type":"page_visit"}', {}),
        (b'{"customer_ids":{"cookie":"c"},"event_type":"page_visit","properties":[1]}', {}),
        (b'{"customer_ids":{"cookie":"c"},"event_type":"page_visit","timestamp":"now"}', {}),
        (b'{"customer_ids":{"cookie":"c"},"event_type":"page_visit","timestamp":NaN}', {}),
        (b'{"customer_ids":{"cookie":"c"},"event_type":"page_visit","timestamp":1e999}', {}),
        (b'{"customer_ids":{"cookie":"c","cookie":"d"},"event_type":"page_visit"}', {}),
        (
            b'{"customer_ids":{"cookie":"c"},"event_type":"page_visit"}',
            {"Content-Type": "application/x-www-form-urlencoded"},
        ),
        (b"not gzip at all", {"Content-Encoding": "gzip"}),
        (gzip.compress(b'{"a":1}')[:-6], {"Content-Encoding": "gzip"}),
        (b'{"customer_ids":{"cookie":"c"},"event_type":"page_visit"}', {"Content-Encoding": "br"}),
        (b"\xff\xfe{}", {}),
    ],
)
async def test_malformed_bodies_are_400(
    sidecar: Sidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    raw: bytes,
    headers: dict[str, str],
) -> None:
    answer = await post(http, events_url(sidecar.url), raw=raw, headers=headers)
    assert (answer.status, answer.code) == (400, "malformed_payload")
    assert collector.received == []


async def test_text_plain_bodies_are_json(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    answer = await post(
        http, events_url(sidecar.url), event(), headers={"Content-Type": "text/plain;charset=UTF-8"}
    )
    assert answer.status == 200
    assert collector.received[0].json == event()


@pytest.mark.parametrize(
    ("url", "headers", "code"),
    [
        # the stream is checked before the body
        ("/track/u/v1/customers/events?stream_id=nope", {}, "unknown_stream"),
        # the secret is checked before the body
        (f"/track/u/v1/customers/events?stream_id={BACKEND_ID}", {}, "secret_missing"),
    ],
)
async def test_checks_run_in_spec_order(
    sidecar: Sidecar, http: aiohttp.ClientSession, url: str, headers: dict[str, str], code: str
) -> None:
    answer = await post(http, sidecar.url + url, raw=b"{broken", headers=headers)
    assert answer.code == code


async def test_no_rules_loaded_is_503_not_ready(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    sidecar.holder.current = None
    answer = await post(http, events_url(sidecar.url), event())
    assert (answer.status, answer.code) == (503, "not_ready")
    assert answer.headers["Retry-After"] == "1"
    assert collector.received == []


async def test_an_unexpected_exception_is_500_and_nothing_is_forwarded(
    sidecar: Sidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Fault injection: the policy stage blows up. The handler must fail closed.
    def explode(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("sidecar.handler.decide", explode)
    answer = await post(http, events_url(sidecar.url), event())
    assert (answer.status, answer.code) == (500, "internal_error")
    assert "boom" not in answer.body.decode()
    assert collector.received == []


async def test_customer_updates_are_checked_like_events(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    body = {"customer_ids": {"cookie": "c-1"}, "properties": {"first_name": "Ada"}}
    answer = await post(http, customers_url(sidecar.url), body)
    assert answer.status == 200
    assert collector.received[0].json == body


@dataclass
class MeasuringCollector(Collector):
    """Records how much memory the process (sidecar included) holds while it answers."""

    held: list[int] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.held.append(tracemalloc.get_traced_memory()[0])
        return await super().handle(request)


async def test_a_batch_waiting_on_the_collector_holds_only_bytes(
    make_sidecar: StartSidecar, http: aiohttp.ClientSession
) -> None:
    """While the collector answers, a batch costs its bytes, not its parsed document:
    under load dozens of requests wait there at once (README "Performance")."""
    commands = [
        {"name": "customers/events", "data": event(cookie="c-1", phone_id="p")} for _ in range(49)
    ]
    for number, command in enumerate(commands):  # many names and values, each its own
        command["data"]["properties"] = {f"p{i}": f"{number}-{i}" for i in range(900)}
    commands.append({"name": "customers/events", "data": event(event_type="internal_debug")})
    body = json.dumps({"commands": commands}).encode()
    recorder = MeasuringCollector()
    runner = await start_collector(recorder)
    try:
        sidecar = await make_sidecar(upstream=recorder.url)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            answer = await post(http, batch_url(sidecar.url), raw=body)
        finally:
            tracemalloc.stop()
    finally:
        await runner.cleanup()
    assert answer.status == 200, answer.json
    assert len(answer.json["results"]) == 50
    assert "phone_id" not in recorder.received[0].body.decode()  # rewritten, so parsed
    # The bytes: what the client sent, the sidecar read and forwards, the collector read.
    # With the parsed commands kept too it is about ten times the body (3.6 without).
    assert recorder.held[0] - before < 5 * len(body)
