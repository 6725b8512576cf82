"""Real parts for end-to-end tests: a recording collector and the sidecar, on loopback.

Nothing here mocks the sidecar: `start_sidecar` runs the same aiohttp
application `trackgate serve` runs, on a free port, in front of a `Collector`
that records every request it receives.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from sidecar.app import TrackingRunner, admin_app
from sidecar.config import load_rules
from sidecar.metrics import Metrics
from sidecar.reload import Reloader, RulesHolder

ROOT = Path(__file__).resolve().parent.parent
# The shared test data (Wycheproof vectors, browser captures) beside the checkout,
# as CI places it; a clone elsewhere uses the unchanged copy in tests/fixtures.
SHARED_TESTDATA = next(
    path
    for path in (ROOT.parent / "shared" / "testdata", ROOT / "tests" / "fixtures" / "testdata")
    if path.is_dir()
)
WEB_ID = "40494d18-e714-4c8c-bbd9-35225de4e81d"
BACKEND_ID = "7f1c2d9e-0b8a-4a57-9d39-2f1f0c7e5a10"
BACKEND_SECRET = "s3cret-backend-value-0123456789"
OLD_BACKEND_SECRET = "older-backend-secret-9876543210"


def shared_testdata(name: str) -> Path:
    """A folder of the shared test data."""
    path = SHARED_TESTDATA / name
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is missing")
    return path


@dataclass
class Received:
    """One request as the collector saw it."""

    method: str
    path_qs: str
    headers: CIMultiDict[str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Collector:
    """A small collector that records what it receives and answers like Bloomreach."""

    received: list[Received] = field(default_factory=list)
    status: int = 200
    delay: float = 0.0
    body: bytes | None = None  # a fixed answer instead of the default
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(
            Received(request.method, request.raw_path, CIMultiDict(request.headers), body)
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.body is not None:
            return web.Response(status=self.status, body=self.body, content_type="application/json")
        document = json.loads(body) if body else {}
        if isinstance(document, dict) and isinstance(document.get("commands"), list):
            results = [{"success": True, "n": i} for i in range(len(document["commands"]))]
            return web.json_response({"success": True, "results": results}, status=self.status)
        return web.json_response({"success": self.status < 300}, status=self.status)


@dataclass
class Sidecar:
    """A running sidecar: its URLs, rules holder, reloader (watching) and metrics."""

    url: str
    admin_url: str
    holder: RulesHolder
    rules_path: Path
    reloader: Reloader
    metrics: Metrics
    watcher: asyncio.Task[None]


async def start_collector(collector: Collector, port: int = 0) -> web.AppRunner:
    """Serve `collector` on loopback, on `port` (0: a free one)."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", collector.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    host, port = runner.addresses[0][:2]
    collector.url = f"http://{host}:{port}"
    return runner


async def start_sidecar(
    rules_path: Path, env: dict[str, str]
) -> tuple[Sidecar, list[web.BaseRunner]]:
    """The tracking and admin apps `trackgate serve` runs, with the rules watcher running."""
    holder, metrics = RulesHolder(), Metrics()
    reloader = Reloader(rules_path, holder, metrics, env)
    reloader.install(load_rules(rules_path, env))
    runners: list[web.BaseRunner] = []
    urls = []
    for runner in (
        TrackingRunner(holder, metrics),
        web.AppRunner(admin_app(holder, metrics), access_log=None),
    ):
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        urls.append(f"http://{host}:{port}")
        runners.append(runner)
    watcher = asyncio.create_task(reloader.watch())
    return Sidecar(urls[0], urls[1], holder, rules_path, reloader, metrics, watcher), runners


StartSidecar = Callable[..., Awaitable[Sidecar]]


@asynccontextmanager
async def running_collector() -> AsyncIterator[Collector]:
    """A recording collector on loopback, for the block's duration."""
    recorder = Collector()
    runner = await start_collector(recorder)
    try:
        yield recorder
    finally:
        await runner.cleanup()


