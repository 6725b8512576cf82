"""No `Server` banner on trackgate's own answers; relayed answers keep the
collector's headers as they are (SPEC §8)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.conftest import StartSidecar
from tests.harness import WEB_ID, Collector, Sidecar
from tests.http import event, events_url, post
from tests.test_forward import raw_collector

SHOP = "https://shop.example.test"
CORS_STREAM = f"""
- name: web
  id: {WEB_ID}
  type: public
  cors: {{allowed_origins: ["{SHOP}"]}}
  customer_ids: {{allow: [cookie]}}
  event_types: {{allow: [page_visit]}}
"""


async def raw_head(url: str, request: bytes) -> bytes:
    """The head of the answer to `request`, sent as bytes."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    return head


async def test_tracking_answers_of_trackgate_carry_no_server_header(
    make_sidecar: StartSidecar, http: aiohttp.ClientSession
) -> None:
    sidecar = await make_sidecar(streams=CORS_STREAM)
    url = events_url(sidecar.url)
    answers = {
        "rejection": await post(http, url, event("internal_debug")),
        "unknown endpoint": await post(http, f"{sidecar.url}/nope", event()),
    }
    preflight_headers = {"Origin": SHOP, "Access-Control-Request-Method": "POST"}
    async with http.options(url, headers=preflight_headers) as preflight:
        assert preflight.status == 204
        assert "Server" not in preflight.headers
    for name, answer in answers.items():
        assert answer.status >= 400, name
        assert "Server" not in answer.headers, name
    refused = await raw_head(sidecar.url, b"POST /track HTTP/1.1\r\nHost: x\r\nBad Line\r\n\r\n")
    assert refused.split(b" ")[1] == b"400"
    assert b"\r\nserver:" not in refused.lower()


async def test_relayed_answers_keep_the_collectors_headers_and_gain_none(
    make_sidecar: StartSidecar, http: aiohttp.ClientSession, collector: Collector
) -> None:
    # The recording collector is aiohttp too: it sends its own `Server`, relayed as is.
    sidecar = await make_sidecar()
    relayed = await post(http, events_url(sidecar.url), event())
    assert relayed.status == 200
    assert relayed.headers["Server"].startswith("Python/")
    bare = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    async with raw_collector(lambda n: [bare]) as (url, _):
        sidecar = await make_sidecar(upstream=url)
        answer = await post(http, events_url(sidecar.url), event())
    assert answer.status == 200
    assert "Server" not in answer.headers


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/metrics", 200),
        ("GET", "/healthz", 200),
        ("GET", "/readyz", 200),
        ("GET", "/config", 200),
        ("GET", "/nope", 404),
        ("POST", "/healthz", 405),
    ],
)
async def test_admin_answers_carry_no_server_header(
    sidecar: Sidecar, http: aiohttp.ClientSession, method: str, path: str, status: int
) -> None:
    async with http.request(method, f"{sidecar.admin_url}{path}") as answer:
        assert answer.status == status
        assert "Server" not in answer.headers
        if status == 405:
            assert answer.headers["Allow"] == "GET,HEAD"
        await answer.read()
