"""Fixtures: a recording collector, the sidecar in front of it, an HTTP client; and for
the browser tests one headless Chromium and the app's pages (all in the session's loop)."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from sidecar import tokens as token_module
from sidecar.logs import ACCESS_LOG, JsonLines
from tests.browser import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    Pages,
    Tab,
    ensure_sdks,
    open_tab,
    start_pages,
    unavailable,
)
from tests.harness import (
    Collector,
    Sidecar,
    StartSidecar,
    running_collector,
    sidecar_starter,
)
from tests.idp import Provider
from tests.sdks import Tap, start_tap


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    """A running recording collector."""
    async with running_collector() as recorder:
        yield recorder


@pytest.fixture
async def make_sidecar(tmp_path: Path, collector: Collector) -> AsyncIterator[StartSidecar]:
    """Starts a sidecar with the given streams (default: the standard web + backend)."""
    async with sidecar_starter(tmp_path, collector) as start:
        yield start


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


# The browser tests (marker `browser`): they run in the session's event loop, so one
# Chromium serves them all; their collector and sidecars live in that loop too.
OpenTab = Callable[[str], Awaitable[Tab]]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def chromium() -> AsyncIterator[Any]:
    """One headless Chromium (Debian's) for the session, driven by Playwright."""
    if not CHROMIUM.exists():
        unavailable(f"Chromium is missing ({CHROMIUM}, Debian package chromium)")
    ensure_sdks()
    try:
        from playwright.async_api import async_playwright  # noqa: PLC0415
    except ImportError:
        unavailable("the Python package playwright is missing (pip install -e '.[test]')")
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True
        )
        yield browser
        await browser.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pages(chromium: Any) -> AsyncIterator[Pages]:
    """The app's static server (pages, SDK bundles, token endpoint) on two origins."""
    served = await start_pages()
    yield served
    assert served.runner is not None
    await served.runner.cleanup()


@pytest_asyncio.fixture(loop_scope="session")
async def open_page(chromium: Any, pages: Pages) -> AsyncIterator[OpenTab]:
    """Opens a page in a fresh browser context; every request it sent must have
    stayed on loopback."""
    contexts: list[Any] = []
    tabs: list[Tab] = []

    async def open_one(url: str) -> Tab:
        tab, context = await open_tab(chromium, url)
        contexts.append(context)
        tabs.append(tab)
        return tab

    yield open_one
    for context in contexts:
        await context.close()
    pages.mint = None
    assert [url for tab in tabs for url in tab.outside] == []  # nothing from a CDN


@pytest_asyncio.fixture(loop_scope="session")
async def browser_collector() -> AsyncIterator[Collector]:
    """`collector`, in the browser tests' loop."""
    async with running_collector() as recorder:
        yield recorder


@pytest_asyncio.fixture(loop_scope="session")
async def make_browser_sidecar(
    tmp_path: Path, browser_collector: Collector
) -> AsyncIterator[StartSidecar]:
    """`make_sidecar`, in the browser tests' loop."""
    async with sidecar_starter(tmp_path, browser_collector) as start:
        yield start
