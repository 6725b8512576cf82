"""trackgate's benchmark: one machine, one run, every row measured against baselines.

Rows (each with wrk, a fixed duration, several repetitions, medians):
  upstream   nginx answering {"success":true} directly
  nginx      nginx proxy_pass, keep-alive upstream pool, 1 worker  (a proxy hop's limit)
  bare       a bare aiohttp pass-through proxy, 1 process           (this stack's limit)
  trackgate  1 process, on four workloads:
             a) public stream, allowed event, no token
             b) signed-only event, the same valid HS256 JWT every time (cache path)
             c) a 50-command batch with stripping and 10 % rejected commands
             d) signed-only event, a different RS256 JWT every request (cache misses)
             c-segment, c-braze, c-posthog) the same 50 commands as (c) in
             each other dialect's wire format, posthog being a declared dialect
             (bare and bare+json only, no nginx row)
  bare+json  (batches only) bare, plus parsing and re-serialising the body: the
             floor of any proxy that rewrites JSON in this stack
  trackgate-1w / -2w   workload (a) with server.workers 1 and 2 (scaling)
nginx and bare are measured with each workload's request too, so every ratio
compares like with like, and the systems' runs are interleaved (nginx, bare,
trackgate, nginx, …) so that the machine's noisy moments hit them alike. Each
row also gets its latency at 1 connection (the latency a hop adds) and at ~50 %
of its measured capacity, its CPU time per request and its peak RSS.

The proxy under test runs alone on the last CPU; wrk and the upstream nginx
share the others (on one CPU, everything shares it). The scaling rows let the
workers use every CPU.

    python bench/run.py [--duration 5] [--repeat 5] [--connections 50] [--tokens 40000]
                        [--only a,c,c-segment,scaling]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
HS256_SECRET = "bench-hs256-secret-0123456789abcdef"
BATCH_RESULTS = json.dumps({"success": True, "results": [{"success": True}] * 45})
EVENT = {"customer_ids": {"cookie": "c-123"}, "event_type": "page_visit",
         "timestamp": 1700000000.5, "properties": {"path": "/", "title": "Home"}}  # fmt: skip
SIGNED = {
    **EVENT,
    "customer_ids": {"cookie": "c-123", "registered": "u-1"},
    "event_type": "purchase",
}


def batch_body() -> dict[str, Any]:
    """50 commands: 45 view_item with a denied id and property to strip, 5 denied."""
    kept = {"customer_ids": {"cookie": "c-1", "phone_id": "+15550100"}, "event_type": "view_item",
            "timestamp": 1700000000.5, "properties": {"sku": "X-1", "price": 9.5, "card_number": "4111"}}  # fmt: skip
    denied = {**kept, "event_type": "internal_debug"}
    commands = [
        {"name": "customers/events", "data": denied if i % 10 == 9 else kept} for i in range(50)
    ]
    return {"commands": commands}


def segment_batch() -> dict[str, Any]:
    """The same 50 commands in Segment's `/v1/batch`: 45 kept with a property to strip."""

    def message(i: int) -> dict[str, Any]:
        return {"type": "track", "event": "internal_debug" if i % 10 == 9 else "view_item",
                "anonymousId": "c-1", "messageId": f"m-{i}", "timestamp": "2026-12-01T10:00:00.500Z",
                "properties": {"sku": "X-1", "price": 9.5, "card_number": "4111"}}  # fmt: skip

    return {"batch": [message(i) for i in range(50)]}


def braze_batch() -> dict[str, Any]:
    """The same 50 commands as a Braze SDK data flush (`events[]` of custom events)."""

    def event(i: int) -> dict[str, Any]:
        name = "internal_debug" if i % 10 == 9 else "view_item"
        return {"name": "ce", "time": 1700000000.5, "session_id": "s-1",
                "data": {"n": name, "p": {"sku": "X-1", "price": 9.5, "card_number": "4111"}}}  # fmt: skip

    return {"api_key": BRAZE_KEY, "time": 1700000000, "sdk_version": "6.13.0",
            "device_id": "d-1", "events": [event(i) for i in range(50)]}  # fmt: skip


