"""Real web SDKs in a real headless Chromium, on loopback (the `browser` tests).

The SDKs are the npm packages pinned in `tests/browser/package.json` (its
lock file commits the exact tree), installed with `npm ci` into
`tests/browser/node_modules` (ignored by git) by `make sdks`, or here when it
is missing. The browser is Debian's `chromium` (`make tools` installs it),
driven by Playwright's Python client with `executable_path` (Playwright never
downloads a browser here). Pages and SDK bundles come from a local static
server on loopback, on an origin other than trackgate's, so CORS is real; the
test fails if the browser asks for anything that is not on loopback.

Without Chromium or the SDKs the tests are skipped with the reason, except in
CI (`CI` set), where they fail with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from tests.harness import ROOT

SDKS = ROOT / "tests" / "browser"
NODE_MODULES = SDKS / "node_modules"
PAGES = SDKS / "pages"
CHROMIUM = Path("/usr/bin/chromium")
# What works on a closed network: no GPU, no QUIC, nothing fetched in the background.
# Playwright adds --headless, --no-sandbox (it runs as root in CI) and a fresh
# temporary --user-data-dir of its own for each launch.
CHROMIUM_FLAGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGE_HOST = "127.0.0.2"  # the app's origin, allowed by the streams' cors
OTHER_HOST = "127.0.0.3"  # an origin no stream allows
DEADLINE = 20.0  # seconds: an upper bound for anything to arrive, never a wait


def unavailable(reason: str) -> None:
    """Skip locally; fail in CI, where the browser tests must run."""
    if os.environ.get("CI"):
        pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"{reason} (`make test` installs it; `pytest -m 'not browser'` skips these)")


def pinned_sdks() -> dict[str, str]:
    """The SDK packages and their exact versions (tests/browser/package.json)."""
    manifest = json.loads((SDKS / "package.json").read_text())
    return dict(manifest["dependencies"])


def sdk_problem(node_modules: Path = NODE_MODULES) -> str | None:
    """Why the pinned SDKs are not installed as pinned, or None."""
    for name, version in pinned_sdks().items():
        manifest = node_modules / name / "package.json"
        if not manifest.is_file():
            return f"npm package {name}@{version} is not installed in {node_modules}"
        found = json.loads(manifest.read_text())["version"]
        if found != version:
            return f"npm package {name} is {found} in {node_modules}, {version} is pinned"
    return None


def ensure_sdks() -> None:
    """The pinned SDKs, installed with `npm ci` when they are missing or stale."""
    if sdk_problem() is None:
        return
    npm = shutil.which("npm")
    if npm is None:
        unavailable(f"{sdk_problem()} and npm is missing")
        return
    done = subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
        cwd=SDKS, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    problem = sdk_problem()
    if done.returncode != 0 or problem is not None:
        unavailable(f"npm ci in {SDKS} failed: {problem} {done.stderr.strip()[-2000:]}")


@dataclass
class Pages:
    """The app's static server: pages, SDK bundles and the app backend's token
    endpoint, on two loopback origins (`origin` allowed, `other` not)."""

    origin: str = ""
    other: str = ""
    # The app backend's signer: GET /token?sub=… answers mint(sub).
    mint: Callable[[str], str] | None = None
    runner: web.AppRunner | None = None

    def url(self, page: str, *, allowed: bool = True) -> str:
        return f"{self.origin if allowed else self.other}/pages/{page}"


async def start_pages() -> Pages:
    pages = Pages()

    async def token(request: web.Request) -> web.Response:
        if pages.mint is None:
            raise web.HTTPNotFound()
        return web.Response(text=pages.mint(request.query["sub"]))

    async def no_icon(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/token", token)
    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_static("/pages/", PAGES)
    app.router.add_static("/sdk/", NODE_MODULES)
    # analytics-next loads its lazy chunks from `<cdn>/analytics-next/bundles/`;
    # the page names this server as its cdn, so they come from here too.
    segment_umd = NODE_MODULES / "@segment" / "analytics-next" / "dist" / "umd"
    app.router.add_static("/segment-cdn/analytics-next/bundles/", segment_umd)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    for host in (PAGE_HOST, OTHER_HOST):
        await web.TCPSite(runner, host, 0).start()
    (host, port), (other_host, other_port) = (a[:2] for a in runner.addresses)
    pages.origin, pages.other = f"http://{host}:{port}", f"http://{other_host}:{other_port}"
    pages.runner = runner
    return pages


@dataclass
class Sent:
    """One request the page sent (as the browser saw it) and the status it got."""

    method: str
    url: str
    headers: dict[str, str]
    body: str | None
    status: int | None = None
    failure: str | None = None  # why the browser got no answer (a CORS refusal, …)

    @property
    def done(self) -> bool:
        return self.status is not None or self.failure is not None

    @property
    def json(self) -> Any:
        return json.loads(self.body or "null")


@dataclass
class Tab:
    """A page in its own browser context (fresh storage), and what it sent."""

    page: Any  # playwright.async_api.Page
    sent: list[Sent] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)  # requests not on loopback

    def to(self, base: str) -> list[Sent]:
        """The requests sent to `base` (scheme://host:port), preflights included."""
        return [s for s in self.sent if s.url.startswith(base + "/")]

    async def evaluate(self, script: str, arg: Any = None) -> Any:
        return await self.page.evaluate(script, arg)


def _loopback(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return (parts.hostname or "").startswith("127.")


async def open_tab(browser: Any, url: str) -> tuple[Tab, Any]:
    """A new context and page at `url`, recording every request it sends."""
    context = await browser.new_context()
    page = await context.new_page()
    tab = Tab(page)
    by_request: dict[Any, Sent] = {}

    def on_request(request: Any) -> None:
        if not _loopback(request.url):
            tab.outside.append(request.url)
        sent = Sent(request.method, request.url, dict(request.headers), request.post_data)
        by_request[request] = sent
        tab.sent.append(sent)

    async def on_response(response: Any) -> None:
        sent = by_request.get(response.request)
        if sent is not None:
            sent.status = response.status

    page.on("request", on_request)
    page.on("response", on_response)

    def on_failed(request: Any) -> None:
        tab.console.append(f"failed: {request.url} {request.failure}")
        sent = by_request.get(request)
        if sent is not None:
            sent.failure = str(request.failure)

    page.on("requestfailed", on_failed)
    page.on("console", lambda message: tab.console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: tab.console.append(f"pageerror: {error}"))
    await page.goto(url)
    await page.wait_for_function("window.sdkReady === true", timeout=DEADLINE * 1000)
    return tab, context


async def eventually(
    check: Callable[[], Any], what: str, tab: Tab | None = None, deadline: float = DEADLINE
) -> Any:
    """Poll `check` until it returns something true; fail after `deadline` seconds."""
    end = time.monotonic() + deadline
    while True:
        found = check()
        if isinstance(found, Awaitable):
            found = await found
        if found:
            return found
        if time.monotonic() > end:
            console = "\n".join(tab.console[-40:]) if tab else ""
            raise AssertionError(f"not within {deadline}s: {what}\nbrowser console:\n{console}")
        await asyncio.sleep(0.05)
