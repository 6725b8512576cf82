"""Fixtures: a recording collector, the sidecar in front of it, an HTTP client."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sidecar import tokens as token_module
from sidecar.logs import ACCESS_LOG, JsonLines
from tests.harness import (
    BACKEND_SECRET,
    STANDARD_STREAMS,
    Collector,
    Sidecar,
    rules_text,
    start_collector,
    start_sidecar,
)
from tests.idp import Provider
from tests.sdks import Tap, start_tap

StartSidecar = Callable[..., Awaitable[Sidecar]]


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    """A running recording collector."""
    recorder = Collector()
    runner = await start_collector(recorder)
    yield recorder
    await runner.cleanup()


@pytest.fixture
async def make_sidecar(tmp_path: Path, collector: Collector) -> AsyncIterator[StartSidecar]:
    """Starts a sidecar with the given streams (default: the standard web + backend)."""
    runners = []
    sidecars: list[Sidecar] = []

    async def start(
        streams: str = STANDARD_STREAMS,
        server: str = "",
        upstream: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Sidecar:
        path = tmp_path / "rules.yaml"
        path.write_text(rules_text(upstream or collector.url, streams, server))
        sidecar, started = await start_sidecar(
            path, {"BACKEND_SECRET": BACKEND_SECRET, **(env or {})}
        )
        runners.extend(started)
        sidecars.append(sidecar)
        return sidecar

    yield start
    for running in sidecars:
        running.watcher.cancel()
    for runner in reversed(runners):
        await runner.cleanup()
    for running in sidecars:
        await running.reloader.key_sources.close()


@pytest.fixture
async def tap() -> AsyncIterator[Tap]:
    """A running recording hop for an SDK's requests (set `target` to the sidecar's URL)."""
    recorder = Tap()
    runner = await start_tap(recorder)
    yield recorder
    await runner.cleanup()


@pytest.fixture
async def idp(tmp_path: Path) -> AsyncIterator[Provider]:
    """A running HTTPS identity provider with one signing key, `k1`."""
    directory = tmp_path / "idp"
    directory.mkdir()
    provider = Provider(directory)
    provider.add_key("k1")
    runner = await provider.start()
    yield provider
    await runner.cleanup()


@pytest.fixture
async def sidecar(make_sidecar: StartSidecar) -> Sidecar:
    """The sidecar with the standard streams."""
    return await make_sidecar()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The kid of every real signature check (a spy: the real check still runs)."""
    calls: list[str] = []
    real = token_module._signature_valid

    def counting(key: Any, signing_input: bytes, signature: bytes) -> bool:
        calls.append(key.kid)
        return real(key, signing_input, signature)

    monkeypatch.setattr(token_module, "_signature_valid", counting)
    return calls


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The JSON lines trackgate writes (access log and events), as in production."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines())
    logger = logging.getLogger("trackgate")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    ACCESS_LOG.stream = stream
    yield stream
    ACCESS_LOG.stream = None
    logger.removeHandler(handler)