def posthog_batch() -> dict[str, Any]:
    """The same 50 commands as a PostHog `/batch/` (a declared dialect): 45 kept with an
    id (`$anon_distinct_id`) and a property to strip, 5 denied."""
    kept = {"event": "view_item", "distinct_id": "c-1", "timestamp": "2026-01-01T00:00:00Z",
            "properties": {"sku": "X-1", "price": 9.5, "card_number": "4111",
                           "$anon_distinct_id": "+15550100"}}  # fmt: skip
    denied = {**kept, "event": "internal_debug"}
    return {"api_key": POSTHOG_KEY, "batch": [denied if i % 10 == 9 else kept for i in range(50)]}


SEGMENT_KEY = "bench-segment-write-key"
BRAZE_KEY = "bench-braze-api-key"
POSTHOG_KEY = "bench-posthog-api-key"


@dataclass
class Workload:
    name: str
    path: str
    body: dict[str, Any]
    token: str = ""  # "hs256": one token; "rs256": a different token each request
    headers: dict[str, str] = field(default_factory=dict)
    commands: int = 1  # commands per request (CPU per command for batches)


BASIC_SEGMENT = "Basic " + base64.b64encode(f"{SEGMENT_KEY}:".encode()).decode()
WORKLOADS = [
    Workload("a", "/track/u/v1/customers/events?stream_id=bench-web", EVENT),
    Workload("b", "/track/u/v1/customers/events?stream_id=bench-web", SIGNED, "hs256"),
    Workload("c", "/track/u/v1/batch?stream_id=bench-web", batch_body(), commands=50),
    Workload("d", "/track/u/v1/customers/events?stream_id=bench-web", SIGNED, "rs256"),
]
# Every other dialect's 50-command batch (the same commands, each in its own wire
# format): CPU per command next to bare+json's on the same bytes.
BATCHES = [
    Workload(
        "c-segment",
        "/v1/batch",
        segment_batch(),
        headers={"Authorization": BASIC_SEGMENT},
        commands=50,
    ),
    Workload(
        "c-braze",
        "/api/v3/data/",
        braze_batch(),
        headers={"X-Braze-Api-Key": BRAZE_KEY},
        commands=50,
    ),
    Workload("c-posthog", "/batch/", posthog_batch(), commands=50),
]


@dataclass
class Row:
    system: str
    workload: str
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    one_conn_p50_ms: float = 0.0
    one_conn_p99_ms: float = 0.0
    half_load_rps: float = 0.0
    half_load_p50_ms: float = 0.0
    half_load_p99_ms: float = 0.0
    peak_rss_mb: float = 0.0
    cpu_us_per_request: float = 0.0  # the proxy's own CPU time (user + system) per request
    errors: int = 0
    runs: list[dict[str, Any]] = field(default_factory=list)


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing listens on and no earlier call returned (the kernel may hand the
    same free port out twice; a second server would then fail to bind and the first
    one answer in its place)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def peak_rss_mb(pids: list[int]) -> float:
    """The largest VmHWM (peak resident set) among `pids`, in MB."""
    peak = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            continue
    return peak / 1024


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time consumed so far by `pids` (from /proc/PID/stat)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


ALL_CPUS = frozenset(os.sched_getaffinity(0))
# The proxy under test gets a core of its own; wrk and the upstream nginx share
# the others, so the load generator never steals the proxy's CPU (and every
# proxy, nginx, bare or trackgate, runs under the same conditions).
PROXY_CPUS = frozenset({max(ALL_CPUS)}) if len(ALL_CPUS) > 1 else ALL_CPUS
LOAD_CPUS = ALL_CPUS - PROXY_CPUS or ALL_CPUS


@contextmanager
def process(
    args: list[str],
    port: int,
    env: dict[str, str] | None = None,
    cpus: frozenset[int] = LOAD_CPUS,
) -> Iterator[subprocess.Popen[bytes]]:
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)  # inherited by the process and any it forks
    try:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, cwd=ROOT)  # fmt: skip
    finally:
        os.sched_setaffinity(0, own)
    try:
        wait_port(port)
        if proc.poll() is not None:  # someone else answers on its port: measure nothing
            raise RuntimeError(f"{args[0]} exited ({proc.returncode}) but port {port} answers")
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def nginx_conf(directory: Path, port: int, body: str) -> Path:
    conf = directory / f"nginx-{port}.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {directory}/nginx-{port}.pid;
