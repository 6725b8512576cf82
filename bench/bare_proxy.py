"""The bare aiohttp pass-through proxy: the limit of this stack (benchmark baseline).

Same aiohttp, same event loop choice as trackgate, one process, one shared
keep-alive client session; it reads the body, forwards it, relays the answer.
No checks, no parsing, no metrics, no logs.

With `--json` it also parses the body and writes it again (orjson, no checks):
the least any proxy that rewrites JSON bodies pays on top of `bare`, shown
next to the 50-command batch workload.

    python bench/bare_proxy.py LISTEN_PORT UPSTREAM_URL [--json]
"""

from __future__ import annotations

import sys

import aiohttp
import orjson
from aiohttp import web

from sidecar.app import event_loop_policy, settle_garbage_collector

SESSION = web.AppKey("session", aiohttp.ClientSession)


async def relay(request: web.Request) -> web.Response:
    body = await request.read()
    if request.app["json"]:
        body = orjson.dumps(orjson.loads(body))
    headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
    async with request.app[SESSION].request(
        request.method, request.app["upstream"] + request.path_qs, data=body, headers=headers
    ) as response:
        return web.Response(
            status=response.status, body=await response.read(), content_type=response.content_type
        )


async def session_context(app: web.Application):  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
        app[SESSION] = session
        yield


def main() -> None:
    port, upstream = int(sys.argv[1]), sys.argv[2].rstrip("/")
    app = web.Application()
    app["upstream"] = upstream
    app["json"] = "--json" in sys.argv[3:]
    app.cleanup_ctx.append(session_context)
    app.router.add_route("*", "/{tail:.*}", relay)
    settle_garbage_collector()  # the same runtime settings as trackgate
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        loop=event_loop_policy().new_event_loop(),
    )


if __name__ == "__main__":
    main()
