"""Re-capture tests/fixtures/braze/web_sdk_<version>_flush.json: the exact body of a data
flush the real `@braze/web-sdk` sends (not run by the suite).

    .venv/bin/python -m tests.capture_braze

The pinned SDK (tests/browser/package.json) runs in headless Debian Chromium against
trackgate with a braze stream that allows everything, so the sidecar forwards the
received bytes unchanged; the recording collector's copy of the flush is written as
the fixture, and its headers of interest beside it (the signature described, not kept).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import jwt

from tests.browser import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    ensure_sdks,
    eventually,
    open_tab,
    pinned_sdks,
    start_pages,
)
from tests.harness import ROOT, Received, running_collector, sidecar_starter
from tests.jwt_keys import Keys
from tests.test_browser_braze import braze_stream

KEY = "brz-api-key-0001"  # the stream of tests/test_dialect_braze.py
USER = "u1"
FIXTURES = ROOT / "tests" / "fixtures" / "braze"
# The headers the SDK sets itself (the browser adds Origin, User-Agent, …).
OF_INTEREST = (
    "Content-Type",
    "X-Requested-With",
    "X-Braze-Api-Key",
    "X-Braze-Auth-Signature",
    "X-Braze-Last-Req-Ms-Ago",
    "X-Braze-Req-Attempt",
    "X-Braze-Req-Tokens-Remaining",
    "X-Braze-TriggersRequest",
    "X-Braze-DataRequest",
)
# What the app does: a user signed in with SDK authentication, a session, two custom
# events with properties (one a rule denies), a purchase, standard and custom
# attributes and attribute operations; then one flush holds them all (the session's
# start went before, in a flush of its own).
APP = """([key, url, user, token]) => {
  braze.initialize(key, { baseUrl: url, enableSdkAuthentication: true });
  braze.changeUser(user, token);
  braze.openSession();
  braze.logCustomEvent("Added To Cart", { sku: "X-1", card_number: "4111111111111111" });
  braze.logCustomEvent("Debug", { trace: 1 });
  braze.logPurchase("sku-1", 9.99, "EUR", 2, { gift: true, card_number: "4111" });
  const user_ = braze.getUser();
  user_.setFirstName("Ann");
  user_.setEmail("ann@example.com");
  user_.setCustomUserAttribute("plan", "gold");
  user_.setCustomUserAttribute("password", "hunter2");
  user_.incrementCustomUserAttribute("logins", 1);
  user_.addToCustomAttributeArray("password_hints", "pet");
  braze.requestImmediateDataFlush();
}"""


def streams(keys: Keys, origin: str) -> str:
    return (
        braze_stream("capture", KEY, keys, origin)
        + """\
  customer_ids: {default: allow}
  event_types: {default: allow}
  customer_properties: {default: allow}
  event_properties: {default: allow}
"""
    )


def described(name: str, value: str) -> str:
    if name != "X-Braze-Auth-Signature":
        return value
    header, claims = jwt.get_unverified_header(value), jwt.decode(value, **_UNVERIFIED)
    return f"<a JWT: header {json.dumps(header)}, claims {sorted(claims)}, sub {claims['sub']!r}>"


_UNVERIFIED: dict[str, Any] = {"options": {"verify_signature": False}}


def with_everything(received: Received) -> bool:
    body = received.json
    names = {event.get("name") for event in body.get("events", [])}
    return {"ce", "p", "inc", "add"} <= names and bool(body.get("attributes"))


async def capture(directory: Path) -> tuple[bytes, dict[str, str]]:
    from playwright.async_api import async_playwright  # noqa: PLC0415

    ensure_sdks()
    keys = Keys.create(directory)
    now = int(time.time())
    token = jwt.encode({"sub": USER, "iat": now, "exp": now + 3600}, keys.rsa, algorithm="RS256")
    pages = await start_pages()
    try:
        async with (
            running_collector() as collector,
            sidecar_starter(directory, collector) as start,
            async_playwright() as driver,
        ):
            sidecar = await start(streams=streams(keys, pages.origin))
            browser = await driver.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True
            )
            tab, _ = await open_tab(browser, pages.url("braze.html"))
            await tab.evaluate(APP, [KEY, sidecar.url, USER, token])

            def flushed() -> list[Received]:
                return [r for r in collector.received if r.path_qs.startswith("/api/v3/data")]

            try:
                await eventually(lambda: [r for r in flushed() if with_everything(r)], "", tab)
            except AssertionError:
                sent = [(r.path_qs, r.body.decode()) for r in collector.received]
                raise SystemExit(f"no flush held everything; the collector got {sent}") from None
            [received] = [r for r in flushed() if with_everything(r)]
            # trackgate forwarded the bytes the browser sent, unchanged
            assert received.body.decode() in [s.body for s in tab.to(sidecar.url)]
            await browser.close()
    finally:
        assert pages.runner is not None
        await pages.runner.cleanup()
    headers = {
        name: described(name, received.headers[name])
        for name in OF_INTEREST
        if name in received.headers
    }
    return received.body, headers


def main() -> None:
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing (Debian package chromium)")
    version = pinned_sdks()["@braze/web-sdk"]
    with tempfile.TemporaryDirectory() as scratch:
        body, headers = asyncio.run(capture(Path(scratch)))
    stem = f"web_sdk_{version}_flush"
    (FIXTURES / f"{stem}.json").write_bytes(body)  # the bytes as sent, no newline added
    (FIXTURES / f"{stem}.headers.json").write_text(json.dumps(headers, indent=2) + "\n")
    print(f"wrote {FIXTURES}/{stem}.json ({len(body)} bytes) and {stem}.headers.json")


if __name__ == "__main__":
    main()
