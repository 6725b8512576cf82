"""The edge probes of issue 12: slow clients and header floods against a real
`trackgate serve` process, with counts (and RSS), never timings, as results.

    python bench/edge_probe.py slow      # 2,000 slowloris + 500 slow bodies + 2,000 idle
                                         # keep-alive connections, then 50 real requests
    python bench/edge_probe.py nofile    # the sidecar at `ulimit -n 1024`, 1,100 slowloris,
                                         # then 50 real requests
    python bench/edge_probe.py headers   # 40 connections of maximal unfinished heads (RSS),
                                         # then each pushed past the limit (up to 15.5 MiB)

Each scenario starts its own collector and sidecar on loopback, prints one JSON
object (what the clients got, the sidecar's connection metrics, RSS) and exits.
`tests/test_edge.py` runs the same scenarios with assertions. The attackers are
raw non-blocking sockets: thousands of them cost the probe little.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
STREAM_ID = "40494d18-e714-4c8c-bbd9-35225de4e81d"
EVENTS_PATH = f"/track/u/v1/customers/events?stream_id={STREAM_ID}"
EVENT = {"customer_ids": {"cookie": "c-1"}, "event_type": "page_visit", "properties": {}}
HEAD_START = f"POST {EVENTS_PATH} HTTP/1.1\r\nHost: probe\r\n".encode()
FIELD_LINE = b"X-Filler: " + b"f" * 4084 + b"\r\n"  # 4 KiB per header line
# The red team's flood: header lines just under aiohttp's old 128 KiB field
# limit, 127 of them (its old 128-field limit): 15.5 MiB of head per connection.
FLOOD_LINE = b"X-Flood: " + b"f" * (124 * 1024) + b"\r\n"
_METRIC = re.compile(
    r'^trackgate_(open_connections|connections_closed_total)(?:\{reason="(\w+)"\})? (\S+)$', re.M
)
_CONNECTING = 100  # connections being opened at once (below any listen backlog)


@dataclass
class Sidecar:
    """A `trackgate serve` process on loopback."""

    process: asyncio.subprocess.Process
    port: int
    admin: str
    workdir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rules(
    upstream: str, port: int, admin_port: int, limits: dict[str, Any], extra: str = ""
) -> str:
    """A rules file with one public stream that takes page_visit events."""
    lines = "".join(f"    {key}: {value}\n" for key, value in limits.items())
    block = f"  limits:\n{lines}" if lines else ""
    return (
        f'version: 1\nserver:\n  listen: "127.0.0.1:{port}"\n  admin_listen: "127.0.0.1:{admin_port}"\n'
        f"  shutdown_delay_seconds: 0\n{extra}{block}"
        f"  upstream:\n    url: {upstream}\n    timeout_seconds: 10\n"
        "streams:\n"
        f"  - name: web\n    id: {STREAM_ID}\n    type: public\n"
        "    customer_ids: {default: deny, allow: [cookie]}\n"
        "    event_types: {default: deny, allow: [page_visit]}\n"
        "    customer_properties: {default: deny}\n"
    )


async def start_sidecar(
    upstream: str, limits: dict[str, Any], *, nofile: int | None = None, capture: bool = False,
    extra: str = "",
) -> Sidecar:  # fmt: skip
    """`trackgate serve` with `limits`; `nofile`: its soft RLIMIT_NOFILE (`ulimit -n`)."""
    workdir = Path(tempfile.mkdtemp(prefix="edge-probe-"))
    port, admin_port = free_port(), free_port()
    path = workdir / "rules.yaml"
    path.write_text(rules(upstream, port, admin_port, limits, extra))

    def limit_descriptors() -> None:
        if nofile is not None:
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
            )

    output = asyncio.subprocess.PIPE if capture else asyncio.subprocess.DEVNULL
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", "serve", "--config", str(path), cwd=ROOT,
        stdout=output, stderr=asyncio.subprocess.STDOUT if capture else output,
        preexec_fn=limit_descriptors,
    )  # fmt: skip
    sidecar = Sidecar(process, port, f"http://127.0.0.1:{admin_port}", workdir)
    await until(lambda: _ready(sidecar), 20, "the sidecar did not become ready")
    return sidecar


async def stop(sidecar: Sidecar) -> None:
    if sidecar.process.returncode is None:
        sidecar.process.terminate()
        await asyncio.wait_for(sidecar.process.wait(), 30)
    shutil.rmtree(sidecar.workdir, ignore_errors=True)


async def _ready(sidecar: Sidecar) -> bool:
    try:
        return await get_status(f"{sidecar.admin}/readyz") == 200
    except (aiohttp.ClientError, OSError):
        return False


async def until(check: Callable[[], Awaitable[bool]], seconds: float, failure: str) -> None:
    """Poll `check` until it holds; fail after `seconds` (a bound, not a timing)."""
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(failure)
        await asyncio.sleep(0.05)


async def get_status(url: str) -> int:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as answer:
        await answer.read()
        return answer.status


async def start_collector() -> tuple[web.AppRunner, str]:
    """A collector that accepts everything."""

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"success": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


# --- the sidecar's side: metrics, RSS, unread bytes ---------------------------------------


async def connection_metrics(sidecar: Sidecar) -> dict[str, float]:
    """`open` and each `connections_closed_total` reason, from /metrics."""
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(f"{sidecar.admin}/metrics") as answer,
    ):
        text = await answer.text()
    return {reason or "open": float(value) for _, reason, value in _METRIC.findall(text)}


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def unread_bytes(port: int) -> int:
    """Bytes waiting in the receive queues of the sockets on `port` (the sidecar's
    accepted connections): 0 once it has read everything sent to it."""
    total = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                total += int(fields[4].split(":")[1], 16)
    return total


# --- the clients --------------------------------------------------------------------------


@dataclass
class Crowd:
    """Attacking connections, kept open until `close`."""

    sockets: list[socket.socket] = field(default_factory=list)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


async def open_many(
    port: int, count: int, first: bytes, crowd: Crowd, answered: bool = False
) -> None:
    """Open `count` connections, each sending `first` (and reading the answer when
    `answered`), `_CONNECTING` at a time."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(_CONNECTING)

    async def one() -> None:
        async with gate:
            sock = socket.socket()
            sock.setblocking(False)
            crowd.sockets.append(sock)
            await loop.sock_connect(sock, ("127.0.0.1", port))
            await loop.sock_sendall(sock, first)
            if answered:
                await read_answer(sock)

    await asyncio.gather(*(one() for _ in range(count)))


