"""The real `@segment/analytics-next` and `@rudderstack/analytics-js` in headless
Chromium, cross-origin through the running sidecar to a recording collector
(SPEC §3.2, §3.3): allowed events arrive with denied properties stripped, denied
events never arrive, and a page on an origin the stream does not allow gets
nothing through.

Pages: tests/browser/pages/segment.html and rudderstack.html, served from another
loopback origin than trackgate's.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.browser import Pages, Sent, Tab, eventually
from tests.conftest import OpenTab
from tests.harness import Collector, Sidecar, StartSidecar

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

SEGMENT_WK = "SEG_BROWSER_WK"
RUDDER_WK = "RUDDER_BROWSER_WK"


def streams(origin: str) -> str:
    rules = """
  type: public
  dialect: segment
  cors: {{allowed_origins: ["{origin}"]}}
  customer_ids: {{default: deny, allow: [anonymous_id, user_id]}}
  event_types: {{default: deny, allow: [Product Viewed, page], deny: [Debug]}}
  customer_properties: {{default: deny, allow: [name, plan], deny: [email]}}
  event_properties: {{default: allow, deny: [card_number]}}
"""
    return "".join(
        f"- name: {name}\n  id: {key}\n" + rules.format(origin=origin)
        for name, key in (("seg", SEGMENT_WK), ("rudder", RUDDER_WK))
    )


@pytest_asyncio.fixture(loop_scope="session")
async def segment(make_browser_sidecar: StartSidecar, pages: Pages) -> Sidecar:
    return await make_browser_sidecar(streams=streams(pages.origin))


# What the page does, the same for both SDKs: who the user is, one allowed event with a
# denied property, one denied event, one allowed event last (sent after the denied one).
SEGMENT_CALLS = """async () => {
  await segment.identify("u-42", { name: "Ada", plan: "pro", email: "ada@example.com" });
  await segment.track("Product Viewed", { sku: "X", card_number: "4111" });
  await segment.track("Debug", { trace: 1 });
  await segment.track("Product Viewed", { sku: "last" });
}"""
RUDDER_CALLS = """() => {
  rudder.identify("u-42", { name: "Ada", plan: "pro", email: "ada@example.com" });
  rudder.track("Product Viewed", { sku: "X", card_number: "4111" });
  rudder.track("Debug", { trace: 1 });
  rudder.track("Product Viewed", { sku: "last" });
}"""


def messages(collector: Collector) -> list[dict[str, Any]]:
    """Every message the collector received, batches unpacked, in order."""
    found: list[dict[str, Any]] = []
    for received in collector.received:
        document = received.json
        found.extend(document.get("batch", [document]))
    return found


def tracked(collector: Collector, event: str) -> list[dict[str, Any]]:
    return [m for m in messages(collector) if m.get("event") == event]


async def arrived_judged(collector: Collector, tab: Tab) -> None:
    """The allowed events arrived, stripped; the denied one did not."""
    await eventually(
        lambda: any(m.get("properties", {}).get("sku") == "last" for m in messages(collector)),
        "the last event at the collector",
        tab,
    )
    viewed = [m["properties"] for m in tracked(collector, "Product Viewed")]
    assert viewed == [{"sku": "X"}, {"sku": "last"}]  # card_number stripped, each once
    assert tracked(collector, "Debug") == []
    [identify] = [m for m in messages(collector) if m.get("type") == "identify"]
    assert identify["userId"] == "u-42"
    # Segment sends the traits in `traits`, RudderStack in `context.traits`
    traits = identify.get("traits", {}) | identify.get("context", {}).get("traits", {})
    assert traits == {"name": "Ada", "plan": "pro"}  # email stripped
    for message in messages(collector):  # nor in any message's context.traits
        assert "email" not in message.get("context", {}).get("traits", {})
    for received in collector.received:
        assert b"ada@example.com" not in received.body
        assert b"4111" not in received.body


def posts(tab: Tab, sidecar: Sidecar) -> list[Sent]:
    return [s for s in tab.to(sidecar.url) if s.method == "POST"]


def segment_delivery(strategy: str) -> dict[str, Any]:
    if strategy == "batching":
        return {"strategy": "batching", "config": {"size": 10, "timeout": 300}}
    return {"strategy": "standard"}


async def start_segment(tab: Tab, sidecar: Sidecar, strategy: str) -> None:
    api_host = sidecar.url.removeprefix("http://") + "/v1"  # host:port/path, no scheme
    await tab.evaluate(
        "([key, host, delivery]) => startSegment(key, host, delivery)",
        [SEGMENT_WK, api_host, segment_delivery(strategy)],
    )


async def start_rudder(tab: Tab, sidecar: Sidecar, beacon: bool) -> None:
    await tab.evaluate(
        "([key, url, beacon]) => startRudder(key, url, beacon)", [RUDDER_WK, sidecar.url, beacon]
    )


@pytest.mark.parametrize("strategy", ["standard", "batching"])
async def test_segment_analytics_next(
    segment: Sidecar,
    browser_collector: Collector,
    open_page: OpenTab,
    pages: Pages,
    strategy: str,
) -> None:
    tab = await open_page(pages.url("segment.html"))
    await start_segment(tab, segment, strategy)
    await tab.evaluate(SEGMENT_CALLS)
    await arrived_judged(browser_collector, tab)
    paths = {r.path_qs for r in browser_collector.received}
    assert paths <= ({"/v1/b"} if strategy == "batching" else {"/v1/i", "/v1/t", "/v1/p"})
    assert all(s.headers["content-type"].startswith("text/plain") for s in posts(tab, segment))


@pytest.mark.parametrize("beacon", [False, True], ids=["xhr", "beacon"])
async def test_rudderstack_analytics_js(
    segment: Sidecar,
    browser_collector: Collector,
    open_page: OpenTab,
    pages: Pages,
    beacon: bool,
) -> None:
    tab = await open_page(pages.url("rudderstack.html"))
    await start_rudder(tab, segment, beacon)
    await tab.evaluate(RUDDER_CALLS)
    await arrived_judged(browser_collector, tab)
    paths = {r.path_qs.split("?")[0] for r in browser_collector.received}
    assert paths <= ({"/beacon/v1/batch"} if beacon else {"/v1/identify", "/v1/track"})
    if beacon:
        assert all(s.headers["content-type"].startswith("text/plain") for s in posts(tab, segment))


@pytest.mark.parametrize(
    "sdk", ["segment-standard", "segment-batching", "rudderstack-xhr", "rudderstack-beacon"]
)
async def test_a_page_on_an_origin_not_allowed_gets_nothing_through(
    segment: Sidecar,
    browser_collector: Collector,
    open_page: OpenTab,
    pages: Pages,
    sdk: str,
) -> None:
    name, _, delivery = sdk.partition("-")
    tab = await open_page(pages.url(f"{name}.html", allowed=False))
    if name == "segment":
        await start_segment(tab, segment, delivery)
        await tab.evaluate(SEGMENT_CALLS)
    else:
        await start_rudder(tab, segment, delivery == "beacon")
        await tab.evaluate(RUDDER_CALLS)
    # The browser has its answer (or its CORS refusal) for the request that carried
    # the last event; everything before it was sent earlier.
    await eventually(lambda: last_event_answered(tab, segment), "the last event answered", tab)
    assert browser_collector.received == []
    for sent in tab.to(segment.url):
        assert sent.status in (None, 403)  # refused: by trackgate, or by the browser (CORS)
    assert await metric(segment, "origin_not_allowed") >= 1


async def last_event_answered(tab: Tab, sidecar: Sidecar) -> bool:
    """The request that carried the "last" event has been answered (or refused)."""
    posted = posts(tab, sidecar)
    if any(s.done and "last" in (s.body or "") for s in posted):
        return True
    # beacons: the browser reports no body; the page noted what it sent, in order
    beacons = await tab.evaluate("() => window.beacons || []")
    return (
        any("last" in beacon for beacon in beacons)
        and len(posted) == len(beacons)
        and all(s.done for s in posted)
    )


async def metric(sidecar: Sidecar, reason: str) -> float:
    """`trackgate_rejections_total` for a reason, summed over streams, from /metrics."""
    async with aiohttp.ClientSession() as http, http.get(sidecar.admin_url + "/metrics") as got:
        text = await got.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("trackgate_rejections_total{") and f'reason="{reason}"' in line
    )
