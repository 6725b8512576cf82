"""Builds the aiohttp applications and runs them: the only wiring module."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import AsyncIterator

from aiohttp import web

from sidecar.forward import client_session
from sidecar.handler import Pipeline
from sidecar.reload import RulesHolder
from sidecar.rules import Rules
from sidecar.tokens import TokenVerifier

HOLDER = web.AppKey("holder", RulesHolder)
PIPELINE = web.AppKey("pipeline", Pipeline)
log = logging.getLogger("trackgate")
MAX_HEADER_FIELD_BYTES = 128 * 1024


def tracking_app(holder: RulesHolder) -> web.Application:
    """The tracking listener: every path goes through the pipeline.

    aiohttp's own request decompression is off: `body.read_body` inflates gzip
    itself so that the size limit bounds the output, not the input. Header
    fields may be up to 128 KiB so that an oversized token gets trackgate's own
    `token_malformed` answer rather than a bare 400 from the HTTP parser.
    """
    app = web.Application(
        handler_args={"auto_decompress": False, "max_field_size": MAX_HEADER_FIELD_BYTES}
    )
    app[HOLDER] = holder
    app.cleanup_ctx.append(_pipeline_context)
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app


def admin_app(holder: RulesHolder) -> web.Application:
    """The admin listener: health and readiness."""
    app = web.Application()
    app[HOLDER] = holder
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    return app


async def _pipeline_context(app: web.Application) -> AsyncIterator[None]:
    rules = app[HOLDER].current
    if rules is None:
        raise RuntimeError("the tracking app needs loaded rules to start")
    async with client_session(rules.server.upstream) as session:
        app[PIPELINE] = Pipeline(app[HOLDER], session, TokenVerifier())
        yield


async def _dispatch(request: web.Request) -> web.Response:
    return await request.app[PIPELINE].handle(request)


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    holder = request.app[HOLDER]
    ready = holder.current is not None and not holder.draining
    detail = {
        "ready": ready,
        "draining": holder.draining,
        "version": holder.current.version if holder.current else None,
    }
    return web.json_response(detail, status=200 if ready else 503)


async def serve(rules: Rules) -> None:
    """Run both listeners until SIGTERM/SIGINT, then drain (SPEC §6.5)."""
    holder = RulesHolder(current=rules)
    server = rules.server
    runners = [
        (web.AppRunner(tracking_app(holder), access_log=None, shutdown_timeout=30), server.listen),
        (web.AppRunner(admin_app(holder), access_log=None), server.admin_listen),
    ]
    for runner, (host, port) in runners:
        await runner.setup()
        await web.TCPSite(runner, host, port, reuse_address=True).start()
    log.info(json.dumps({"event": "listening", "listen": server.listen, "version": rules.version}))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    holder.draining = True
    await asyncio.sleep(server.shutdown_delay_seconds)
    for runner, _ in runners:
        await runner.cleanup()
