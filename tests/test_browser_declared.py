"""The real posthog-js and mixpanel-browser in headless Chromium, cross-origin through
the running sidecar (the built-in posthog and mixpanel dialects, SPEC §3.5) to a
recording collector: allowed events arrive with denied properties and person
properties stripped, denied events never arrive, each event arrives once, and every
request the SDK sent was answered 200 (posthog-js retries anything but 200;
mixpanel-browser's batcher retries 5xx and 429).

Pages: tests/browser/pages/posthog.html and mixpanel.html, served from another
loopback origin than trackgate's. What these SDKs send: /work/briefs/sdk-wire.md §1, §3.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.browser import Sent, Tab, eventually
from tests.conftest import OpenTab
from tests.harness import Collector, Sidecar, StartSidecar

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

POSTHOG_KEY = "phc_browser_test_key"
MIXPANEL_TOKEN = "mp_browser_test_token"

RULES = """
- name: {name}
  id: {key}
  type: public
  dialect: {dialect}
  cors: {{allowed_origins: ["{origin}"]}}
  customer_ids: {{default: deny, allow: [{ids}]}}
  event_types: {{default: deny, allow: [product_viewed, $identify], deny: [debug_event]}}
  customer_properties: {{default: deny, allow: [name, plan], deny: [email]}}
  event_properties: {{default: allow, deny: [card_number]}}
"""

CALLS = """() => {{
  {sdk}.identify("user-1");
  {people}
  {sdk}.track_or_capture("product_viewed", {{ sku: "X", card_number: "4111" }});
  {sdk}.track_or_capture("debug_event", {{ trace: 1 }});
  {sdk}.track_or_capture("product_viewed", {{ sku: "last" }});
}}"""


def calls(sdk: str, method: str, people: str) -> str:
    return CALLS.format(sdk=sdk, people=people).replace("track_or_capture", method)


def posts(tab: Tab, sidecar: Sidecar) -> list[Sent]:
    return [s for s in tab.to(sidecar.url) if s.method == "POST"]


async def all_answered(tab: Tab, sidecar: Sidecar) -> list[Sent]:
    sent = await eventually(lambda: posts(tab, sidecar), "a POST to trackgate", tab)
    await eventually(lambda: all(s.done for s in posts(tab, sidecar)), "every answer", tab)
    return sent


def viewed(events: list[dict[str, Any]]) -> list[str]:
    """The skus of the product views, sorted (two batches may arrive in either order)."""
    return sorted(e["properties"]["sku"] for e in events if e["event"] == "product_viewed")


def posthog_events(collector: Collector) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for received in collector.received:
        document = received.json
        found.extend(document["batch"] if isinstance(document, dict) else document)
    return found


@pytest.mark.parametrize("compression", [True, False], ids=["gzip-js", "json"])
async def test_posthog_js(
    make_browser_sidecar: StartSidecar,
    browser_collector: Collector,
    pages: Any,
    open_page: OpenTab,
    compression: bool,
) -> None:
    browser_collector.body = b'{"status": 1}'
    rules = RULES.format(name="ph", key=POSTHOG_KEY, dialect="posthog", origin=pages.origin,
                         ids="distinct_id, anon_distinct_id")  # fmt: skip
    sidecar = await make_browser_sidecar(streams=rules)
    tab = await open_page(pages.url("posthog.html"))
    start = "([k, h, c]) => startPosthog(k, h, c)"
    await tab.evaluate(start, [POSTHOG_KEY, sidecar.url, compression])
    person = 'posthog.setPersonProperties({name: "Ada", email: "ada@example.com"});'
    await tab.evaluate(calls("posthog", "capture", person))
    await eventually(
        lambda: viewed(posthog_events(browser_collector)) == ["X", "last"],
        "both product views at the collector",
        tab,
    )
    sent = await all_answered(tab, sidecar)
    assert {s.status for s in sent} == {200}  # exactly 200: posthog-js retries anything else
    if compression:  # gzip-js: gzip in text/plain, no Content-Encoding (read by its magic bytes)
        assert all(s.headers.get("content-type") == "text/plain" for s in sent)
    events = posthog_events(browser_collector)
    assert all("card_number" not in e["properties"] for e in events)
    assert [e for e in events if e["event"] == "debug_event"] == []
    uuids = [e["uuid"] for e in events]
    assert len(uuids) == len(set(uuids))  # each event once: no retry re-sent one
    person_sets = [e["properties"]["$set"] for e in events if e["event"] == "$set"]
    assert person_sets == [{"name": "Ada"}]  # email stripped
    for received in browser_collector.received:
        assert b"ada@example.com" not in received.body and b"4111" not in received.body
        assert "Content-Encoding" not in received.headers


def mixpanel_messages(collector: Collector, path: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for received in collector.received:
        if not received.path_qs.startswith(path):
            continue
        [data] = parse_qs(received.body.decode())["data"]
        document = json.loads(base64.b64decode(data, validate=True))
        found.extend(document if isinstance(document, list) else [document])
    return found


async def test_mixpanel_browser(
    make_browser_sidecar: StartSidecar,
    browser_collector: Collector,
    pages: Any,
    open_page: OpenTab,
) -> None:
    browser_collector.body = b'{"status": 1, "error": null}'
    rules = RULES.format(name="mp", key=MIXPANEL_TOKEN, dialect="mixpanel", origin=pages.origin,
                         ids="distinct_id, device_id, user_id")  # fmt: skip
    sidecar = await make_browser_sidecar(streams=rules)
    tab = await open_page(pages.url("mixpanel.html"))
    await tab.evaluate("([t, h]) => startMixpanel(t, h)", [MIXPANEL_TOKEN, sidecar.url])
    person = 'mixpanel.people.set({name: "Ada", email: "ada@example.com"});'
    await tab.evaluate(calls("mixpanel", "track", person))
    await eventually(
        lambda: viewed(mixpanel_messages(browser_collector, "/track")) == ["X", "last"],
        "both product views at the collector",
        tab,
    )
    profile = "the profile update"
    await eventually(lambda: mixpanel_messages(browser_collector, "/engage"), profile, tab)
    sent = await all_answered(tab, sidecar)
    assert {s.status for s in sent} == {200}  # its batcher retries 5xx and 429
    events = mixpanel_messages(browser_collector, "/track")
    assert all("card_number" not in e["properties"] for e in events)
    assert [e for e in events if e["event"] == "debug_event"] == []
    inserts = [e["properties"]["$insert_id"] for e in events]
    assert len(inserts) == len(set(inserts))  # each event once
    updates = mixpanel_messages(browser_collector, "/engage")
    assert [u["$set"] for u in updates if "$set" in u] == [{"name": "Ada"}]  # email stripped
