"""`trackgate demo`: a demo collector on loopback with the sidecar in front of it."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from sidecar.app import serve
from sidecar.errors import StartupError
from sidecar.rules import Rules, StreamType

DEMO_SECRET = "demo-backend-secret"  # its sha256 is in config/demo.yaml


async def run_demo(path: Path, rules: Rules) -> None:
    """Start the collector, print curl commands, run the sidecar until Ctrl-C."""
    upstream = urlsplit(rules.server.upstream.url)
    runner = web.AppRunner(collector_app(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, upstream.hostname, upstream.port).start()
    except OSError as error:
        await runner.cleanup()
        setting = "server.upstream.url (the demo collector)"
        host, port = upstream.hostname or "", upstream.port or 80
        raise StartupError.cannot_listen(setting, host, port, error) from None
    print(f"demo collector listening on {rules.server.upstream.url}")
    print(curl_commands(rules, path))
    try:
        await serve(path, rules)
    finally:
        await runner.cleanup()


def collector_app() -> web.Application:
    """A collector that prints what it receives and accepts everything."""
    app = web.Application()
    app.router.add_post("/{tail:.*}", _collect)
    return app


async def _collect(request: web.Request) -> web.Response:
    body = await request.read()
    print(f"  collector received {request.method} {request.path_qs}\n    {body.decode()}")
    document = json.loads(body or b"{}")
    if isinstance(document, dict) and isinstance(document.get("commands"), list):
        results = [{"success": True} for _ in document["commands"]]
        return web.json_response({"success": True, "results": results})
    return web.json_response({"success": True})


def curl_commands(rules: Rules, path: Path) -> str:
    """Ready-to-paste commands showing each outcome against the demo rules."""
    host, port = rules.server.listen
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"  # noqa: S104
    web_stream = next(s for s in rules.streams if s.type is StreamType.PUBLIC)
    backend = next(s for s in rules.streams if s.type is StreamType.PRIVATE)
    events = f"{base}/track/u/v1/customers/events?stream_id="
    event = (
        '{"customer_ids":{"cookie":"c-123"},"event_type":"page_visit","properties":{"path":"/"}}'
    )
    stripped = '{"customer_ids":{"cookie":"c-123","phone_id":"+1555"},"event_type":"view_item"}'
    denied = '{"customer_ids":{"cookie":"c-123"},"event_type":"internal_debug"}'
    private = '{"customer_ids":{"registered":"u-1"},"event_type":"purchase"}'
    post = "curl -si -H 'Content-Type: application/json'"
    return "\n".join(
        [
            "",
            "Try these in another terminal:",
            "",
            "# 1. an allowed event: forwarded, 200",
            f"{post} '{events}{web_stream.id}' -d '{event}'",
            "# 2. a denied identifier (phone_id): stripped, the collector gets only the cookie",
            f"{post} '{events}{web_stream.id}' -d '{stripped}'",
            "# 3. a denied event type: 403 event_type_denied, nothing forwarded",
            f"{post} '{events}{web_stream.id}' -d '{denied}'",
            "# 4a. the private stream without its secret: 401 secret_missing",
            f"{post} '{events}{backend.id}' -d '{private}'",
            "# 4b. ... and with it: 200",
            f"{post} -H 'X-Stream-Secret: {DEMO_SECRET}' '{events}{backend.id}' -d '{private}'",
            "",
            f"Edit {path} while this runs: trackgate reloads it within a second. (Its web",
            "stream starts from `template: public`, which allows view_item and the other",
            "browsing events: to reject one, move it from `allow` to `deny`, e.g.",
            "`event_types: {allow: [page_visit], deny: [view_item]}`.)",
            "Ctrl-C stops the sidecar and the collector.",
        ]
    )
