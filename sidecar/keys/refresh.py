"""The live remote key source: fetching and refreshing one stream's key set (SPEC §5.2).

A `RemoteJwks` fetches off the request path, on the event loop (`fetch.py`):
at start, then every `refresh_seconds` or the answer's `Cache-Control:
max-age` (clamped to [60 s, 24 h]); after a failure it retries with backoff
(1 s doubling to 60 s) and keeps the last good keys until
`stale_if_error_seconds` after the last success, then has none. One fetch runs
at a time (single flight). A token with an unknown kid may start one early
fetch per `unknown_kid_cooldown_seconds`, which its request awaits (at most
`timeout_seconds`); the load and periodic fetches do not start the cooldown,
and a request joins a fetch already under way instead of starting one.

Every fetch is counted (`FetchObserver`: the metrics); failures and key-set
changes are logged as JSON lines with kids and URLs, never key material.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from sidecar import logs
from sidecar.keys.base import UNAVAILABLE, KeySet
from sidecar.keys.fetch import Fetched, FetchError, discover, fetch_keys, new_session

MAX_BACKOFF_SECONDS = 60.0
DISCOVERY_SECONDS = 86_400.0  # a discovered jwks_uri is reused this long (Istio: 24 h)


@dataclass(frozen=True, slots=True)
class RemoteSettings:
    """A stream's remote key settings; equal settings share one live source."""

    url: str | None  # the JWKS URL, or None with discovery
    discovery: str | None  # the OpenID provider, its trailing `/` dropped
    issuer: str | None  # jwt.issuer: the discovery document's must equal it
    ca_pem: bytes | None  # extra trust anchors (ca_file's contents)
    refresh_seconds: float = 600
    stale_if_error_seconds: float = 86_400
    unknown_kid_cooldown_seconds: float = 30
    timeout_seconds: float = 5
    reserved_kids: frozenset[str] = frozenset()  # the static keys': fetched, they fail a fetch

    @property
    def where(self) -> str:
        """The configured URL, for logs and /readyz (never holds credentials)."""
        return self.url or f"{self.discovery} (discovery)"


class FetchObserver(Protocol):
    """Where a live source reports its fetches (the metrics)."""

    def jwks_fetched(self, stream: str, result: str) -> None: ...
    def jwks_keys(self, stream: str, count: int) -> None: ...
    def jwks_succeeded(self, stream: str, timestamp: float) -> None: ...
    def jwks_forget(self, stream: str) -> None: ...


