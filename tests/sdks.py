"""Driving real vendor SDKs through trackgate: a tap that records what an SDK sends,
the SDK's own warnings and errors, and decoders for the carriers the SDKs use.

The tap is a transparent loopback hop between an SDK and the sidecar: it records
each request as the SDK sent it, relays it unchanged, and relays the sidecar's
answer unchanged. A test can then compare what the SDK sent with what the
collector received (decoded), and count the SDK's requests (a retry loop or a
re-sent batch shows up as extra requests).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from tests.harness import Collector, Received, start_collector

# Not relayed by the tap: hop-by-hop headers and the ones aiohttp computes itself.
_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass
class Tap:
    """Records every request on its way to `target` and every answer on its way back."""

    target: str = ""
    received: list[Received] = field(default_factory=list)
    answers: list[tuple[int, bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = CIMultiDict(request.headers)
        self.received.append(Received(request.method, request.raw_path, headers, body))
        relayed = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as http,
            http.request(
                request.method,
                self.target + request.raw_path,
                data=body,
                headers=relayed,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type", "Accept"),
            ) as answer,
        ):
            answer_body = await answer.read()
            answer_headers = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
        self.answers.append((answer.status, answer_body))
        return web.Response(status=answer.status, body=answer_body, headers=answer_headers)


async def start_tap(tap: Tap) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", tap.handle)
    runner = web.AppRunner(app, access_log=None, auto_decompress=False)  # bytes as sent
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    tap.url = f"http://{host}:{port}"
    return runner


@contextlib.contextmanager
def sdk_problems(*loggers: str) -> Iterator[list[logging.LogRecord]]:
    """Warnings and errors the named SDK loggers write while the block runs."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.WARNING)
    for name in loggers:
        logging.getLogger(name).addHandler(handler)
    try:
        yield records
    finally:
        for name in loggers:
            logging.getLogger(name).removeHandler(handler)


def form(body: bytes) -> dict[str, str]:
    """A form-urlencoded body, one value per field (a repeated field fails the test)."""
    fields = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
    assert all(len(values) == 1 for values in fields.values()), fields
    return {name: values[0] for name, values in fields.items()}


def b64decode(text: str, *, urlsafe: bool) -> bytes:
    """Strict base64 in one alphabet, padding required."""
    if urlsafe:
        assert "+" not in text and "/" not in text, "not the URL-safe alphabet"
        return base64.urlsafe_b64decode(text.encode("ascii"))
    assert "-" not in text and "_" not in text, "not the standard alphabet"
    return base64.b64decode(text.encode("ascii"), validate=True)


async def until(condition: Callable[[], object], seconds: float = 30) -> None:
    """Wait for `condition` (set by an SDK's thread); the deadline only guards a hang."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the SDK did not get there in time"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def late_collector(collector: Collector, port: int) -> AsyncIterator[None]:
    """`collector` served on `port` for the block (the upstream comes back)."""
    runner = await start_collector(collector, port)
    try:
        yield
    finally:
        await runner.cleanup()


def live_threads() -> set[threading.Thread]:
    """The running threads, but the event loop's executor (which runs the SDK calls)."""
    return {t for t in threading.enumerate() if not t.name.startswith("asyncio_")}


def access_lines(log_lines: io.StringIO) -> list[dict[str, Any]]:
    """trackgate's access-log lines (one per request it answered)."""
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    return [line for line in lines if line.get("event") == "request"]


def without(document: dict[str, Any], *names: str) -> dict[str, Any]:
    """A copy of `document` without the named keys."""
    return {k: v for k, v in document.items() if k not in names}