error_log {directory}/nginx-{port}.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {directory}/body-{port};
  proxy_temp_path {directory}/proxy-{port};
  fastcgi_temp_path {directory}/fcgi-{port};
  uwsgi_temp_path {directory}/uwsgi-{port};
  scgi_temp_path {directory}/scgi-{port};
  {body}
}}
""")
    return conf


def upstream_body(port: int) -> str:
    return f"""server {{
    listen 127.0.0.1:{port} reuseport;
    location = /track/u/v1/batch {{ default_type application/json; return 200 '{BATCH_RESULTS}'; }}
    location / {{ default_type application/json; return 200 '{{"success":true}}'; }}
  }}"""


def proxy_body(port: int, upstream: int) -> str:
    return f"""upstream collector {{ server 127.0.0.1:{upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://collector;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}"""


def trackgate_rules(
    directory: Path,
    port: int,
    admin: int,
    upstream: int,
    *,
    workers: int = 1,
    name: str = "rules.yaml",
) -> Path:
    path = directory / name
    path.write_text(f"""
version: 1
server:
  listen: "127.0.0.1:{port}"
  admin_listen: "127.0.0.1:{admin}"
  shutdown_delay_seconds: 0
  workers: {workers}
  upstream: {{url: "http://127.0.0.1:{upstream}", timeout_seconds: 10, max_connections: 256}}
streams:
  - name: web
    id: bench-web
    type: public
    jwt:
      enforcement: enforce
      keys:
        - {{kid: hs, alg: HS256, secret: {{env: BENCH_HS256}}}}
        - {{kid: rs, alg: RS256, public_key: {{file: {directory / "rs256.pem"}}}}}
    customer_ids: {{default: deny, allow: [cookie], signed_only: [registered], deny: [phone_id]}}
    event_types: {{default: deny, allow: [page_visit, view_item], signed_only: [purchase]}}
    customer_properties: {{default: deny, allow: [first_name]}}
    event_properties: {{default: allow, deny: [card_number]}}
  - name: segment
    id: {SEGMENT_KEY}
    type: public
    dialect: segment
    customer_ids: {{default: deny, allow: [anonymous_id]}}
    event_types: {{default: deny, allow: [view_item]}}
    event_properties: {{default: allow, deny: [card_number]}}
  - name: braze
    id: {BRAZE_KEY}
    type: public
    dialect: braze
    customer_ids: {{default: deny, allow: [device_id]}}
    event_types: {{default: deny, allow: [view_item]}}
    event_properties: {{default: allow, deny: [card_number]}}
  - name: posthog
    id: {POSTHOG_KEY}
    type: public
    dialect: posthog
    customer_ids: {{default: deny, allow: [distinct_id], deny: [anon_distinct_id]}}
    event_types: {{default: deny, allow: [view_item]}}
    event_properties: {{default: allow, deny: [card_number]}}
""")
    return path


def rs256_tokens(count: int, directory: Path) -> Path:
    """`count` distinct RS256 tokens (cached in bench/results with their key)."""
    RESULTS.mkdir(exist_ok=True)
    key_file, tokens_file = RESULTS / "rs256.key", RESULTS / f"tokens-rs256-{count}.txt"
    if key_file.exists():
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))  # fmt: skip
        tokens_file.unlink(missing_ok=True)
    (directory / "rs256.pem").write_bytes(key.public_key().public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    if not tokens_file.exists():
        print(f"minting {count} RS256 tokens (cached for later runs)...", flush=True)
        exp = int(time.time()) + 80 * 86400
        tokens = [jwt.encode({"ids": {"registered": "u-1"}, "exp": exp, "n": n}, key, "RS256",  # type: ignore[arg-type]
                             headers={"kid": "rs"}) for n in range(count)]  # fmt: skip
        tokens_file.write_text("\n".join(tokens) + "\n")
    return tokens_file


class Bench:
    def __init__(self, args: argparse.Namespace, directory: Path) -> None:
        self.args = args
        self.directory = directory
        self.token_offset = 0
        self.tokens_file = rs256_tokens(args.tokens, directory)
        self.token_count = sum(1 for _ in self.tokens_file.open())
        hs256 = jwt.encode({"ids": {"registered": "u-1"}, "exp": int(time.time()) + 80 * 86400},
                           HS256_SECRET, "HS256", headers={"kid": "hs"})  # fmt: skip
        (directory / "hs256.txt").write_text(hs256 + "\n")

    def wrk(
        self, url: str, workload: Workload, connections: int, seconds: float, delay_ms: float = 0
    ) -> dict[str, Any]:
        body = self.directory / f"body-{workload.name}.json"
        body.write_text(json.dumps(workload.body))
        tokens = {"hs256": str(self.directory / "hs256.txt"), "rs256": str(self.tokens_file)}.get(
            workload.token, ""
        )
        headers = "".join(f"{name}: {value}\n" for name, value in workload.headers.items())
        env = {**os.environ, "BENCH_PATH": workload.path, "BENCH_BODY": str(body), "BENCH_TOKENS": tokens,
               "BENCH_HEADERS": headers,
               "BENCH_DELAY_MS": str(delay_ms), "BENCH_OFFSET": str(self.token_offset)}  # fmt: skip
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(BENCH / "request.lua"), url],
            capture_output=True, text=True, env=env, check=True,
        )  # fmt: skip
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        if workload.token == "rs256":
            self.token_offset += result["requests"]
        return result

    def compare(self, workload: Workload, systems: dict[str, tuple[str, list[int]]]) -> list[Row]:
        """Measure `systems` (name → url, pids) on one workload, their runs interleaved
        (A, B, C, A, B, C, …) so that a noisy moment of the machine hits every system
        alike and the ratios compare like with like."""
        args = self.args
        rows = {name: Row(name, workload.name) for name in systems}
        for url, _ in systems.values():
            self.wrk(url, workload, args.connections, 1)  # warm-up
        for _ in range(args.repeat):
            for name, (url, pids) in systems.items():
                before = cpu_seconds(pids)
                run = self.wrk(url, workload, args.connections, args.duration)
                run["cpu_seconds"] = cpu_seconds(pids) - before
                rows[name].runs.append(run)
        for name, (url, pids) in systems.items():
            row = rows[name]
            runs = row.runs
            row.rps = statistics.median(r["requests"] / (r["duration_us"] / 1e6) for r in runs)
            row.p50_ms = statistics.median(r["p50_us"] for r in runs) / 1000
            row.p99_ms = statistics.median(r["p99_us"] for r in runs) / 1000
            row.cpu_us_per_request = statistics.median(
                1e6 * r["cpu_seconds"] / max(r["requests"], 1) for r in runs
            )
            row.errors = sum(r["errors"] + r["status_errors"] for r in runs)
            single = self.wrk(url, workload, 1, max(1.0, args.duration / 2))
            row.one_conn_p50_ms = single["p50_us"] / 1000
            row.one_conn_p99_ms = single["p99_us"] / 1000
            paced_connections = 10
            delay = 1000 * paced_connections / max(row.rps * 0.5, 1)
            half = self.wrk(
                url, workload, paced_connections, max(1.0, args.duration / 2), delay_ms=delay
            )
            row.half_load_rps = half["requests"] / (half["duration_us"] / 1e6)
            row.half_load_p50_ms, row.half_load_p99_ms = (
                half["p50_us"] / 1000,
                half["p99_us"] / 1000,
            )
            row.peak_rss_mb = peak_rss_mb(pids)
            print(f"  {name:<12} {workload.name}  {row.rps:9.0f} req/s  p50 {row.p50_ms:6.2f} ms  "
                  f"p99 {row.p99_ms:6.2f} ms  cpu {row.cpu_us_per_request:6.0f} us/req  "
                  f"rss {row.peak_rss_mb:5.1f} MB  errors {row.errors}", flush=True)  # fmt: skip
        return list(rows.values())