class RemoteJwks:
    """One stream's live remote key source (see the module docstring)."""

    def __init__(self, stream: str, settings: RemoteSettings, observer: FetchObserver) -> None:
        self.stream = stream
        self.settings = settings
        self.where = settings.where  # for logs: the URL, never credentials (refused at load)
        self.observer = observer
        self.keys = UNAVAILABLE  # the snapshot requests read
        self.last_success: float | None = None  # wall-clock time of the last good fetch
        self.last_error: str | None = None  # the last failed fetch's problem
        self.expires_at: float | None = None  # wall-clock time the last good keys lapse
        self._skipped: tuple[str, ...] = ()
        self._session: aiohttp.ClientSession | None = None
        self._jwks_uri: tuple[str, float] | None = None  # discovered, and when
        self._inflight: asyncio.Task[float | None] | None = None
        self._cooldown_until = float("-inf")
        self._runner: asyncio.Task[None] | None = None
        self._expiry: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Fetch now and keep refreshing, until `stop` (the task is kept here)."""
        loop = asyncio.get_running_loop()
        self._runner = loop.create_task(self._refresh(), name=f"jwks-{self.stream}")

    async def stop(self) -> None:
        """Cancel the refresher and any fetch, close the client."""
        for task in (self._runner, self._inflight):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._expiry is not None:
            self._expiry.cancel()
        if self._session is not None:
            await self._session.close()

    async def refetch(self) -> bool:
        """The early refetch after an unknown kid: join a fetch under way, or start
        one unless the cooldown forbids it; wait at most `timeout_seconds`."""
        loop = asyncio.get_running_loop()
        if self._inflight is None:
            if loop.time() < self._cooldown_until:
                return False  # a flood of unknown kids: at most one fetch per cooldown
            self._cooldown_until = loop.time() + self.settings.unknown_kid_cooldown_seconds
        done, _ = await asyncio.wait({self.fetch()}, timeout=self.settings.timeout_seconds)
        return bool(done)

    def fetch(self) -> asyncio.Task[float | None]:
        """The fetch under way, or a new one (single flight). Its result is the delay
        until the next periodic fetch, None when it failed."""
        if self._inflight is None:
            task = asyncio.get_running_loop().create_task(self._fetch_once())
            task.add_done_callback(self._landed)
            self._inflight = task
        return self._inflight

    def _landed(self, task: asyncio.Task[float | None]) -> None:
        if self._inflight is task:
            self._inflight = None

    async def _refresh(self) -> None:
        backoff = 0.0
        while True:
            delay = await self.fetch()
            if delay is None:
                backoff = min(backoff * 2 or 1.0, MAX_BACKOFF_SECONDS)
                delay = backoff
            else:
                backoff = 0.0
            await asyncio.sleep(delay)

    async def _fetch_once(self) -> float | None:
        try:
            fetched = await self._fetch()
        except FetchError as error:
            self._failed(error)
            return None
        except Exception as error:  # never let the refresher die silently: count, retry
            self._failed(FetchError("invalid", f"{self.where}: {type(error).__name__}"))
            return None
        self._succeeded(fetched)
        return self.settings.refresh_seconds if fetched.max_age is None else fetched.max_age

    async def _fetch(self) -> Fetched:
        settings = self.settings
        if self._session is None:
            self._session = await new_session(settings.ca_pem)
        url = settings.url or await self._discovered(self._session)
        return await fetch_keys(
            self._session, url, settings.timeout_seconds, settings.reserved_kids
        )

    async def _discovered(self, session: aiohttp.ClientSession) -> str:
        """The provider's jwks_uri, discovered again after a day or a failed fetch."""
        now = time.monotonic()
        if self._jwks_uri is None or now - self._jwks_uri[1] > DISCOVERY_SECONDS:
            discovery = self.settings.discovery or ""
            found = await discover(
                session, discovery, self.settings.issuer, self.settings.timeout_seconds
            )
            self._jwks_uri = (found, now)
        return self._jwks_uri[0]

    def _succeeded(self, fetched: Fetched) -> None:
        previous, self.keys = self.keys, fetched.keys
        self.last_success, self.last_error = time.time(), None
        self._lapse_after(self.settings.stale_if_error_seconds)
        self.observer.jwks_fetched(self.stream, "success")
        self.observer.jwks_succeeded(self.stream, self.last_success)
        self.observer.jwks_keys(self.stream, len(fetched.keys))
        self._log_changes(previous, fetched)

    def _failed(self, error: FetchError) -> None:
        self.last_error = f"{error.result}: {error.message}"
        self._jwks_uri = None  # discover again: the provider may have moved its keys
        self.observer.jwks_fetched(self.stream, error.result)
        logs.event(
            "jwks_fetch_failed",
            logging.WARNING,
            stream=self.stream,
            result=error.result,
            problem=error.message,
            keys=len(self.keys),
            keys_until=self.expires_at if len(self.keys) else None,
        )

    def _lapse_after(self, seconds: float) -> None:
        """The good keys stay until `seconds` from now, unless a fetch succeeds first."""
        if self._expiry is not None:
            self._expiry.cancel()
        self.expires_at = time.time() + seconds
        self._expiry = asyncio.get_running_loop().call_later(seconds, self._lapse)

    def _lapse(self) -> None:
        self.keys, self._expiry = UNAVAILABLE, None
        self.observer.jwks_keys(self.stream, 0)
        logs.event("jwks_keys_expired", logging.ERROR, stream=self.stream, source=self.where)

    def _log_changes(self, previous: KeySet, fetched: Fetched) -> None:
        """Kids added and removed, and keys skipped, when they change: never material."""
        added = sorted(fetched.keys.by_kid.keys() - previous.by_kid.keys())
        removed = sorted(previous.by_kid.keys() - fetched.keys.by_kid.keys())
        if added or removed or previous.fingerprint != fetched.keys.fingerprint:
            logs.event(
                "jwks_keys_changed", stream=self.stream, added=added, removed=removed,
                keys=sorted(fetched.keys.by_kid), source=self.where,
            )  # fmt: skip
        if fetched.skipped != self._skipped:
            self._skipped = fetched.skipped
            for why in fetched.skipped:
                logs.event("jwks_key_skipped", stream=self.stream, key=why, source=self.where)

    def describe(self) -> dict[str, Any]:
        """The state /readyz shows: counts, kids, times and the last problem."""
        return {
            "source": self.where,
            "keys": len(self.keys),
            "kids": sorted(self.keys.by_kid),
            "last_success": self.last_success,
            "keys_until": self.expires_at if len(self.keys) else None,
            "last_error": self.last_error,
        }


async def fetch_once(settings: RemoteSettings) -> Fetched:
    """One fetch and nothing kept (`trackgate check --fetch`)."""
    async with await new_session(settings.ca_pem) as session:
        url = settings.url or await discover(
            session, settings.discovery or "", settings.issuer, settings.timeout_seconds
        )
        return await fetch_keys(session, url, settings.timeout_seconds, settings.reserved_kids)