async def read_answer(sock: socket.socket) -> bytes:
    """One HTTP answer framed by Content-Length, read from a non-blocking socket."""
    loop = asyncio.get_running_loop()
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await loop.sock_recv(sock, 65536)
        if not chunk:
            raise ConnectionError("closed before an answer")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += await loop.sock_recv(sock, 65536)
    return head


def maximal_unfinished_head(max_header_bytes: int) -> bytes:
    """A head 2 bytes short of `max_header_bytes`, with no end: the most a
    connection may hold (its final CRLF would make it exactly the limit)."""
    lines = (max_header_bytes - len(HEAD_START)) // len(FIELD_LINE)
    head = HEAD_START + FIELD_LINE * (lines - 1)
    pad = max_header_bytes - 2 - len(head) - len(b"X-Pad: \r\n")
    return head + b"X-Pad: " + b"p" * pad + b"\r\n"


def slowloris_head() -> bytes:
    """The start of a head that never ends."""
    return HEAD_START + b"X-A: b\r\n"


def slow_body_head() -> bytes:
    """A complete head and 10 of its 1,000 body bytes."""
    return (
        HEAD_START
        + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        + b'{"custome'
    )


def idle_request() -> bytes:
    """A cheap complete request (answered 404 by the sidecar itself), after which
    the connection stays open, idle."""
    return b"GET /not-tracking HTTP/1.1\r\nHost: probe\r\n\r\n"


async def real_requests(sidecar: Sidecar, count: int) -> list[int]:
    """`count` tracking requests from a real HTTP client; their statuses (or 0)."""
    timeout = aiohttp.ClientTimeout(total=15)
    statuses = []
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for _ in range(count):
            try:
                async with http.post(sidecar.url + EVENTS_PATH, json=EVENT) as answer:
                    await answer.read()
                    statuses.append(answer.status)
            except (aiohttp.ClientError, TimeoutError):
                statuses.append(0)
    return statuses


async def flood_head(sock: socket.socket, budget: int) -> int:
    """Send header lines without ending the head until the peer closes or `budget`
    bytes went out; the bytes sent."""
    loop = asyncio.get_running_loop()
    sent = 0
    try:
        while sent + len(FLOOD_LINE) <= budget:
            await loop.sock_sendall(sock, FLOOD_LINE)
            sent += len(FLOOD_LINE)
    except OSError:
        pass
    return sent


async def closed_by_peer(sock: socket.socket) -> bool:
    """True once the peer has closed the connection (EOF or reset)."""
    try:
        return (
            await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 65536), 0.01) == b""
        )
    except TimeoutError:
        return False
    except OSError:
        return True


# --- the scenarios --------------------------------------------------------------------------