@asynccontextmanager
async def sidecar_starter(tmp_path: Path, collector: Collector) -> AsyncIterator[StartSidecar]:
    """Starts sidecars with the given streams (default: the standard web + backend)
    in front of `collector`; all are stopped when the block ends."""
    runners: list[web.BaseRunner] = []
    sidecars: list[Sidecar] = []

    async def start(
        streams: str = STANDARD_STREAMS,
        server: str = "",
        upstream: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Sidecar:
        path = tmp_path / "rules.yaml"
        path.write_text(rules_text(upstream or collector.url, streams, server))
        sidecar, started = await start_sidecar(
            path, {"BACKEND_SECRET": BACKEND_SECRET, **(env or {})}
        )
        runners.extend(started)
        sidecars.append(sidecar)
        return sidecar

    try:
        yield start
    finally:
        for running in sidecars:
            running.watcher.cancel()
        for runner in reversed(runners):
            await runner.cleanup()
        for running in sidecars:
            await running.reloader.key_sources.close()


def rules_text(upstream: str, streams: str, server: str = "", timeout: float = 2) -> str:
    """A rules file with the given streams block, forwarding to `upstream`."""
    return (
        "version: 1\n"
        "server:\n"
        f"{textwrap.indent(textwrap.dedent(server), '  ')}"
        "  upstream:\n"
        f"    url: {upstream}\n"
        f"    timeout_seconds: {timeout}\n"
        "streams:\n" + textwrap.indent(textwrap.dedent(streams), "  ")
    )


STANDARD_STREAMS = f"""
- name: web
  id: {WEB_ID}
  type: public
  dialect: bloomreach
  debug_headers: true
  customer_ids:
    default: deny
    allow: [cookie]
    signed_only: [registered]
    deny: [phone_id]
  event_types:
    default: deny
    allow: [page_visit, view_item, cart_update]
    signed_only: [purchase]
  customer_properties:
    default: deny
    allow: [first_name, language]
    signed_only: [email]
    deny: [password]
  event_properties:
    default: allow
    deny: [card_number]
- name: backend
  id: {BACKEND_ID}
  type: private
  template: private
  secrets:
    - id: current
      value: {{env: BACKEND_SECRET}}
    - id: old
      sha256: "{hashlib.sha256(OLD_BACKEND_SECRET.encode()).hexdigest()}"
"""


def free_port() -> int:
    """A loopback port nothing listens on (at the time of asking)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Served:
    """A real `trackgate serve` process and where it listens."""

    process: asyncio.subprocess.Process
    base: str
    admin: str
    path: Path
    server: str  # the rules' server block, for rewriting the file


async def serve_process(
    tmp_path: Path,
    upstream: str,
    server_extra: str,
    *,
    capture: bool = False,
    timeout: float = 2,
    streams: str = STANDARD_STREAMS,
) -> Served:
    """Start `trackgate serve` (the standard streams by default) on free ports; wait
    until ready."""
    port, admin_port = free_port(), free_port()
    server = f'listen: "127.0.0.1:{port}"\nadmin_listen: "127.0.0.1:{admin_port}"\n{server_extra}'
    path = tmp_path / "rules.yaml"
    path.write_text(rules_text(upstream, streams, server, timeout))
    output = asyncio.subprocess.PIPE if capture else asyncio.subprocess.DEVNULL
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", "serve", "--config", str(path),
        cwd=ROOT, env={**os.environ, "BACKEND_SECRET": BACKEND_SECRET},
        stdout=output, stderr=asyncio.subprocess.STDOUT if capture else output,
    )  # fmt: skip
    served = Served(
        process, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}", path, server
    )
    async with aiohttp.ClientSession() as http:
        await wait_ready(http, served.admin)
    return served


async def wait_ready(http: aiohttp.ClientSession, admin: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            async with http.get(f"{admin}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("trackgate serve did not become ready")
