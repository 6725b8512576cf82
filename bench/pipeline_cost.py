"""What trackgate's own code costs per request, without sockets or other processes.

`run.py` measures the whole hop against baselines on a shared machine, where a
row varies by ±10 % from run to run. This script isolates the part trackgate
adds: it drives the real `Pipeline.handle` (stream, auth, decode, policy,
encode, headers, metrics, access log) with aiohttp requests built in memory and
an upstream that answers at once, in one process, and prints microseconds per
request for the benchmark's workloads. Run-to-run noise here is a few percent,
so it is the tool for before/after numbers of one optimisation. Workload (d)
gets a fresh token cache before each timed round and a different RS256 token
for every request of it, so each request pays a signature check, as in run.py.

    python bench/pipeline_cost.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import jwt
from aiohttp import streams, web
from aiohttp.test_utils import make_mocked_request

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench

from sidecar import logs
from sidecar.app import event_loop_policy, settle_garbage_collector
from sidecar.config import load_rules
from sidecar.handler import Pipeline
from sidecar.metrics import Metrics
from sidecar.reload import RulesHolder
from sidecar.tokens import TokenVerifier
from sidecar.upstream import Answer, Origin

HEADERS = [("Content-Type", "application/json"), ("Content-Length", "16")]


class InstantPool:
    """The upstream pool's interface, answering like the benchmark's nginx at once."""

    def __init__(self, url: str, limit: int) -> None:
        self.url, self.limit, self.origin = url, limit, Origin.parse(url)
        self.idle_seconds = 2.0
        self.ca_pem: bytes | None = None

    async def send(
        self, head: bytes, body: bytes, timeout: float, *, head_request: bool, max_answer: int
    ) -> Answer:
        if b"/batch" in head[:64]:
            return Answer(200, HEADERS, bench.BATCH_RESULTS.encode())
        return Answer(200, HEADERS, b'{"success":true}')

    def close(self) -> None:
        pass


def request(loop: asyncio.AbstractEventLoop, workload: bench.Workload, token: str) -> web.Request:
    body = json.dumps(workload.body).encode()
    payload = streams.StreamReader(_Protocol(), 2**16, loop=loop)
    payload.feed_data(body)
    payload.feed_eof()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body)),
               **workload.headers}  # fmt: skip
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return make_mocked_request("POST", workload.path, headers, payload=payload, loop=loop)


class _Protocol:
    _reading_paused = False

    def pause_reading(self) -> None: ...
    def resume_reading(self, resume_parser: bool = True) -> None: ...


ROUND = 500  # requests per timed round


async def measure(
    pipeline: Pipeline, workload: bench.Workload, tokens: list[str], seconds: float
) -> float:
    """The best round's CPU time per request; request i of a round sends tokens[i % n]."""
    loop = asyncio.get_running_loop()
    for item in [
        request(loop, workload, tokens[i % len(tokens)]) for i in range(200)
    ]:  # warm caches: token cache, verdict memo, metric children
        response = await pipeline.handle(item)
        assert response.status == 200, (response.status, response.body)
    best = float("inf")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        batch = [request(loop, workload, tokens[i % len(tokens)]) for i in range(ROUND)]
        if len(tokens) >= ROUND:  # every token new to the cache: a signature check each
            pipeline.verifier = TokenVerifier()
        statuses = []
        started = time.process_time()
        for item in batch:
            statuses.append((await pipeline.handle(item)).status)
        best = min(best, (time.process_time() - started) / len(batch))
        assert statuses == [200] * len(batch), set(statuses)
    return best * 1e6


async def main(seconds: float) -> None:
    directory = Path(tempfile.mkdtemp(prefix="trackgate-cost-"))
    rs256 = bench.rs256_tokens(ROUND, directory).read_text().split()
    rules_path = bench.trackgate_rules(directory, 1, 2, 3)
    holder = RulesHolder()
    holder.current = load_rules(rules_path, {"BENCH_HS256": bench.HS256_SECRET})
    upstream = holder.current.server.upstream
    pool = InstantPool(upstream.url, upstream.max_connections)
    pipeline = Pipeline(holder, pool, TokenVerifier(), Metrics())  # type: ignore[arg-type]
    logs.ACCESS_LOG.stream = io.StringIO()  # the line is built and written, to memory
    settle_garbage_collector()
    hs256 = jwt.encode({"ids": {"registered": "u-1"}, "exp": int(time.time()) + 86400},
                       bench.HS256_SECRET, "HS256", headers={"kid": "hs"})  # fmt: skip
    tokens = {"": [""], "hs256": [hs256], "rs256": rs256}
    for workload in [*bench.WORKLOADS, *bench.BATCHES]:
        cost = await measure(pipeline, workload, tokens[workload.token], seconds)
        logs.ACCESS_LOG.stream = io.StringIO()
        per_command = (
            f"  ({cost / workload.commands:5.1f} per command)" if workload.commands > 1 else ""
        )
        print(
            f"  {workload.name:<10} {cost:7.1f} µs of trackgate's own CPU per request{per_command}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="per workload")
    arguments = parser.parse_args()
    with asyncio.Runner(loop_factory=event_loop_policy().new_event_loop) as runner:
        runner.run(main(arguments.seconds))
