"""Side channels (SPEC §3.3, finding 9): cookies and identity headers reach the
collector only as judged. Real browser captures replayed through the sidecar."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import aiohttp
import jwt
import pytest

from tests.conftest import StartSidecar
from tests.harness import WEB_ID, Collector, shared_testdata
from tests.http import event, events_url, post
from tests.jwt_keys import ENV, HMAC_SECRETS

SHOP = "https://shop.example.test"
ANONYMOUS_ID = "8b83cd38-c674-4129-968c-67ea8caa8352"  # in the capture's AnonymousId header
# RudderStack's v3 cookies: "RS_ENC_v3_" + base64(JSON). rl_trait holds every trait.
RL_TRAIT = (
    "RS_ENC_v3_"
    + base64.b64encode(
        json.dumps({"email": "r@s.t", "password": "hunter2-secret"}).encode()
    ).decode()
)
RL_COOKIES = (
    f"rl_anonymous_id=RS_ENC_v3_{base64.b64encode(json.dumps(ANONYMOUS_ID).encode()).decode()}; "
    f"rl_user_id=RS_ENC_v3_{base64.b64encode(b'user-5').decode()}; rl_trait={RL_TRAIT}; "
    "rl_session=RS_ENC_v3_eyJpZCI6MX0="
)


def rudder_stream(ids: str, extra: str = "") -> str:
    return f"""
- name: rudder
  id: RUDDER_WK
  type: public
  dialect: segment
  cors: {{allowed_origins: ["{SHOP}"]}}
  customer_ids: {ids}
  event_types: {{default: deny, allow: [Cart Viewed]}}
  customer_properties: {{default: deny, allow: [name], deny: [email, password]}}
{extra}
"""


def captures(name: str) -> list[dict[str, Any]]:
    path = shared_testdata("captures") / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def replay(http: aiohttp.ClientSession, base: str, name: str, cookie: str) -> list[int]:
    """Replays a capture's POSTs as the browser sent them, with the SDK's cookies."""
    statuses = []
    for capture in captures(name):
        if capture["method"] != "POST":
            continue
        headers = {
            k: v
            for k, v in capture["headers"].items()
            if k.lower() not in {"host", "content-length", "connection"}
        }
        headers["Cookie"] = cookie
        async with http.post(
            base + capture["path"], data=capture["body"].encode(), headers=headers
        ) as response:
            statuses.append(response.status)
    return statuses


@pytest.mark.parametrize("name", ["rudder_xhr.jsonl", "rudder_beacon.jsonl"])
@pytest.mark.parametrize(
    ("ids", "forwarded_header"),
    [
        ("{default: deny, allow: [anonymous_id, user_id]}", True),
        ("{default: deny, allow: [user_id], deny: [anonymous_id]}", False),
    ],
    ids=["anonymous-allowed", "anonymous-denied"],
)
async def test_rudderstack_browser_capture_leaks_nothing_unjudged(
    make_sidecar: StartSidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    name: str,
    ids: str,
    forwarded_header: bool,
) -> None:
    """Finding 9: the `rl_trait` cookie carried a denied `password` to the collector
    although the body was stripped, and `AnonymousId` passed whatever the rules."""
    sidecar = await make_sidecar(streams=rudder_stream(ids, "  forward_cookies: [rl_session]"))
    statuses = await replay(http, sidecar.url, name, RL_COOKIES)
    assert statuses and set(statuses) == {200}
    assert len(collector.received) == len(statuses)
    for received in collector.received:
        assert received.headers.getall("Cookie") == ["rl_session=RS_ENC_v3_eyJpZCI6MX0="]
        everything = str(received.headers) + received.body.decode()
        assert "hunter2" not in everything and RL_TRAIT not in everything
        assert "r@s.t" not in everything  # the denied trait, in the body's context
        messages = received.json.get("batch", [received.json])
        if "AnonymousId" in {k for c in captures(name) for k in c["headers"]}:
            sent = base64.b64encode(ANONYMOUS_ID.encode()).decode()
            assert received.headers.getall("AnonymousId", []) == (
                [sent] if forwarded_header else []
            )
        assert all(("anonymousId" in m) is forwarded_header for m in messages)


async def test_without_forward_cookies_no_cookie_reaches_the_collector(
    make_sidecar: StartSidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    sidecar = await make_sidecar(streams=rudder_stream("{allow: [anonymous_id, user_id]}"))
    assert set(await replay(http, sidecar.url, "rudder_xhr.jsonl", RL_COOKIES)) == {200}
    assert all("Cookie" not in r.headers for r in collector.received)


@pytest.mark.parametrize(
    ("forward_cookies", "sent", "expected"),
    [
        ("[a, c]", "a=1; b=2; c=3", "a=1; c=3"),
        ("[a]", "b=2", None),
        ('["*"]', "a=1; b=2", "a=1; b=2"),
        ("[a]", 'a="quoted"', 'a="quoted"'),
        # a pair a comma-splitting collector would read as two cookies: dropped
        ("[a, rl_trait]", "a=1, rl_trait=secret; c=3", None),
        ('["*"]', "a=1, b=2; c= spaced; d=ok", "d=ok"),
    ],
)
async def test_only_the_named_cookies_are_forwarded(
    make_sidecar: StartSidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    forward_cookies: str,
    sent: str,
    expected: str | None,
) -> None:
    streams = f"""
