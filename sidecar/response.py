"""Responses that announce no server software (SPEC §8).

aiohttp adds `Server: Python/3.x aiohttp/3.x` to every answer that has none
(`StreamResponse._prepare_headers` does `headers.setdefault(SERVER, ...)`),
telling every client the stack and its version. trackgate's own answers
(rejections, preflights, edge refusals, the admin port) carry no `Server`
header; an answer relayed from the collector keeps exactly the headers the
collector sent, its `Server` included, and gains none.
"""

from __future__ import annotations

import logging

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from sidecar import logs


class Response(web.Response):
    """A `web.Response` to which aiohttp adds no `Server` header."""

    async def _prepare_headers(self) -> None:
        # aiohttp's only hook for the default is this private method: its `setdefault`
        # runs after every public one (on_response_prepare included). A `Server` set
        # before it (a relayed collector's) stays; the default is taken out again.
        # tests/test_response.py fails if an aiohttp release moves it.
        given = hdrs.SERVER in self.headers
        await super()._prepare_headers()
        if not given:
            self.headers.popall(hdrs.SERVER, None)


@web.middleware
async def without_banner(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An application's answers, its router's 404/405 and failures included, as
    `Response`s: handlers keep returning aiohttp's own responses."""
    try:
        answer = await handler(request)
    except web.HTTPException as error:
        return Response(
            status=error.status, reason=error.reason, text=error.text, headers=error.headers
        )
    except Exception:
        logs.event("admin_error", logging.ERROR, path=request.path)
        return Response(status=500, text="500 Internal Server Error\n")
    if type(answer) is web.Response and isinstance(answer.body, bytes):
        return Response(
            status=answer.status, reason=answer.reason, body=answer.body, headers=answer.headers
        )
    return answer
