"""An `https` collector (the first-party proxy case, e.g. Braze's SDK endpoint):
the certificate is verified against the URL's host name, SNI names it, `Host` is
the upstream's, and `server.upstream.ca_file` adds a private CA."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import StartSidecar
from tests.harness import Collector
from tests.http import event, events_url, post
from tests.idp import make_tls


@pytest.fixture
async def tls_collector(tmp_path: Path) -> AsyncIterator[tuple[Collector, list[str | None]]]:
    """A recording collector on https://localhost:PORT, its certificate from a test CA
    (tmp_path/ca.pem); the SNI names it was asked for."""
    recorder, names = Collector(), []
    context = make_tls(tmp_path)

    def sni(_: ssl.SSLObject, name: str | None, __: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = sni
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    recorder.url = f"https://localhost:{runner.addresses[0][1]}"
    yield recorder, names
    await runner.cleanup()


async def test_an_https_collector_with_a_private_ca(
    make_sidecar: StartSidecar,
    tls_collector: tuple[Collector, list[str | None]],
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    collector, names = tls_collector
    ca_file = f"\n    ca_file: {tmp_path / 'ca.pem'}"  # under server.upstream, after url
    sidecar = await make_sidecar(upstream=collector.url + ca_file)
    answer = await post(http, events_url(sidecar.url), event())
    assert answer.status == 200, answer.body
    [received] = collector.received
    assert received.headers["Host"] == collector.url.removeprefix("https://")
    assert received.json == event()
    assert names == ["localhost"]


async def test_an_https_collector_whose_certificate_is_not_trusted_is_not_used(
    make_sidecar: StartSidecar,
    tls_collector: tuple[Collector, list[str | None]],
    http: aiohttp.ClientSession,
) -> None:
    collector, _ = tls_collector
    sidecar = await make_sidecar(upstream=collector.url)  # no ca_file: verification fails
    answer = await post(http, events_url(sidecar.url), event())
    assert answer.status == 502
    assert answer.code == "upstream_unavailable"
    assert collector.received == []
