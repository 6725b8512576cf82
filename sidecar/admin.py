"""The admin listener (SPEC §6.2): /metrics, /healthz, /readyz, /config."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from sidecar.keys.remote import RemoteKeys
from sidecar.metrics import Metrics
from sidecar.reload import RESTART_ONLY, RulesHolder
from sidecar.response import without_banner
from sidecar.rules import Access, Rules, Server, SetName, Stream

HOLDER = web.AppKey("holder", RulesHolder)
METRICS = web.AppKey("metrics", Metrics)


def admin_app(holder: RulesHolder, metrics: Metrics) -> web.Application:
    app = web.Application(middlewares=[without_banner])  # no `Server` header (SPEC §8)
    app[HOLDER] = holder
    app[METRICS] = metrics
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/config", _config)
    return app


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    """200 when rules are loaded and the process is not draining; the detail says why not."""
    holder = request.app[HOLDER]
    detail = {
        "ready": holder.ready,
        "draining": holder.draining,
        "version": holder.current.version if holder.current else None,
        "loaded_at": holder.loaded_at,
        "last_reload_error": holder.last_error,
        "key_sources": key_sources(holder.current) if holder.current else {},
    }
    return web.json_response(detail, status=200 if holder.ready else 503)


def key_sources(rules: Rules) -> dict[str, Any]:
    """Each remote key source's state, by stream: it never changes readiness (a stream
    without keys answers `keys_unavailable`; the rest of the rules still serve)."""
    states = {}
    for stream in rules.streams:
        source = stream.jwt.keys if stream.jwt else None
        if isinstance(source, RemoteKeys) and source.live is not None:
            states[stream.name] = source.live.describe()
    return states


async def _config(request: web.Request) -> web.Response:
    holder = request.app[HOLDER]
    if holder.current is None:
        return web.json_response({"error": "no rules are loaded"}, status=503)
    return web.json_response(describe(holder.current, holder.loaded_at, holder.started))


def describe(
    rules: Rules, loaded_at: float | None, started: Server | None = None
) -> dict[str, Any]:
    """The active rules without secret or key material: ids, algorithms, digest prefixes.
    The listeners and workers are the ones in force (`started`: set up at start); a
    newer value the rules hold waits for a restart and shows in `restart_pending`."""
    server = rules.server
    active = started or server
    return {
        "version": rules.version,
        "loaded_at": loaded_at,
        "restart_pending": {
            f"server.{name}": _setting(getattr(server, name))
            for name in RESTART_ONLY
            if getattr(server, name) != getattr(active, name)
        },
        "server": {
            "listen": _setting(active.listen),
            "admin_listen": _setting(active.admin_listen),
            "workers": active.workers,
            "max_body_bytes": server.max_body_bytes,
            "reload_interval_seconds": server.reload_interval_seconds,
            "shutdown_delay_seconds": server.shutdown_delay_seconds,
            "upstream": {
                "url": server.upstream.url,
                "timeout_seconds": server.upstream.timeout_seconds,
                "max_connections": server.upstream.max_connections,
            },
        },
        "streams": [_stream(s) for s in rules.streams],
    }


def _setting(value: object) -> object:
    """A `host:port` pair as written in the rules; anything else as it is."""
    return ":".join(map(str, value)) if isinstance(value, tuple) else value


def _stream(stream: Stream) -> dict[str, Any]:
    described: dict[str, Any] = {
        "name": stream.name,
        "id": stream.id,
        "type": stream.type.value,
        "dialect": stream.dialect,
        "mode": stream.mode.value,
        "debug_headers": stream.debug_headers,
    }
    for set_name in SetName:
        permission_set = stream.permissions.of(set_name)
        described[set_name.value] = {
            "default": permission_set.default.value,
            **{a.value: list(permission_set.names(a)) for a in Access},
        }
    if stream.cors:
        described["cors"] = {"allowed_origins": sorted(stream.cors.allowed_origins)}
    if stream.secrets:
        described["secrets"] = [
            {"id": s.id, "sha256_prefix": s.digest.hex()[:8]} for s in stream.secrets
        ]
    if stream.jwt:
        described["jwt"] = {
            "enforcement": stream.jwt.enforcement.value,
            "leeway_seconds": stream.jwt.leeway_seconds,
            "max_lifetime_days": stream.jwt.max_lifetime_seconds / 86_400,
            "key_source": stream.jwt.keys.kind,
            "keys": [
                {"kid": k.kid, "alg": k.alg} for k in stream.jwt.keys.current().by_kid.values()
            ],
            "issuer": stream.jwt.issuer,
            "audiences": sorted(stream.jwt.audiences),
            "subject": (
                {"claim": stream.jwt.subject.claim, "id_type": stream.jwt.subject.id_type}
                if stream.jwt.subject
                else None
            ),
        }
    return described