def selected(args: argparse.Namespace) -> list[Workload]:
    """The workloads `--only` names (all of them by default)."""
    return [w for w in [*WORKLOADS, *BATCHES] if not args.only or w.name in args.only]


def run(args: argparse.Namespace) -> dict[str, Any]:
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} is not installed; `make bench` installs nginx and wrk with "
                     "apt-get when it runs as root — install them and retry")  # fmt: skip
    os.sched_setaffinity(0, LOAD_CPUS)  # wrk runs here too
    print(f"proxies on CPU {sorted(PROXY_CPUS)}, wrk and the upstream on CPU {sorted(LOAD_CPUS)}")
    directory = Path(tempfile.mkdtemp(prefix="trackgate-bench-"))
    bench = Bench(args, directory)
    rows: list[Row] = []
    up = free_port()
    env = {"BENCH_HS256": HS256_SECRET}
    with process(
        ["nginx", "-c", str(nginx_conf(directory, up, upstream_body(up)))], up
    ) as upstream:
        upstream_url = f"http://127.0.0.1:{up}"
        nginx_pids = children(upstream.pid)
        rows += bench.compare(WORKLOADS[0], {"upstream": (upstream_url, nginx_pids)})
        proxy_port = free_port()
        proxy_conf = nginx_conf(directory, proxy_port, proxy_body(proxy_port, up))
        with process(["nginx", "-c", str(proxy_conf)], proxy_port, cpus=PROXY_CPUS) as proxy:
            nginx = (f"http://127.0.0.1:{proxy_port}", children(proxy.pid))
            for workload in selected(args):  # fresh bare and trackgate processes per workload
                bare_port, port, admin = free_port(), free_port(), free_port()
                rules = trackgate_rules(directory, port, admin, up)
                bare_command = [
                    sys.executable,
                    str(BENCH / "bare_proxy.py"),
                    str(bare_port),
                    upstream_url,
                ]
                command = [sys.executable, "-m", "sidecar", "serve", "--config", str(rules)]
                json_port = free_port()
                json_command = [*bare_command[:2], str(json_port), upstream_url, "--json"]
                with (
                    process(bare_command, bare_port, cpus=PROXY_CPUS) as bare,
                    process(command, port, env, PROXY_CPUS) as tg,
                    process(json_command, json_port, cpus=PROXY_CPUS) as bare_json,
                ):
                    systems = {
                        "nginx": nginx,
                        "bare": (f"http://127.0.0.1:{bare_port}", [bare.pid]),
                        "trackgate": (f"http://127.0.0.1:{port}", [tg.pid]),
                    }
                    if workload in BATCHES:  # compared with bare and bare+json only
                        del systems["nginx"]
                    if workload.commands > 1:  # the floor of any JSON-rewriting proxy
                        systems["bare+json"] = (f"http://127.0.0.1:{json_port}", [bare_json.pid])
                    rows += bench.compare(workload, systems)
        # scaling: workload (a), one worker against two (SO_REUSEPORT), interleaved;
        # the workers may use every core (wrk shares one of them)
        if args.only and "scaling" not in args.only:
            shutil.rmtree(directory, ignore_errors=True)
            return report(rows, args)
        port, admin = free_port(), free_port()
        one = trackgate_rules(directory, port, admin, up)
        port2, admin2 = free_port(), free_port()
        two = trackgate_rules(directory, port2, admin2, up, workers=2, name="rules-2w.yaml")
        command = [sys.executable, "-m", "sidecar", "serve", "--config"]
        with (
            process([*command, str(one)], port, env, ALL_CPUS) as single,
            process([*command, str(two)], port2, env, ALL_CPUS) as supervisor,
        ):
            time.sleep(1.5)  # both workers listening
            scaling = bench.compare(WORKLOADS[0], {
                "trackgate-1w": (f"http://127.0.0.1:{port}", [single.pid]),
                "trackgate-2w": (f"http://127.0.0.1:{port2}", children(supervisor.pid)),
            })  # fmt: skip
            rows += scaling
    shutil.rmtree(directory, ignore_errors=True)
    return report(rows, args)


