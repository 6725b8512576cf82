"""The connection edge (issue 12 findings 2, 3, 5 and part of 10), end to end.

In-process sidecars (the same aiohttp server `trackgate serve` runs) for head
limits, transfer codings, `Expect`, deadlines and the connection cap; real
`trackgate serve` processes for the logs, the drain, and the probes of
bench/edge_probe.py (thousands of slow clients, a descriptor limit, RSS).
Raw sockets throughout: these are things an HTTP client library smooths over.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest

from tests.conftest import StartSidecar
from tests.harness import (
    BACKEND_ID,
    BACKEND_SECRET,
    ROOT,
    WEB_ID,
    Collector,
    Sidecar,
    serve_process,
)
from tests.test_metrics import scrape, value

EVENTS = f"/track/u/v1/customers/events?stream_id={WEB_ID}"
BODY = b'{"customer_ids":{"cookie":"c-1"},"event_type":"page_visit","properties":{}}'
CLOSED = "trackgate_connections_closed_total"


def load_probe() -> ModuleType:
    """bench/edge_probe.py, the repeatable tool these tests share their clients with."""
    spec = importlib.util.spec_from_file_location("edge_probe", ROOT / "bench" / "edge_probe.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PROBE = load_probe()


def head(*fields: str, target: str = EVENTS, body: bytes = BODY, length: bool = True) -> bytes:
    lines = [f"POST {target} HTTP/1.1", "Host: edge", "Content-Type: application/json", *fields]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Raw:
    """One client connection over a real socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Raw:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        return cls(*await asyncio.open_connection(host, int(port)))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The next answer: status, fields (lower-case names), body."""
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *lines = raw.decode("latin-1").split("\r\n")
        fields = {n.lower(): v.strip() for n, _, v in (x.partition(":") for x in lines if x)}
        length = int(fields.get("content-length", "0"))
        body = await asyncio.wait_for(self.reader.readexactly(length), 10)
        return int(status_line.split()[1]), fields, body

    async def closed(self) -> str:
        """How the sidecar ended the connection: "fin" or "reset" (bounded wait)."""
        try:
            rest = await asyncio.wait_for(self.reader.read(), 10)
        except ConnectionResetError:
            return "reset"
        return "fin" if rest == b"" else f"data: {rest[:40]!r}"

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def raws() -> AsyncIterator[list[Raw]]:
    """Connections opened by a test, closed after it."""
    opened: list[Raw] = []
    yield opened
    for raw in opened:
        raw.close()


async def closed_count(http: aiohttp.ClientSession, sidecar: Sidecar, reason: str) -> float:
    return value(await scrape(http, sidecar), CLOSED, reason=reason)


async def until(check: Any, failure: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, failure
        await asyncio.sleep(0.02)


# --- heads: size, count, codings (finding 2, 10) -------------------------------------------


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("a 100 KB bearer token", ["Authorization: Bearer " + "t" * 100_000]),
        ("90 fields of 400 bytes (36 KB)", [f"X-F{i}: {'v' * 400}" for i in range(90)]),
        ("a 31 KB field and a 2 KB one", ["X-A: " + "a" * 31_000, "X-B: " + "b" * 2_000]),
    ],
)
async def test_a_head_over_max_header_bytes_is_431_and_never_forwarded(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession, raws: list[Raw],
    name: str, fields: list[str],
) -> None:  # fmt: skip
    raws.append(raw := await Raw.open(sidecar.url))
    await raw.send(head(*fields) + BODY)
    status, _, body = await raw.answer()
    assert (status, body) == (431, b"431 Request Header Fields Too Large\n"), name
    assert await raw.closed() == "fin"
    assert collector.received == []
    assert await closed_count(http, sidecar, "head_too_large") == 1


async def test_a_head_just_within_max_header_bytes_is_served(
    sidecar: Sidecar, collector: Collector, raws: list[Raw]
) -> None:
    fields = [f"X-F{i}: {'v' * 7000}" for i in range(4)]  # the collector takes 8 KB fields
    base = head(*fields, "X-Pad: ")
    raws.append(raw := await Raw.open(sidecar.url))
    await raw.send(head(*fields, "X-Pad: " + "p" * (32_768 - len(base))) + BODY)
    assert (await raw.answer())[0] == 200
    assert len(collector.received) == 1


async def test_an_unfinished_head_past_the_limit_is_answered_431_and_closed(
    sidecar: Sidecar, http: aiohttp.ClientSession, raws: list[Raw]
) -> None:
    raws.append(raw := await Raw.open(sidecar.url))
    await raw.send(head()[:-2])  # no blank line: the head goes on
    for _ in range(9):
        await raw.send(b"X-More: " + b"m" * 4000 + b"\r\n")  # 36 KB in all, never ended
    assert (await raw.answer())[0] == 431
    assert await raw.closed() in ("fin", "reset")  # bytes may still be arriving
    assert await closed_count(http, sidecar, "head_too_large") == 1


@pytest.mark.parametrize(("count", "status"), [(100, 200), (101, 431)])
async def test_more_than_max_headers_fields_is_431(
    sidecar: Sidecar, collector: Collector, raws: list[Raw], count: int, status: int
) -> None:
    fields = [f"X-F{i}: v" for i in range(count - 4)]  # head() adds Host, Content-Type, -Length
    raws.append(raw := await Raw.open(sidecar.url))
    await raw.send(head(*fields, "X-Last: v") + BODY)
    assert (await raw.answer())[0] == status
    assert len(collector.received) == (status == 200)


@pytest.mark.parametrize(
    ("coding", "status"),
    [("gzip, chunked", 501), ("gzip", 501), ("identity", 501), ("deflate,chunked", 501),
     ("chunked, gzip", 400), ("chunked", 200)],
)  # fmt: skip
async def test_transfer_codings_other_than_chunked_are_501_and_never_forwarded(
    sidecar: Sidecar, collector: Collector, raws: list[Raw], coding: str, status: int
) -> None:
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY)
    raws.append(raw := await Raw.open(sidecar.url))
    await raw.send(head(f"Transfer-Encoding: {coding}", length=False) + chunked)
    assert (await raw.answer())[0] == status
    assert len(collector.received) == (status == 200)


async def test_broken_chunk_framing_mid_body_ends_the_request_as_malformed_at_once(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession, raws: list[Raw]
) -> None:
    raws.append(raw := await Raw.open(sidecar.url))
    await raw.send(head("Transfer-Encoding: chunked", length=False) + b"5\r\n" + BODY[:5] + b"\r\n")
    await until(lambda: _in_flight(http, sidecar, 1), "the request did not start")
    await raw.send(b"zz\r\n")  # not a chunk size
    status, _, body = await raw.answer()
    assert (status, json.loads(body)["code"]) == (400, "malformed_payload")
    assert await raw.closed() == "fin"
    assert collector.received == []


async def _in_flight(http: aiohttp.ClientSession, sidecar: Sidecar, count: int) -> bool:
    return value(await scrape(http, sidecar), "trackgate_in_flight_requests") == count


# --- Expect: 100-continue (finding 10) -------------------------------------------------------


async def test_expect_100_continue_is_answered_before_the_body_is_sent(
    sidecar: Sidecar, collector: Collector, raws: list[Raw]
) -> None:
    raws.append(raw := await Raw.open(sidecar.url))
    await raw.send(head("Expect: 100-continue"))
    interim = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), 10)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"  # the body is not sent yet
    await raw.send(BODY)
    assert (await raw.answer())[0] == 200
    assert collector.received[0].body == BODY


@pytest.mark.parametrize(
    ("name", "data", "status"),
    [
        ("a declared body over max_body_bytes", head("Expect: 100-continue", body=b"x" * 2_000_000), 413),
        ("an unknown endpoint", head("Expect: 100-continue", target="/nowhere"), 404),
        ("a method other than POST", head("Expect: 100-continue").replace(b"POST", b"PUT", 1), 405),
    ],
)  # fmt: skip
async def test_expect_100_continue_is_not_answered_when_the_request_fails_before_its_body(
    sidecar: Sidecar, collector: Collector, raws: list[Raw], name: str, data: bytes, status: int
) -> None:
    raws.append(raw := await Raw.open(sidecar.url))
    await raw.send(data)
    assert (await raw.answer())[0] == status, name  # the final answer, no interim 100 first
    assert collector.received == []


# --- deadlines and the cap (finding 3) --------------------------------------------------------

SHORT_DEADLINES = """
limits:
  header_timeout_seconds: 0.5
  body_timeout_seconds: 0.5
  keepalive_timeout_seconds: 0.5
