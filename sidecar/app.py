"""Builds the aiohttp applications and runs the process: the only wiring module."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from sidecar import NATIVE, logs
from sidecar.admin import admin_app
from sidecar.connections import Connections, connection_cap
from sidecar.edge import EdgeServer
from sidecar.errors import StartupError
from sidecar.forward import upstream_pool
from sidecar.handler import Pipeline
from sidecar.metrics import Metrics
from sidecar.reload import Reloader, RulesHolder
from sidecar.rules import EdgeLimits, Rules, Server
from sidecar.tokens import TokenVerifier

MAX_BODY_READ = 2**62  # no cap of aiohttp's own: the rules' max_body_bytes applies
DRAIN_GRACE_SECONDS = 5  # in-flight requests get the upstream timeout plus this to finish
# Connections the kernel queues before they are accepted (aiohttp's default is
# 128, nginx's 511): under a burst of new connections a full queue drops SYNs,
# and each drop costs that client a 1 s retransmission.
LISTEN_BACKLOG = 1024
GC_YOUNG_THRESHOLD = 10_000  # allocations between young-generation collections (default 700)

__all__ = [
    "TrackingRunner",
    "admin_app",
    "check_ports",
    "event_loop_policy",
    "listen",
    "run",
    "serve",
]


class TrackingRunner(web.ServerRunner):
    """The tracking listener: aiohttp's low-level server hands every request, on
    any path, straight to the pipeline (no router: it had one catch-all route,
    and skipping it and the application layer measurably cheapens each request,
    README "Performance"). Cleaning up closes the upstream pool.

    aiohttp's own request decompression is off: `body.read_body` inflates gzip
    itself so that the size limit bounds the output, not the input. Connections
    are `sidecar.edge`'s: head limits, deadlines, the connection cap; a head may
    be as large as `max_header_bytes`, so a token up to that size still gets
    trackgate's own `token_malformed` answer, not a parser error.
    """

    def __init__(self, holder: RulesHolder, metrics: Metrics, **kwargs: Any) -> None:
        rules = holder.current
        if rules is None:
            raise RuntimeError("the tracking listener needs loaded rules to start")
        self.pipeline = Pipeline(
            holder, upstream_pool(rules.server.upstream), TokenVerifier(), metrics
        )
        self.connections = Connections(holder, metrics)
        server = EdgeServer(
            self.pipeline.handle,
            self.connections,
            request_factory=self._request,
            auto_decompress=False,
            access_log=None,  # the pipeline writes the access log
        )
        super().__init__(server, **kwargs)

    async def cleanup(self) -> None:
        await super().cleanup()
        self.pipeline.pool.close()

    def _request(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        """A request without aiohttp's 1 MiB body cap: the rules' `max_body_bytes`
        is enforced by `body.read_body`. While draining, its answer carries
        `Connection: close` and its connection closes after it (SPEC §6.5)."""
        if self.pipeline.holder.draining:
            message = message._replace(should_close=True)
        loop = asyncio.get_running_loop()
        return web.BaseRequest(
            message, payload, protocol, writer, task, loop, client_max_size=MAX_BODY_READ
        )


def admin_runner(holder: RulesHolder, metrics: Metrics, limits: EdgeLimits) -> web.AppRunner:
    """The admin listener: probes and scrapes send small GETs, so it takes aiohttp's
    own 8 KiB field limit, the edge's field count and an idle deadline (its
    default keep-alive is an hour)."""
    return web.AppRunner(
        admin_app(holder, metrics),
        access_log=None,
        keepalive_timeout=limits.keepalive_timeout_seconds,
        max_headers=limits.max_headers,
    )


async def serve(path: Path, rules: Rules) -> None:
    """Run both listeners and the watcher until SIGTERM/SIGINT, then drain (SPEC §6.5)."""
    holder, metrics = RulesHolder(), Metrics()
    reloader = Reloader(path, holder, metrics)
    reloader.install(rules)
    server = rules.server
    shutdown_timeout = server.upstream.timeout_seconds + DRAIN_GRACE_SECONDS
    tracking = TrackingRunner(holder, metrics, shutdown_timeout=shutdown_timeout)
    admin = admin_runner(holder, metrics, server.limits)
    try:
        await listen(server, tracking=tracking, admin=admin)
    except StartupError:
        await tracking.cleanup()
        await admin.cleanup()
        raise
    settle_garbage_collector()
    logs.event("build", compiled=NATIVE.compiled, detail=NATIVE.detail)
    logs.event(
        "listening",
        listen=f"{server.listen[0]}:{server.listen[1]}",
        version=rules.version,
        max_connections=connection_cap(server),
    )
    watcher = asyncio.create_task(reloader.watch(), name="rules-watcher")
    reloads: set[asyncio.Task[bool]] = set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, _spawn, reloads, reloader)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    holder.draining = True  # from now on every answer carries Connection: close
    tracking.connections.drain()
    delay = (holder.current or rules).server.shutdown_delay_seconds
    logs.event("draining", delay_seconds=delay)
    await asyncio.sleep(delay)
    watcher.cancel()
    await tracking.cleanup()  # closes the listener, waits (bounded) for in-flight requests
    await admin.cleanup()
    await reloader.key_sources.close()  # remote key refreshers: cancelled, clients closed
    logs.event("stopped")


async def listen(server: Server, *, tracking: web.BaseRunner, admin: web.BaseRunner) -> None:
    """Bind both listeners. A port that cannot be bound is a `StartupError` naming
    its setting (`server.listen` or `server.admin_listen`)."""
    shared = server.workers > 1  # every worker binds the same ports
    listeners = (
        (tracking, server.listen, "server.listen"),
        (admin, server.admin_listen, "server.admin_listen"),
    )
    for runner, (host, port), setting in listeners:
        await runner.setup()
        site = web.TCPSite(
            runner, host, port, backlog=LISTEN_BACKLOG, reuse_address=True, reuse_port=shared
        )
        try:
            await site.start()
        except OSError as error:
            raise StartupError.cannot_listen(setting, host, port, error) from None


def check_ports(server: Server) -> None:
    """Before starting workers: both ports can be bound as the workers will bind them
    (SO_REUSEPORT), else a `StartupError` naming the setting — a worker failing to
    bind would otherwise be restarted forever."""
    for setting, (host, port) in (
        ("server.listen", server.listen),
        ("server.admin_listen", server.admin_listen),
    ):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                raise StartupError.cannot_listen(setting, host, port, error) from None


def settle_garbage_collector() -> None:
    """Once started, move everything allocated so far (modules, rules, keys) out of
    the collector's reach and collect young objects less often.

    Requests allocate many short-lived objects (a 50-command batch: hundreds of
    dicts), which trips CPython's generational collector every few requests, and
    each full collection walks every long-lived object of the process. Frozen
    start-up objects are never walked again; a larger first generation means
    fewer collections. Reference counting still frees almost everything at once;
    this only changes how often cycles are looked for (README "Performance").
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def event_loop_policy() -> asyncio.AbstractEventLoopPolicy:
    """uvloop when installed (unless TRACKGATE_EVENT_LOOP=asyncio), else asyncio's own."""
    if os.environ.get("TRACKGATE_EVENT_LOOP", "uvloop") == "uvloop":
        try:
            import uvloop  # noqa: PLC0415 - optional: faster, but trackgate runs without it

            policy: asyncio.AbstractEventLoopPolicy = uvloop.EventLoopPolicy()
            return policy
        except ImportError:
            pass
    return asyncio.DefaultEventLoopPolicy()


def run(path: Path, rules: Rules) -> None:
    """`trackgate serve`: serve until stopped, on the chosen event loop."""
    with asyncio.Runner(loop_factory=event_loop_policy().new_event_loop) as runner:
        runner.run(serve(path, rules))


def _spawn(tasks: set[asyncio.Task[bool]], reloader: Reloader) -> None:
    """SIGHUP: reload now, keeping a reference to the task until it is done."""
    task = asyncio.create_task(reloader.reload(), name="rules-reload")
    tasks.add(task)
    task.add_done_callback(tasks.discard)
