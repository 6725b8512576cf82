"""Forwarding (SPEC §3.3, §5.4): headers, path and query, and the collector's answer."""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import pytest
from aiohttp import web

from sidecar.forward import _connection_listed
from tests.conftest import StartSidecar
from tests.harness import WEB_ID, Collector, Sidecar
from tests.http import event, events_url, post


async def test_headers_follow_the_forwarding_rules(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    answer = await post(
        http,
        events_url(sidecar.url),
        event(),
        headers={
            "X-Custom": "kept",
            "User-Agent": "sdk/1.0",
            "Authorization": "Bearer public-stream-token-not-consumed",
            "X-Stream-Secret": "never-forwarded",
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "dropped because Connection names it",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "X-Forwarded-For": "203.0.113.7",
        },
    )
    assert answer.status == 200
    headers = {k.lower(): v for k, v in collector.received[0].headers.items()}
    assert headers["x-custom"] == "kept"
    assert headers["user-agent"] == "sdk/1.0"
    assert headers["authorization"] == "Bearer public-stream-token-not-consumed"
    for dropped in ("x-stream-secret", "x-hop", "keep-alive", "te"):
        assert dropped not in headers
    assert headers["host"] == collector.url.removeprefix("http://")
    assert headers["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == sidecar.url.removeprefix("http://")
    assert headers["x-request-id"] == answer.headers["X-Request-Id"]
    assert len(answer.headers["X-Request-Id"]) == 32


async def test_a_client_request_id_is_kept(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    answer = await post(http, events_url(sidecar.url), event(), headers={"X-Request-Id": "abc-123"})
    assert answer.headers["X-Request-Id"] == "abc-123"
    assert collector.received[0].headers["X-Request-Id"] == "abc-123"


async def test_rejections_carry_a_request_id_too(
    sidecar: Sidecar, http: aiohttp.ClientSession
) -> None:
    answer = await post(http, events_url(sidecar.url), event("internal_debug"))
    assert answer.status == 403
    assert answer.headers["X-Request-Id"]


async def test_method_path_and_query_are_forwarded_unchanged(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    suffix = f"/track/u/v1/customers/events?stream_id={WEB_ID}&debug=1&x=%2Fa%20b"
    answer = await post(http, sidecar.url + suffix, event())
    assert answer.status == 200
    assert (collector.received[0].method, collector.received[0].path_qs) == ("POST", suffix)


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 503])
async def test_collector_errors_are_relayed_as_they_are(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession, status: int
) -> None:
    collector.status = status
    collector.body = b'{"collector":"said no"}'
    answer = await post(http, events_url(sidecar.url), event())
    assert (answer.status, answer.body) == (status, b'{"collector":"said no"}')


async def test_collector_down_is_502_with_retry_after(
    make_sidecar: StartSidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sidecar = await make_sidecar(upstream=f"http://127.0.0.1:{port}")
    answer = await post(http, events_url(sidecar.url), event())
    assert (answer.status, answer.code) == (502, "upstream_unavailable")
    assert answer.headers["Retry-After"] == "1"


async def test_collector_hanging_is_504_within_the_timeout(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    collector.delay = 5  # the rules say timeout_seconds: 2
    started = time.monotonic()
    answer = await post(http, events_url(sidecar.url), event())
    elapsed = time.monotonic() - started
    assert (answer.status, answer.code) == (504, "upstream_timeout")
    assert answer.headers["Retry-After"] == "1"
    assert 1.5 < elapsed < 4.5  # generous bounds around the configured 2 s


async def test_a_collector_that_drops_the_connection_is_never_a_2xx(
    make_sidecar: StartSidecar, http: aiohttp.ClientSession
) -> None:
    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.close()

    server = await asyncio.start_server(slam, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sidecar = await make_sidecar(upstream=f"http://127.0.0.1:{port}")
    async with server:
        answer = await post(http, events_url(sidecar.url), event())
    assert (answer.status, answer.code) == (502, "upstream_unavailable")


async def test_a_chunked_collector_answer_is_relayed_whole_with_its_headers(
    make_sidecar: StartSidecar, http: aiohttp.ClientSession
) -> None:
    """A real aiohttp collector streaming its answer (chunked coding, no length):
    the client gets the whole body with a Content-Length, the collector's own
    headers, and no hop-by-hop header; the connection is reused between requests."""
    peers: set[tuple[str, int]] = set()

    async def stream(request: web.Request) -> web.StreamResponse:
        await request.read()
        peers.add(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]
        response = web.StreamResponse(headers={"X-Collector": "yes", "Content-Type": "text/x"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for piece in (b'{"success":', b"true,", b'"pad":"' + b"x" * 70_000 + b'"}'):
            await response.write(piece)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/{tail:.*}", stream)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        sidecar = await make_sidecar(upstream=f"http://{host}:{port}")
        for _ in range(3):
            answer = await post(http, events_url(sidecar.url), event())
            assert answer.status == 200
            assert answer.body == b'{"success":true,"pad":"' + b"x" * 70_000 + b'"}'
            assert answer.headers["X-Collector"] == "yes"
            assert answer.headers["Content-Length"] == str(len(answer.body))
            assert "Transfer-Encoding" not in answer.headers
        assert len(peers) == 1  # one keep-alive connection served all three
    finally:
        await runner.cleanup()


def test_every_connection_header_counts_when_naming_hop_by_hop_headers() -> None:
    """A plain `Connection: keep-alive` beside one that names a header does not
    hide the named one (RFC 9110 §7.6.1); plain values name nothing."""
    assert _connection_listed(["keep-alive", "X-Hop, X-Other"]) == {"x-hop", "x-other"}
    assert _connection_listed(["keep-alive"]) == frozenset()
    assert _connection_listed(["Close"]) == frozenset()