def report(rows: list[Row], args: argparse.Namespace) -> dict[str, Any]:
    def find(system: str, workload: str) -> Row:
        return next(r for r in rows if r.system == system and r.workload == workload)

    print("\n| row | req/s | p50 ms | p99 ms | 1-conn p50 ms | at ~50 % load: req/s, p50, p99 ms "
          "| CPU µs/req | peak RSS MB |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    for r in rows:
        label = r.system if r.system == "upstream" else f"{r.system} ({r.workload})"
        print(f"| {label} | {r.rps:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.one_conn_p50_ms:.2f} | "
              f"{r.half_load_rps:.0f}, {r.half_load_p50_ms:.2f}, {r.half_load_p99_ms:.2f} | "
              f"{r.cpu_us_per_request:.0f} | {r.peak_rss_mb:.1f} |")  # fmt: skip
    ratios: dict[str, dict[str, float]] = {}
    measured = {r.workload for r in rows if r.system == "trackgate"}
    print("\n| workload | trackgate/bare | trackgate/nginx | CPU per request, bare/trackgate "
          "| target (trackgate/bare) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    targets = {"a": 0.95, "b": 0.95, "c": 0.5, "d": 0.65}
    for workload in (w for w in WORKLOADS if w.name in measured):
        tg, bare = find("trackgate", workload.name), find("bare", workload.name)
        nginx = find("nginx", workload.name)
        cpu = bare.cpu_us_per_request / max(tg.cpu_us_per_request, 1e-9)
        ratios[workload.name] = {
            "trackgate/bare": tg.rps / bare.rps,
            "trackgate/nginx": tg.rps / nginx.rps,
            "cpu_bare/trackgate": cpu,
        }
        target = targets[workload.name]
        met = "met" if tg.rps / bare.rps >= target else "NOT met"
        print(f"| {workload.name} | {tg.rps / bare.rps:.2f} | {tg.rps / nginx.rps:.3f} | {cpu:.2f} "
              f"| ≥ {target:.2f} {met} |")  # fmt: skip
    batches = [w for w in [*WORKLOADS, *BATCHES] if w.commands > 1 and w.name in measured]
    if batches:
        print("\n| batch of 50 | trackgate/bare | bare+json/bare | CPU µs per command: trackgate "
              "| bare+json | trackgate/bare+json CPU |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|")
    for workload in batches:
        tg, bare = find("trackgate", workload.name), find("bare", workload.name)
        floor = find("bare+json", workload.name)
        per_command = tg.cpu_us_per_request / workload.commands
        floor_per_command = floor.cpu_us_per_request / workload.commands
        ratios.setdefault(workload.name, {}).update({
            "trackgate/bare": tg.rps / bare.rps,
            "bare+json/bare": floor.rps / bare.rps,
            "cpu_us_per_command": per_command,
            "bare+json_cpu_us_per_command": floor_per_command,
            "cpu_trackgate/bare+json": tg.cpu_us_per_request / floor.cpu_us_per_request,
        })  # fmt: skip
        print(f"| {workload.name} | {tg.rps / bare.rps:.2f} | {floor.rps / bare.rps:.2f} | "
              f"{per_command:.1f} | {floor_per_command:.1f} | "
              f"{tg.cpu_us_per_request / floor.cpu_us_per_request:.2f} (target ≤ 2) |")  # fmt: skip
    if "trackgate-2w" in {r.system for r in rows}:
        one, two = find("trackgate-1w", "a"), find("trackgate-2w", "a")
        print(f"\nscaling, workload a: 2 workers {two.rps:.0f} req/s = {two.rps / one.rps:.2f}x "
              f"one worker ({one.rps:.0f} req/s), measured interleaved")  # fmt: skip
        ratios["workers_2_over_1"] = {"a": two.rps / one.rps}
    peak = max(r.peak_rss_mb for r in rows if r.system.startswith("trackgate"))
    print(f"peak RSS of one trackgate process: {peak:.1f} MB (target ≤ 100 MB)")
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "settings": vars(args),
        "rows": [asdict(r) for r in rows],
        "ratios": ratios,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out.relative_to(ROOT)}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5, help="seconds per measured run")
    parser.add_argument("--repeat", type=int, default=5, help="measured runs per row (median)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=40000, help="distinct RS256 tokens for (d)")
    parser.add_argument("--only", type=lambda v: v.split(","), default=[],
                        help="comma-separated workloads (a,b,c,d,c-segment,c-braze,c-posthog) and/or "
                        "'scaling'; all by default")  # fmt: skip
    run(parser.parse_args())


if __name__ == "__main__":
    main()