async def slow_clients(
    sidecar: Sidecar, *, slowloris: int = 2000, slow_bodies: int = 500, idle: int = 2000,
    requests: int = 50,
) -> dict[str, Any]:  # fmt: skip
    """Idle, slow-body and slowloris connections all open at once, then real
    requests and the admin port; then wait for the deadlines to close them all."""
    crowd = Crowd()
    try:
        await open_many(sidecar.port, idle, idle_request(), crowd, answered=True)
        await open_many(sidecar.port, slow_bodies, slow_body_head(), crowd)
        await open_many(sidecar.port, slowloris, slowloris_head(), crowd)
        attackers = idle + slow_bodies + slowloris
        await until(lambda: _read_everything(sidecar), 30, "the sidecar did not read its input")
        open_before = (await connection_metrics(sidecar))["open"]
        statuses = await real_requests(sidecar, requests)
        healthz = await get_status(f"{sidecar.admin}/healthz")
        await until(lambda: _all_closed(sidecar, attackers), 60, "slow connections stayed open")
        return {
            "open_before": open_before,
            "ok": statuses.count(200),
            "requests": len(statuses),
            "healthz": healthz,
            "metrics": await connection_metrics(sidecar),
        }
    finally:
        crowd.close()


async def descriptor_limit(
    sidecar: Sidecar, *, slowloris: int = 1100, requests: int = 50
) -> dict[str, Any]:
    """Slowloris connections past the sidecar's descriptor limit, then real requests."""
    crowd = Crowd()
    try:
        await open_many(sidecar.port, slowloris, slowloris_head(), crowd)
        statuses = await real_requests(sidecar, requests)
        healthz = await get_status(f"{sidecar.admin}/healthz")
        await until(
            lambda: _all_closed(sidecar, slowloris), 60, "slowloris connections stayed open"
        )
        return {
            "ok": statuses.count(200),
            "requests": len(statuses),
            "healthz": healthz,
            "metrics": await connection_metrics(sidecar),
        }
    finally:
        crowd.close()


async def header_flood(
    sidecar: Sidecar, *, connections: int = 40, max_header_bytes: int = 32768,
    budget: int = 127 * len(FLOOD_LINE),
) -> dict[str, Any]:  # fmt: skip
    """Hold `connections` unfinished heads just under the limit and measure the
    sidecar's RSS; then push each on (up to `budget` bytes) and measure again."""
    crowd = Crowd()
    baseline = rss_bytes(sidecar.process.pid)
    try:
        await open_many(sidecar.port, connections, maximal_unfinished_head(max_header_bytes), crowd)
        await until(lambda: _read_everything(sidecar), 30, "the sidecar did not read the heads")
        held = await connection_metrics(sidecar)
        rss_held = rss_bytes(sidecar.process.pid)
        sent = await asyncio.gather(*(flood_head(sock, budget) for sock in crowd.sockets))
        closed = [await _wait_closed(sock) for sock in crowd.sockets]
        return {
            "connections": connections,
            "open_while_held": held["open"],
            "rss_growth_held": rss_held - baseline,
            "rss_growth_after_flood": rss_bytes(sidecar.process.pid) - baseline,
            "flood_bytes_sent": sum(sent),
            "closed_by_sidecar": sum(closed),
            "metrics": await connection_metrics(sidecar),
        }
    finally:
        crowd.close()


async def _wait_closed(sock: socket.socket) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if await closed_by_peer(sock):
            return True
    return False


async def _read_everything(sidecar: Sidecar) -> bool:
    return unread_bytes(sidecar.port) == 0


async def _all_closed(sidecar: Sidecar, at_least: int) -> bool:
    metrics = await connection_metrics(sidecar)
    closed = sum(value for key, value in metrics.items() if key != "open")
    return closed >= at_least and metrics["open"] == 0


SCENARIOS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (server.limits, start_sidecar options)
    "slow": (
        {"header_timeout_seconds": 8, "body_timeout_seconds": 8, "keepalive_timeout_seconds": 8},
        {},
    ),
    "nofile": ({"header_timeout_seconds": 2}, {"nofile": 1024}),
    "headers": ({}, {}),
}


async def run(name: str) -> dict[str, Any]:
    limits, options = SCENARIOS[name]
    collector, upstream = await start_collector()
    sidecar = await start_sidecar(upstream, limits, **options)
    try:
        probe = {"slow": slow_clients, "nofile": descriptor_limit, "headers": header_flood}[name]
        return await probe(sidecar)
    finally:
        await stop(sidecar)
        await collector.cleanup()


def raise_descriptor_limit(needed: Iterable[int] = (12_000,)) -> None:
    """The probe's own RLIMIT_NOFILE: its soft limit up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(needed)
    if soft < wanted:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else wanted, hard)
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    args = parser.parse_args()
    raise_descriptor_limit()
    os.chdir(ROOT)
    print(json.dumps(asyncio.run(run(args.scenario)), indent=2))


if __name__ == "__main__":
    main()
