"""A real `trackgate serve` process: graceful shutdown (SPEC §6.5) and SIGHUP reload."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import aiohttp

from tests.harness import STANDARD_STREAMS, Collector, rules_text, serve_process
from tests.http import event, events_url, post


async def test_sigterm_drains_in_flight_requests_and_exits_zero(
    tmp_path: Path, collector: Collector, http: aiohttp.ClientSession
) -> None:
    served = await serve_process(
        tmp_path, collector.url, "shutdown_delay_seconds: 1\n", capture=True, timeout=10
    )
    process, base, admin = served.process, served.base, served.admin
    collector.delay = 2.5  # the in-flight request outlives the shutdown delay
    slow = asyncio.create_task(post(http, events_url(base), event()))
    while not collector.received:
        await asyncio.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.2)
    async with http.get(f"{admin}/readyz") as ready:
        assert ready.status == 503  # at once
        assert (await ready.json())["draining"] is True
    collector.delay = 0
    still_serving = await post(http, events_url(base), event())  # within the delay
    assert still_serving.status == 200
    answer = await slow
    assert answer.status == 200  # the in-flight request finished
    assert await asyncio.wait_for(process.wait(), 20) == 0
    assert process.stdout is not None
    lines = [json.loads(line) for line in (await process.stdout.read()).decode().splitlines()]
    events = [line["event"] for line in lines]
    assert events.index("draining") < events.index("stopped")
    assert sum(1 for e in events if e == "request") == 2


async def test_sighup_reloads_at_once(
    tmp_path: Path, collector: Collector, http: aiohttp.ClientSession
) -> None:
    extra = "shutdown_delay_seconds: 0\nreload_interval_seconds: 3600\n"
    served = await serve_process(tmp_path, collector.url, extra)
    process, base, path, server = served.process, served.base, served.path, served.server
    try:
        assert (await post(http, events_url(base), event("page_visit"))).status == 200
        path.write_text(
            rules_text(collector.url, STANDARD_STREAMS, server).replace(
                "allow: [page_visit, view_item, cart_update]", "allow: [view_item, cart_update]"
            )
        )
        process.send_signal(signal.SIGHUP)  # the hour-long poll interval will not see it
        deadline = time.monotonic() + 2
        while (await post(http, events_url(base), event("page_visit"))).status != 403:
            assert time.monotonic() < deadline, "SIGHUP did not reload within 2 s"
            await asyncio.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0


async def test_config_shows_the_listeners_in_force_and_what_waits_for_a_restart(
    tmp_path: Path, collector: Collector, http: aiohttp.ClientSession
) -> None:
    extra = "shutdown_delay_seconds: 0\nreload_interval_seconds: 3600\n"
    served = await serve_process(tmp_path, collector.url, extra)
    process, base, admin = served.process, served.base, served.admin
    listen = base.removeprefix("http://")
    try:
        moved = served.server.replace(f'listen: "{listen}"', 'listen: "127.0.0.1:1"')
        served.path.write_text(rules_text(collector.url, STANDARD_STREAMS, moved))
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while True:
            async with http.get(f"{admin}/config") as answer:
                config = await answer.json()
            if config["restart_pending"]:
                break
            assert time.monotonic() < deadline, "the new rules were not loaded"
            await asyncio.sleep(0.05)
        assert config["server"]["listen"] == listen  # still the listener in force
        assert config["restart_pending"] == {"server.listen": "127.0.0.1:1"}
        assert (await post(http, events_url(base), event())).status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
