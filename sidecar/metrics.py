"""Every metric of SPEC §6.3, declared in one place.

Label values are bounded: configured stream names (or `_unknown`), reason
codes, configured field names (or `_undefined`). Never a customer id, token or
client-supplied string.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from sidecar.exchange import Exchange
from sidecar.request_head import CloseReason
from sidecar.rules import Rules, SetName

UNDEFINED_NAME = "_undefined"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """The sidecar's metrics, in their own registry.

    With `server.workers` > 1 every worker writes its values to files in
    PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode) and
    `render` aggregates them, whichever worker is scraped.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        r = self.registry
        self.requests = Counter(
            "trackgate_requests", "Tracking requests by outcome.",
            ["stream", "dialect", "outcome"], registry=r,
        )  # fmt: skip
        self.rejections = Counter(
            "trackgate_rejections", "Rejected requests and commands by reason.",
            ["stream", "reason"], registry=r,
        )  # fmt: skip
        self.commands = Counter(
            "trackgate_commands", "Commands by outcome.", ["stream", "outcome"], registry=r
        )
        self.stripped = Counter(
            "trackgate_stripped", "Names stripped from forwarded commands.",
            ["stream", "set", "name"], registry=r,
        )  # fmt: skip
        self.jwt_verifications = Counter(
            "trackgate_jwt_verifications", "JWT verifications by result.",
            ["stream", "result"], registry=r,
        )  # fmt: skip
        self.would_reject = Counter(
            "trackgate_would_reject", "What enforce mode would have rejected (monitor mode).",
            ["stream", "reason"], registry=r,
        )  # fmt: skip
        self.would_strip = Counter(
            "trackgate_would_strip", "What mode: enforce would have stripped (mode: monitor).",
            ["stream", "set", "name"], registry=r,
        )  # fmt: skip
        self.request_duration = Histogram(
            "trackgate_request_duration_seconds", "Time from request to response.",
            ["stream"], buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.upstream_duration = Histogram(
            "trackgate_upstream_duration_seconds", "Time the collector took to answer.",
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.config_reloads = Counter(
            "trackgate_config_reloads", "Rules reloads by result.", ["result"], registry=r
        )
        self.config_last_success = Gauge(
            "trackgate_config_last_reload_success_timestamp_seconds",
            "When the active rules were loaded.", registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.config_info = Gauge(
            "trackgate_config_info", "The active rules version (1; 0 for replaced ones).",
            ["version"], registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.in_flight = 0  # requests being handled by this process
        self._in_flight = Gauge(
            "trackgate_in_flight_requests", "Requests being handled.",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.open_connections = 0  # client connections of the tracking listener
        self._open_connections = Gauge(
            "trackgate_open_connections", "Open client connections of the tracking listener.",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        if not self.multiprocess_dir:  # read when scraped: nothing to do per request
            self._in_flight.set_function(lambda: self.in_flight)
            self._open_connections.set_function(lambda: self.open_connections)
        self.connections_closed = Counter(
            "trackgate_connections_closed", "Client connections trackgate closed, by reason.",
            ["reason"], registry=r,
        )  # fmt: skip
        self._closed = {reason: self.connections_closed.labels(reason) for reason in CloseReason}
        self.jwks_fetches = Counter(
            "trackgate_jwks_fetches", "Remote key set fetches by result.",
            ["stream", "result"], registry=r,
        )  # fmt: skip
        self.jwks_key_count = Gauge(
            "trackgate_jwks_keys", "Keys in a stream's current remote key set.",
            ["stream"], registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.jwks_last_success = Gauge(
            "trackgate_jwks_last_success_timestamp_seconds",
            "When a stream's remote key set was last fetched successfully.",
            ["stream"], registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self._streams: dict[str, _StreamSeries] = {}  # per-request series, by stream label

    def started(self) -> None:
        """A request began."""
        self.in_flight += 1
        if self.multiprocess_dir:
            self._in_flight.inc()

    def finished(self) -> None:
        """A request ended (before `observe`)."""
        self.in_flight -= 1
        if self.multiprocess_dir:
            self._in_flight.dec()

    def connection_opened(self) -> None:
        """A client connection was accepted."""
        self.open_connections += 1
        if self.multiprocess_dir:
            self._open_connections.inc()

    def connection_ended(self, reason: CloseReason | None) -> None:
        """A client connection closed; `reason` when trackgate closed it for one."""
        self.open_connections -= 1
        if self.multiprocess_dir:
            self._open_connections.dec()
        if reason is not None:
            self._closed[reason].inc()

    def observe(self, exchange: Exchange) -> None:
        """Record one finished request."""
        stream = exchange.stream_name
        series = self._streams.get(stream)
        if series is None:
            series = self._streams[stream] = _StreamSeries(self, stream)
        key = (exchange.dialect, exchange.outcome)
        found = series.requests.get(key)
        if found is None:
            dialect = key[0] or "_unknown"
            found = series.requests[key] = self.requests.labels(stream, dialect, key[1])
        found.inc()
        reason = exchange.reason
        if reason is not None:
            series.child(self.rejections, series.rejections, reason).inc()
            rejected = exchange.commands_rejected
        else:
            rejected = len(exchange.command_reasons)
            for reason in exchange.command_reasons:
                series.child(self.rejections, series.rejections, reason).inc()
        if rejected:
            series.rejected.inc(rejected)
        if exchange.commands_forwarded:
            series.forwarded.inc(exchange.commands_forwarded)
        if exchange.stripped:
            series.count_names(self.stripped, series.stripped, exchange, exchange.stripped)
        if exchange.would_strip:
            series.count_names(self.would_strip, series.would_strip, exchange, exchange.would_strip)
        if exchange.token_result is not None:
            series.child(self.jwt_verifications, series.jwt, exchange.token_result).inc()
        for reason in exchange.would_reject:
            series.child(self.would_reject, series.would_reject, reason).inc()
        series.duration.observe(time.monotonic() - exchange.started)
        if exchange.upstream_seconds is not None:
            self.upstream_duration.observe(exchange.upstream_seconds)

    def rules_loaded(self, rules: Rules, previous: Rules | None) -> None:
        """A rules version became active."""
        self.config_reloads.labels("success").inc()
        if previous is not None and previous.version != rules.version:
            if self.multiprocess_dir:  # other workers' files keep the label: zero it
                self.config_info.labels(previous.version).set(0)
            else:
                self.config_info.remove(previous.version)
        self.config_info.labels(rules.version).set(1)
        self.config_last_success.set(time.time())

    def jwks_fetched(self, stream: str, result: str) -> None:
        """A remote key set fetch ended with `result`."""
        self.jwks_fetches.labels(stream, result).inc()

    def jwks_keys(self, stream: str, count: int) -> None:
        """A stream's remote key set now holds `count` keys."""
        self.jwks_key_count.labels(stream).set(count)

    def jwks_succeeded(self, stream: str, timestamp: float) -> None:
        """A stream's remote key set was fetched at `timestamp`."""
        self.jwks_last_success.labels(stream).set(timestamp)

    def jwks_forget(self, stream: str) -> None:
        """A stream no longer has a remote key source: its gauges go (with several
        workers, other workers' files keep the label: it is zeroed instead)."""
        for gauge in (self.jwks_key_count, self.jwks_last_success):
            if self.multiprocess_dir:
                gauge.labels(stream).set(0)
                continue
            with contextlib.suppress(KeyError):
                gauge.remove(stream)

    def reload_failed(self) -> None:
        """A new rules version was refused; the old one stays."""
        self.config_reloads.labels("failure").inc()

    def render(self) -> bytes:
        """The Prometheus text exposition (of all workers, with several)."""
        if not self.multiprocess_dir:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


class _StreamSeries:
    """One stream's children of the per-request metrics, each resolved by `labels()`
    once and then found by a dict lookup (label values are bounded, so are these)."""

    __slots__ = (
        "duration",
        "forwarded",
        "jwt",
        "rejected",
        "rejections",
        "requests",
        "stream",
        "stripped",
        "would_reject",
        "would_strip",
    )

    def __init__(self, metrics: Metrics, stream: str) -> None:
        self.stream = stream
        self.duration: Any = metrics.request_duration.labels(stream)
        self.forwarded: Any = metrics.commands.labels(stream, "forwarded")
        self.rejected: Any = metrics.commands.labels(stream, "rejected")
        self.requests: dict[tuple[str, str], Any] = {}  # (dialect, outcome) → child
        self.rejections: dict[Any, Any] = {}  # reason → child
        self.jwt: dict[Any, Any] = {}  # token result → child
        self.would_reject: dict[Any, Any] = {}
        self.stripped: dict[Any, Any] = {}  # (set, name label) → child
        self.would_strip: dict[Any, Any] = {}

    def child(self, metric: Any, children: dict[Any, Any], label: str) -> Any:
        """`metric.labels(stream, label)`, remembered in `children`."""
        found = children.get(label)
        if found is None:
            found = children[label] = metric.labels(self.stream, label)
        return found

    def count_names(
        self,
        metric: Any,
        children: dict[Any, Any],
        exchange: Exchange,
        names: Mapping[tuple[SetName, str], int],
    ) -> None:
        """Counts stripped (or would-be stripped) names, each under its bounded label."""
        for (set_name, name), count in names.items():
            key = (set_name, _bounded(exchange, set_name, name))
            found = children.get(key)
            if found is None:
                found = children[key] = metric.labels(self.stream, *key)
            found.inc(count)


def _bounded(exchange: Exchange, set_name: SetName, name: str) -> str:
    """A field name as a label: listed in the stream's rules, else `_undefined`."""
    stream = exchange.stream
    listed = stream is not None and name in stream.permissions.of(set_name).listed
    return name if listed else UNDEFINED_NAME
