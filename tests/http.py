"""Small helpers for talking to the sidecar over real HTTP."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from tests.harness import WEB_ID


@dataclass
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str | None:
        document = self.json
        return document.get("code") if isinstance(document, dict) else None


async def post(
    http: aiohttp.ClientSession,
    url: str,
    body: object = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> Answer:
    """Send `body` as JSON (or `raw` bytes) and read the whole answer."""
    data = raw if raw is not None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    async with http.request(method, URL(url, encoded=True), data=data, headers=sent) as response:
        return Answer(response.status, response.headers, await response.read())


def event(event_type: str = "page_visit", **ids: str) -> dict[str, Any]:
    """A bloomreach event body."""
    return {
        "customer_ids": ids or {"cookie": "c-1"},
        "event_type": event_type,
        "timestamp": 1700000000.5,
        "properties": {"path": "/"},
    }


def events_url(base: str, stream_id: str = WEB_ID) -> str:
    return f"{base}/track/u/v1/customers/events?stream_id={stream_id}"


def customers_url(base: str, stream_id: str = WEB_ID) -> str:
    return f"{base}/track/u/v1/customers?stream_id={stream_id}"


def batch_url(base: str, stream_id: str = WEB_ID) -> str:
    return f"{base}/track/u/v1/batch?stream_id={stream_id}"