"""


async def test_deadlines_close_slow_connections_with_a_fin_and_count_them(
    make_sidecar: StartSidecar, collector: Collector, http: aiohttp.ClientSession,
    raws: list[Raw], caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    sidecar = await make_sidecar(server=SHORT_DEADLINES)
    silent, slowloris, slow_body, idle = [await Raw.open(sidecar.url) for _ in range(4)]
    raws.extend((silent, slowloris, slow_body, idle))
    await slowloris.send(head()[:-4])
    await slow_body.send(head() + BODY[:10])
    await idle.send(head() + BODY)
    assert (await idle.answer())[0] == 200
    for raw in raws:
        assert await raw.closed() == "fin"
    samples = await scrape(http, sidecar)
    assert value(samples, CLOSED, reason="header_timeout") == 2  # silent, slowloris
    assert value(samples, CLOSED, reason="body_timeout") == 1
    assert value(samples, CLOSED, reason="idle") == 1
    assert value(samples, "trackgate_open_connections") == 0
    assert len(collector.received) == 1  # the slow body was never forwarded...
    assert "internal_error" not in caplog.text  # ...nor counted as trackgate's failure


async def test_a_slow_collector_is_not_a_slow_client(
    make_sidecar: StartSidecar, collector: Collector, raws: list[Raw]
) -> None:
    sidecar = await make_sidecar(server=SHORT_DEADLINES)
    collector.delay = 1.0  # twice every client deadline
    raws.append(raw := await Raw.open(sidecar.url))
    await raw.send(head() + BODY)
    assert (await raw.answer())[0] == 200


async def test_at_the_cap_the_longest_waiting_connection_is_evicted(
    make_sidecar: StartSidecar, http: aiohttp.ClientSession, raws: list[Raw],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    sidecar = await make_sidecar(server="limits:\n  max_connections: 3\n")
    for _ in range(3):
        raws.append(raw := await Raw.open(sidecar.url))
        await raw.send(head()[:-4])  # an unfinished head
    await until(lambda: _open(http, sidecar, 3), "three connections did not open")
    raws.append(client := await Raw.open(sidecar.url))
    await client.send(head() + BODY)
    assert (await client.answer())[0] == 200  # served: the oldest slowloris made room
    assert await raws[0].closed() == "fin"
    assert await closed_count(http, sidecar, "too_many_connections") == 1
    [line] = [r for r in caplog.records if r.getMessage() == "connection_limit_reached"]
    assert line.fields == {"open": 4, "max_connections": 3, "evicted": 1, "refused": 0}  # type: ignore[attr-defined]


async def test_at_the_cap_with_every_connection_busy_a_new_one_is_refused(
    make_sidecar: StartSidecar, http: aiohttp.ClientSession, raws: list[Raw]
) -> None:
    sidecar = await make_sidecar(server="limits:\n  max_connections: 2\n")
    for _ in range(2):
        raws.append(raw := await Raw.open(sidecar.url))
        await raw.send(head() + BODY[:10])  # a request in progress: its body is awaited
    await until(lambda: _open(http, sidecar, 2), "two connections did not open")
    raws.append(refused := await Raw.open(sidecar.url))
    assert await refused.closed() == "fin"
    assert await closed_count(http, sidecar, "too_many_connections") == 1
    await raws[0].send(BODY[10:])
    assert (await raws[0].answer())[0] == 200  # the busy ones were left alone


async def _open(http: aiohttp.ClientSession, sidecar: Sidecar, count: int) -> bool:
    return value(await scrape(http, sidecar), "trackgate_open_connections") == count


# --- real processes: logs (finding 5) and the drain (finding 10) ------------------------------

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJpZHMiOnsicmVnaXN0ZXJlZCI6InUtc2VjcmV0In19.c2lnbmF0dXJlLXNlY3JldA"
CUSTOMER = "customer-id-value-4711"
BACKEND = f"/track/u/v1/customers/events?stream_id={BACKEND_ID}"
SECRETS = (f"X-Stream-Secret: {BACKEND_SECRET}", f"Authorization: Bearer {TOKEN}")
MALFORMED = [
    f"POST {BACKEND}&secret={BACKEND_SECRET} HTTP/1.1 trailing\r\nHost: e\r\n\r\n".encode(),
    f"POST {BACKEND} HTTP/1.1\r\nHost: e\r\nX-Stream-Secret: {BACKEND_SECRET}\x01\r\n\r\n".encode(),
    f"POST {BACKEND} HTTP/1.1\r\nHost: e\r\nAuthorization: Bearer {TOKEN}\x00\r\n\r\n".encode(),
    f"POST {BACKEND} HTTP/1.1\r\nHost: e\r\n{SECRETS[0]}\r\nTransfer-Encoding: chunked\r\n\r\n"
    f'zz\r\n{{"customer_ids":{{"registered":"{CUSTOMER}"}}}}\r\n0\r\n\r\n'.encode(),
    f"POST {BACKEND} HTTP/1.1\r\nHost: e\r\n{SECRETS[1]}\r\nX-Pad: {'p' * 40_000}\r\n\r\n".encode(),
    f"POST {BACKEND} HTTP/1.1\r\nHost: e\r\n{SECRETS[0]}\r\nContent-Length: 5\r\n"
    f"Transfer-Encoding: chunked\r\n\r\n{CUSTOMER}".encode(),
    f"POST {BACKEND} HTTP/1.1\r\nHost: e\r\n{SECRETS[1]}\r\nContent-Length: x{CUSTOMER}\r\n\r\n".encode(),
    f"P\x00ST {BACKEND} HTTP/1.1\r\n{SECRETS[0]}\r\n\r\n".encode(),
    f"POST {BACKEND} HTTP/1.1\r\nHost: e\r\n{SECRETS[0]} {CUSTOMER}\r\nBad Name: {TOKEN}\r\n\r\n".encode(),
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + CUSTOMER.encode(),
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + TOKEN.encode(),
]


async def test_malformed_requests_leave_only_json_lines_without_secrets(
    tmp_path: Path, collector: Collector
) -> None:
    served = await serve_process(
        tmp_path, collector.url, "shutdown_delay_seconds: 0\n", capture=True
    )
    for data in MALFORMED:
        raw = await Raw.open(served.base)
        await raw.send(data)
        await raw.closed()  # every one is answered 4xx/5xx and closed
        raw.close()
    raw = await Raw.open(served.base)  # and a body cut off by the client
    await raw.send(
        head(SECRETS[0], target=BACKEND) + f'{{"customer_ids":{{"x":"{CUSTOMER}'.encode()
    )
    raw.close()
    served.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(served.process.wait(), 20) == 0
    assert served.process.stdout is not None
    output = (await served.process.stdout.read()).decode("utf-8", "replace")
    lines = [json.loads(line) for line in output.splitlines()]  # every line is JSON
    for secret in (BACKEND_SECRET, TOKEN, CUSTOMER, "Traceback"):
        assert secret not in output
    assert sum(line["event"] == "bad_request" for line in lines) >= len(MALFORMED) - 2
    assert collector.received == []


async def test_during_the_drain_answers_close_and_idle_connections_get_a_fin(
    tmp_path: Path, collector: Collector
) -> None:
    served = await serve_process(tmp_path, collector.url, "shutdown_delay_seconds: 3\n")
    idle = [await Raw.open(served.base) for _ in range(3)]
    for raw in idle:
        await raw.send(head() + BODY)
        status, fields, _ = await raw.answer()
        assert (status, fields.get("connection")) == (200, None)  # kept alive
    served.process.send_signal(signal.SIGTERM)
    for raw in idle:
        assert await raw.closed() == "fin"  # closed at the drain's start, not reset
        raw.close()
    late = await Raw.open(served.base)  # a new connection, still within the delay
    await late.send(head() + BODY)
    status, fields, _ = await late.answer()
    assert (status, fields["connection"]) == (200, "close")
    assert await late.closed() == "fin"
    late.close()
    assert await asyncio.wait_for(served.process.wait(), 20) == 0


# --- the probes (bench/edge_probe.py): thousands of slow clients, ulimit -n, RSS ---------------


@pytest.fixture
async def upstream(collector: Collector) -> str:
    PROBE.raise_descriptor_limit()  # this process holds thousands of client sockets
    return collector.url


async def test_slow_clients_leave_real_requests_and_the_admin_port_served(upstream: str) -> None:
    deadlines = {
        "header_timeout_seconds": 6,
        "body_timeout_seconds": 6,
        "keepalive_timeout_seconds": 6,
    }
    sidecar = await PROBE.start_sidecar(upstream, deadlines)
    try:
        found = await PROBE.slow_clients(sidecar, slowloris=2000, slow_bodies=500, idle=2000)
    finally:
        await PROBE.stop(sidecar)
    assert found["open_before"] >= 4500  # all at once while the real client ran
    assert (found["ok"], found["requests"], found["healthz"]) == (50, 50, 200)
    closed = found["metrics"]
    assert closed["header_timeout"] >= 2000
    assert closed["body_timeout"] >= 500
    assert closed["idle"] >= 2000
    assert closed["open"] == 0


async def test_at_ulimit_1024_slowloris_connections_leave_real_requests_served(
    upstream: str,
) -> None:
    sidecar = await PROBE.start_sidecar(upstream, {"header_timeout_seconds": 2}, nofile=1024)
    try:
        found = await PROBE.descriptor_limit(sidecar, slowloris=1100)
    finally:
        await PROBE.stop(sidecar)
    assert (found["ok"], found["requests"], found["healthz"]) == (50, 50, 200)
    closed = found["metrics"]
    assert closed["too_many_connections"] > 0  # the cap (1024 - reserves) was reached
    assert closed["too_many_connections"] + closed["header_timeout"] >= 1100


async def test_40_maximal_unfinished_heads_cost_under_10_mb(upstream: str) -> None:
    sidecar = await PROBE.start_sidecar(upstream, {})
    try:
        found = await PROBE.header_flood(sidecar, connections=40)
    finally:
        await PROBE.stop(sidecar)
    assert found["open_while_held"] >= 40
    assert found["rss_growth_held"] < 10 * 2**20
    assert found["rss_growth_after_flood"] < 10 * 2**20
    assert found["closed_by_sidecar"] == 40
    assert found["metrics"]["head_too_large"] == 40


def test_the_probe_prints_its_counts() -> None:
    assert re.search(r"python bench/edge_probe.py (slow|nofile|headers)", PROBE.__doc__ or "")
