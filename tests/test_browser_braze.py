"""The real `@braze/web-sdk` in headless Chromium, through the running sidecar to a
recording collector (SPEC §3.4): SDK authentication with an RS256 signature, the
app's refresh callback on an expired one, and an unknown API key.

The page (tests/browser/pages/braze.html) is served from another loopback origin
than trackgate's, so every request is a real cross-origin one (preflights included).
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from typing import Any

import aiohttp
import jwt
import pytest
import pytest_asyncio

from tests.browser import Pages, Sent, Tab, eventually
from tests.conftest import OpenTab
from tests.harness import Collector, Received, Sidecar, StartSidecar
from tests.jwt_keys import Keys

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

KEY = "brz-web-api-key-0001"
UNKNOWN_KEY = "brz-not-a-configured-key"


def braze_stream(name: str, key: str, keys: Keys, origin: str) -> str:
    """A braze stream for the page's origin, with the SDK's kid-less RS256 tokens
    (`sub` = the user id); the permissions follow it."""
    return f"""
- name: {name}
  id: {key}
  type: public
  dialect: braze
  cors: {{allowed_origins: ["{origin}"]}}
  jwt:
    kid_required: false
    subject: {{claim: sub, id_type: user_id}}
    keys: [{{kid: braze-1, alg: RS256, public_key: {{file: {keys.directory / "rs256.pem"}}}}}]
"""


def streams(keys: Keys, origin: str) -> str:
    return (
        braze_stream("brz", KEY, keys, origin)
        + """\
  customer_ids: {default: deny, allow: [device_id, alias], signed_only: [user_id]}
  event_types: {default: deny, allow: [session_start, session_end, Added To Cart], deny: [Debug]}
  customer_properties: {default: deny, allow: [first_name, plan], signed_only: [email], deny: [password]}
  event_properties: {default: allow, deny: [card_number]}
"""
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys.create(tmp_path_factory.mktemp("braze-browser-keys"))


@pytest_asyncio.fixture(loop_scope="session")
async def braze(make_browser_sidecar: StartSidecar, keys: Keys, pages: Pages) -> Sidecar:
    return await make_browser_sidecar(streams=streams(keys, pages.origin))


def signature(keys: Keys, sub: str, ttl: float = 3600) -> str:
    """A token as Braze documents them: RS256, `sub` the user id, no kid."""
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + int(ttl)}, keys.rsa, algorithm="RS256")


async def start(tab: Tab, sidecar: Sidecar, token: str, api_key: str = KEY) -> None:
    await tab.evaluate(
        "([key, url, user, token]) => startBraze(key, url, user, token)",
        [api_key, sidecar.url, "u1", token],
    )


def flushes(collector: Collector) -> list[Received]:
    return [r for r in collector.received if r.path_qs.startswith("/api/v3/data")]


def custom_events(collector: Collector, name: str) -> list[dict[str, Any]]:
    """The `ce` events named `name` the collector received, in order."""
    return [
        event
        for received in flushes(collector)
        for event in received.json.get("events", [])
        if event.get("name") == "ce" and event["data"]["n"] == name
    ]


async def metric(sidecar: Sidecar, metric_name: str, **labels: str) -> float:
    """One sample of the admin port's /metrics (0 when absent)."""
    async with aiohttp.ClientSession() as http, http.get(sidecar.admin_url + "/metrics") as got:
        text = await got.text()
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    for line in text.splitlines():
        if line.startswith(metric_name + "{") and all(label in line for label in wanted):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def answered_posts(tab: Tab, sidecar: Sidecar) -> list[Sent]:
    """The POSTs the page sent to trackgate, once the browser has every answer."""

    def posts() -> list[Sent]:
        return [s for s in tab.to(sidecar.url) if s.method == "POST"]

    await eventually(lambda: posts() and all(s.status is not None for s in posts()), "answers", tab)
    return posts()


def logged(log_lines: io.StringIO, reason: str) -> int:
    """How often the access log counted `reason` (a request's or its commands')."""
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines() if line]
    access = [line for line in lines if line.get("event") == "request"]
    return sum(line["rejections"].get(reason, 0) for line in access)


async def test_a_valid_signature_events_and_attributes_judged(
    braze: Sidecar,
    browser_collector: Collector,
    open_page: OpenTab,
    pages: Pages,
    keys: Keys,
    log_lines: io.StringIO,
) -> None:
    token = signature(keys, "u1")
    tab = await open_page(pages.url("braze.html"))
    await start(tab, braze, token)
    await tab.evaluate(
        """() => {
          braze.logCustomEvent("Added To Cart", { sku: "X", card_number: "4111" });
          braze.logCustomEvent("Debug", { trace: 1 });
          const user = braze.getUser();
          user.setFirstName("Ann");
          user.setEmail("ann@example.com");
          user.setCustomUserAttribute("plan", "gold");
          user.setCustomUserAttribute("password", "hunter2");
          braze.requestImmediateDataFlush();
        }"""
    )

    def attributes() -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for received in flushes(browser_collector):
            for item in received.json.get("attributes", []):
                merged |= {k: v for k, v in item.items() if k != "custom"}
                merged |= {f"custom.{k}": v for k, v in item.get("custom", {}).items()}
        return merged

    await eventually(
        lambda: custom_events(browser_collector, "Added To Cart") and "custom.plan" in attributes(),
        "the custom event and the attributes at the collector",
        tab,
    )
    [added] = custom_events(browser_collector, "Added To Cart")
    assert added["data"]["p"] == {"sku": "X"}  # card_number stripped
    assert added["user_id"] == "u1"
    assert custom_events(browser_collector, "Debug") == []
    found = attributes()
    assert found["first_name"] == "Ann"
    assert found["email"] == "ann@example.com"  # signed-only, and signed
    assert found["custom.plan"] == "gold"
    assert "custom.password" not in found
    for received in flushes(browser_collector):
        assert received.headers["X-Braze-Api-Key"] == KEY
        assert received.headers["X-Braze-Auth-Signature"] == token  # Braze verifies it again
        assert "hunter2" not in received.body.decode()
    # the browser read every answer: cross-origin, granted for the page's origin
    posts = await answered_posts(tab, braze)
    assert {s.status for s in posts} == {200}
    assert (
        await metric(braze, "trackgate_rejections_total", stream="brz", reason="event_type_denied")
        == 1
    )
    assert (
        await metric(
            braze,
            "trackgate_stripped_total",
            stream="brz",
            set="customer_properties",
            name="password",
        )
        >= 1
    )
    assert logged(log_lines, "event_type_denied") == 1  # in a forwarded batch, answered 200