- name: web
  id: {WEB_ID}
  type: public
  forward_cookies: {forward_cookies}
  customer_ids: {{allow: [cookie]}}
  event_types: {{allow: [page_visit]}}
"""
    sidecar = await make_sidecar(streams=streams)
    answer = await post(http, events_url(sidecar.url), event(), headers={"Cookie": sent})
    assert answer.status == 200
    assert collector.received[0].headers.getall("Cookie", []) == ([expected] if expected else [])


def token_for(**ids: str) -> str:
    claims = {"ids": ids, "exp": int(time.time()) + 600}
    return jwt.encode(claims, HMAC_SECRETS["HS256"], "HS256", headers={"kid": "hs"})


JWT_BLOCK = """  jwt:
    enforcement: enforce
    keys: [{kid: hs, alg: HS256, secret: {env: HS256_SECRET}}]
"""


@pytest.mark.parametrize(
    ("ids", "jwt_block", "token", "header", "forwarded"),
    [
        ("{allow: [anonymous_id, user_id]}", "", None, ANONYMOUS_ID, True),
        ("{allow: [user_id], deny: [anonymous_id]}", "", None, ANONYMOUS_ID, False),
        # signed_only: only a token that signs this very value lets it through
        ("{allow: [user_id], signed_only: [anonymous_id]}", JWT_BLOCK, None, "a-1", False),
        ("{allow: [user_id], signed_only: [anonymous_id]}", JWT_BLOCK, "a-1", "a-1", True),
        ("{allow: [user_id], signed_only: [anonymous_id]}", JWT_BLOCK, "a-1", "YS0x", True),
        ("{allow: [user_id], signed_only: [anonymous_id]}", JWT_BLOCK, "a-2", "a-1", False),
        # without JWT validation signed_only acts as allow (SPEC §5.2)
        ("{allow: [user_id], signed_only: [anonymous_id]}", "", None, "a-1", True),
    ],
    ids=["allowed", "denied", "unsigned", "signed", "signed-base64", "signed-other", "jwt-off"],
)
async def test_identity_headers_are_judged_as_the_id_they_carry(
    make_sidecar: StartSidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    ids: str,
    jwt_block: str,
    token: str | None,
    header: str,
    forwarded: bool,
) -> None:
    """RudderStack's `AnonymousId` header is the segment dialect's `anonymous_id`.
    The body names only an allowed user id, so the header alone is judged."""
    sidecar = await make_sidecar(streams=rudder_stream(ids, jwt_block), env=ENV)
    headers = {
        "AnonymousId": header,
        "Authorization": "Basic " + base64.b64encode(b"RUDDER_WK:").decode(),
    }
    if token is not None:
        headers["Authorization"] = f"Bearer {token_for(anonymous_id=token)}"
    message = {"type": "track", "event": "Cart Viewed", "userId": "user-5", "writeKey": "RUDDER_WK"}
    answer = await post(http, sidecar.url + "/v1/track", message, headers=headers)
    assert answer.status == 200, answer.body
    assert collector.received[0].headers.getall("AnonymousId", []) == (
        [header] if forwarded else []
    )


async def test_a_forwarded_preflight_carries_no_identity_header_or_unnamed_cookie(
    make_sidecar: StartSidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    """A stream without `cors` forwards preflights; with no body to judge them by,
    identity headers never go along, and cookies follow `forward_cookies`."""
    streams = rudder_stream("{allow: [anonymous_id]}", "  forward_cookies: [rl_session]")
    sidecar = await make_sidecar(
        streams=streams.replace(f'  cors: {{allowed_origins: ["{SHOP}"]}}\n', "")
    )
    headers = {"Origin": SHOP, "AnonymousId": "YS0x", "Cookie": RL_COOKIES}
    async with http.options(
        f"{sidecar.url}/v1/track?writeKey=RUDDER_WK", headers=headers
    ) as answer:
        assert answer.status == 200
    received = collector.received[0]
    assert received.method == "OPTIONS"
    assert "AnonymousId" not in received.headers
    assert received.headers.getall("Cookie") == ["rl_session=RS_ENC_v3_eyJpZCI6MX0="]
