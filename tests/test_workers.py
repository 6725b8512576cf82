"""`server.workers: 2` (SO_REUSEPORT): both workers serve, /metrics aggregates them
whichever one answers, a reload reaches every worker, SIGTERM stops all cleanly."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import STANDARD_STREAMS, Collector, rules_text, serve_process
from tests.http import event, events_url, post

ALLOWED = "allow: [page_visit, view_item, cart_update]"


async def forwarded_count(admin: str) -> float:
    async with aiohttp.ClientSession() as fresh, fresh.get(f"{admin}/metrics") as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "trackgate_requests_total" and labels.get("outcome") == "forwarded":
                return sample.value
    return 0.0


async def fresh_post(base: str) -> tuple[int, str]:
    """On a new connection each time, so the kernel picks a worker each time."""
    async with aiohttp.ClientSession() as fresh:
        answer = await post(fresh, events_url(base), event())
    return answer.status, answer.headers["X-Request-Id"][:16]  # the per-process prefix


async def test_two_workers(tmp_path: Path, collector: Collector) -> None:
    extra = "shutdown_delay_seconds: 0\nreload_interval_seconds: 0.2\nworkers: 2\n"
    served = await serve_process(tmp_path, collector.url, extra)
    process, base, admin, path, server = (
        served.process,
        served.base,
        served.admin,
        served.path,
        served.server,
    )
    try:
        await asyncio.sleep(1)  # both workers listening
        answers = [await fresh_post(base) for _ in range(40)]
        assert {status for status, _ in answers} == {200}
        assert len({prefix for _, prefix in answers}) == 2  # both workers served
        assert len(collector.received) == 40
        for _ in range(6):  # whichever worker answers, it reports both workers' counts
            assert await forwarded_count(admin) == 40
        path.write_text(
            rules_text(
                collector.url, STANDARD_STREAMS.replace(ALLOWED, "allow: [view_item]"), server
            )
        )
        deadline = time.monotonic() + 3
        while True:
            statuses = [(await fresh_post(base))[0] for _ in range(10)]
            if set(statuses) == {403}:
                break  # ten fresh connections in a row: every worker reloaded
            assert time.monotonic() < deadline, f"not every worker reloaded: {statuses}"
            await asyncio.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