async def test_an_expired_signature_is_refreshed_by_the_app_and_the_events_arrive_once(
    braze: Sidecar,
    browser_collector: Collector,
    open_page: OpenTab,
    pages: Pages,
    keys: Keys,
    log_lines: io.StringIO,
) -> None:
    expired = signature(keys, "u1", ttl=-600)
    fresh: list[str] = []

    def mint(sub: str) -> str:  # the app's backend
        fresh.append(signature(keys, sub))
        return fresh[-1]

    pages.mint = mint
    tab = await open_page(pages.url("braze.html"))
    await start(tab, braze, expired)
    await tab.evaluate(
        """() => {
          braze.logCustomEvent("Added To Cart", { sku: "Y" });
          braze.getUser().setCustomUserAttribute("plan", "silver");
          braze.requestImmediateDataFlush();
        }"""
    )
    failures = await eventually(
        lambda: tab.evaluate("() => window.authFailures"), "the auth-failure callback", tab
    )
    assert failures[0]["errorCode"] == 22
    assert failures[0]["reason"].startswith("token_expired: ")
    assert failures[0]["userId"] == "u1"
    assert failures[0]["signature"] == expired
    await eventually(
        lambda: custom_events(browser_collector, "Added To Cart"), "the re-queued event", tab
    )
    # One more event after it, flushed: whatever the SDK still held (a duplicate of
    # the re-queued data) would be sent no later than this one.
    await tab.evaluate(
        """() => {
          braze.logCustomEvent("Added To Cart", { sku: "after" });
          braze.requestImmediateDataFlush();
        }"""
    )
    await eventually(
        lambda: any(
            e["data"]["p"] == {"sku": "after"}
            for e in custom_events(browser_collector, "Added To Cart")
        ),
        "the event logged after the refresh",
        tab,
    )
    skus = [e["data"]["p"]["sku"] for e in custom_events(browser_collector, "Added To Cart")]
    assert skus == ["Y", "after"]  # exactly once each
    plans = [
        item["custom"]["plan"]
        for received in flushes(browser_collector)
        for item in received.json.get("attributes", [])
        if "plan" in item.get("custom", {})
    ]
    assert plans == ["silver"]
    for received in browser_collector.received:  # nothing went on with the expired token
        assert received.headers["X-Braze-Auth-Signature"] in fresh
    # Braze's answer was 200, the reason is still the real one
    assert (
        await metric(braze, "trackgate_rejections_total", stream="brz", reason="token_expired") >= 1
    )
    assert logged(log_lines, "token_expired") >= 1
    auth_failed = [
        s
        for s in await answered_posts(tab, braze)
        if s.headers.get("x-braze-auth-signature") == expired
    ]
    assert auth_failed
    assert {s.status for s in auth_failed} == {200}


async def test_an_unknown_api_key_stops_the_sdk(
    braze: Sidecar,
    browser_collector: Collector,
    open_page: OpenTab,
    pages: Pages,
    keys: Keys,
) -> None:
    tab = await open_page(pages.url("braze.html"))
    await start(tab, braze, signature(keys, "u1"), api_key=UNKNOWN_KEY)
    await tab.evaluate(
        """() => {
          braze.logCustomEvent("Added To Cart", { sku: "dropped" });
          braze.requestImmediateDataFlush();
        }"""
    )

    def answered() -> list[Any]:
        return [s for s in tab.to(braze.url) if s.method == "POST" and s.status is not None]

    await eventually(
        lambda: [s for s in answered() if "dropped" in (s.body or "")], "the flush answered", tab
    )
    before = await answered_posts(tab, braze)  # the session's start flush too
    assert {s.status for s in before} == {200}
    # No retry storm: over a window of a few seconds nothing more is sent ...
    await asyncio.sleep(3)
    assert len(answered()) == len(before)
    # ... and the dropped batch is not re-queued: the next flush holds only new data.
    await tab.evaluate(
        """() => {
          braze.logCustomEvent("Added To Cart", { sku: "next" });
          braze.requestImmediateDataFlush();
        }"""
    )
    later = await eventually(
        lambda: [s for s in answered() if "next" in (s.body or "")], "the next flush", tab
    )
    assert all("dropped" not in (s.body or "") for s in later)
    sent = await answered_posts(tab, braze)
    assert {s.status for s in sent} == {200}
    assert browser_collector.received == []
    assert await metric(
        braze, "trackgate_rejections_total", stream="_unknown", reason="unknown_stream"
    ) == len(sent)
