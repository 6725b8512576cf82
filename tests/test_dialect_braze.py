"""The braze dialect (SPEC §3.4) through the running sidecar, over real sockets:
events and attributes judged and rewritten, companions checked and forwarded
unchanged, and every answer in the form the Braze Web SDK acts on."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest

from sidecar.cli import main
from tests.conftest import StartSidecar
from tests.harness import Collector, Sidecar
from tests.http import Answer, post
from tests.jwt_keys import Keys

KEY = "brz-api-key-0001"
APP = "http://app.example"
DATA = "/api/v3/data/"


def braze_streams(keys: Keys) -> str:
    return f"""
- name: brz
  id: {KEY}
  type: public
  dialect: braze
  cors: {{allowed_origins: ["{APP}"]}}
  jwt:
    kid_required: false
    subject: {{claim: sub, id_type: user_id}}
    keys: [{{kid: braze-1, alg: RS256, public_key: {{file: {keys.directory / "rs256.pem"}}}}}]
  customer_ids: {{default: deny, allow: [device_id, alias], signed_only: [user_id]}}
  event_types: {{default: deny, allow: [session_start, Added To Cart], signed_only: [purchase], deny: [Debug]}}
  customer_properties: {{default: deny, allow: [first_name, plan], signed_only: [email], deny: [password]}}
  event_properties: {{default: allow, deny: [card_number]}}
- name: brz-nodevice
  id: brz-nodevice-key
  type: public
  dialect: braze
  customer_ids: {{default: deny, allow: [alias], deny: [device_id]}}
  event_types: {{allow: [session_start]}}
- name: brz-anonymous
  id: brz-anonymous-key
  type: public
  dialect: braze
  customer_ids: {{default: deny, allow: [device_id], deny: [user_id, alias]}}
  event_types: {{allow: [Added To Cart]}}
"""


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys.create(tmp_path_factory.mktemp("braze-keys"))


@pytest.fixture
async def braze(make_sidecar: StartSidecar, keys: Keys) -> Sidecar:
    return await make_sidecar(streams=braze_streams(keys))


def signature(keys: Keys, sub: str = "u1", ttl: float = 3600) -> str:
    """A token as Braze documents them: RS256, {"alg", "typ"} header, no kid."""
    claims = {"sub": sub, "exp": int(time.time() + ttl), "iat": int(time.time())}
    token = jwt.encode(claims, keys.rsa, algorithm="RS256")
    assert "kid" not in jwt.get_unverified_header(token)
    return token


def flush(events: list[Any] = (), attributes: list[Any] = (), **extra: Any) -> dict[str, Any]:  # type: ignore[assignment]
    """A body as the Web SDK 6.x flushes it (src/managers/network-manager.js)."""
    return {
        "api_key": KEY,
        "time": 1700000000,
        "sdk_version": "6.3.0",
        "device_id": "dev-1",
        "events": list(events),
        "attributes": list(attributes),
        **extra,
    }


def ce(name: str, props: dict[str, Any] | None = None, user: str | None = "u1") -> dict[str, Any]:
    event: dict[str, Any] = {
        "name": "ce",
        "time": 1700000000,
        "data": {"n": name, "p": props or {}},
    }
    if user is not None:
        event["user_id"] = user
    return event


async def send(
    http: aiohttp.ClientSession,
    sidecar: Sidecar,
    body: Any,
    *,
    path: str = DATA,
    token: str | None = None,
    api_key: str | None = KEY,
    headers: dict[str, str] | None = None,
) -> Answer:
    sent = {"X-Braze-Api-Key": api_key} if api_key else {}
    if token is not None:
        sent["X-Braze-Auth-Signature"] = token
    return await post(http, sidecar.url + path, body, headers={**sent, **(headers or {})})


def counted(sidecar: Sidecar, reason: str, stream: str = "brz") -> float:
    for line in sidecar.metrics.render().decode().splitlines():
        if (
            line.startswith("trackgate_rejections_total{")
            and f'reason="{reason}"' in line
            and f'stream="{stream}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_events_and_attributes_are_judged_and_rewritten(
    braze: Sidecar, collector: Collector, http: aiohttp.ClientSession, keys: Keys
) -> None:
    token = signature(keys)
    body = flush(
        events=[
            ce("Added To Cart", {"sku": "X", "card_number": "4111"}),
            {
                "name": "p",
                "data": {
                    "pid": "sku-1",
                    "c": "EUR",
                    "p": 9.5,
                    "q": 1,
                    "pr": {"card_number": "1", "gift": True},
                },
                "user_id": "u1",
            },
            {"name": "ss", "data": {}, "user_id": "u1"},
            {"name": "inc", "data": {"key": "plan", "value": 1}, "user_id": "u1"},
            {"name": "set", "data": {"key": "password", "value": ["x"]}, "user_id": "u1"},
            {"name": "lr", "data": {"latitude": 1, "longitude": 2}, "user_id": "u1"},
            ce("Debug"),
        ],
        attributes=[
            {
                "user_id": "u1",
                "first_name": "Ann",
                "email": "a@x",
                "password": "pw",
                "custom": {"plan": "gold", "password": "pw2"},
            },
        ],
    )
    answer = await send(http, braze, body, token=token)
    assert answer.status == 200, answer.body
    assert answer.headers["X-Trackgate-Rejected"] == "1"
    [received] = collector.received
    assert received.json == flush(
        events=[
            ce("Added To Cart", {"sku": "X"}),
            {
                "name": "p",
                "data": {"pid": "sku-1", "c": "EUR", "p": 9.5, "q": 1, "pr": {"gift": True}},
                "user_id": "u1",
            },
            {"name": "ss", "data": {}, "user_id": "u1"},
            {"name": "inc", "data": {"key": "plan", "value": 1}, "user_id": "u1"},
            {"name": "lr", "data": {"latitude": 1, "longitude": 2}, "user_id": "u1"},
        ],
        attributes=[
            {"user_id": "u1", "first_name": "Ann", "email": "a@x", "custom": {"plan": "gold"}}
        ],
    )
    assert received.headers["X-Braze-Api-Key"] == KEY
    assert received.headers["X-Braze-Auth-Signature"] == token  # Braze verifies it again
    assert counted(braze, "event_type_denied") == 1


@pytest.mark.parametrize(
    ("item", "forwarded"),
    [
        (  # `name` is an attribute here, not an event's code: the rest is still stripped
            {"name": "Ann", "first_name": "Ann", "password": "pw", "custom": {"password": "p"}},
            {"first_name": "Ann", "custom": {}},
        ),
        (  # nor an attribute operation, removed whole when its attribute is stripped
            {"name": "set", "first_name": "Ann", "password": "pw"},
            {"first_name": "Ann"},
        ),
    ],
    ids=["name", "operation-name"],
)
async def test_an_attributes_item_is_stripped_whatever_its_keys(
    braze: Sidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    item: dict[str, Any],
    forwarded: dict[str, Any],
) -> None:
    answer = await send(http, braze, flush(attributes=[item]))
    assert answer.status == 200, answer.body
    assert collector.received[0].json == flush(attributes=[forwarded])


async def test_an_unmodified_flush_is_forwarded_byte_for_byte(
    braze: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    raw = b'{"api_key":"brz-api-key-0001","device_id":"d","events":[{"name":"ss","data":{},"alias":{"name":"n","label":"l"}}],"n":1.50}'
    answer = await post(http, braze.url + "/api/v3/data", raw=raw, headers={"X-Braze-Api-Key": KEY})
    assert answer.status == 200
    assert collector.received[0].body == raw
    assert collector.received[0].path_qs == "/api/v3/data"


@pytest.mark.parametrize(
    ("ttl", "sub", "events", "code", "reason"),
    [
        (-3600, "u1", [ce("Added To Cart")], 22, "token_expired"),
        (3600, "u2", [ce("Added To Cart")], 28, "ids_mismatch"),
    ],
)
async def test_token_failures_are_auth_errors(
    braze: Sidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    keys: Keys,
    ttl: float,
    sub: str,
    events: list[Any],
    code: int,
    reason: str,
) -> None:
    answer = await send(http, braze, flush(events=events), token=signature(keys, sub, ttl))
    assert answer.status == 200
    error = answer.json["auth_error"]
    assert error["error_code"] == code
    assert error["reason"].startswith(f"{reason}: ")
    assert collector.received == []
    assert counted(braze, reason) == 1  # the real reason, whatever the status


async def test_a_bad_signature_and_a_missing_one(
    braze: Sidecar, collector: Collector, http: aiohttp.ClientSession, keys: Keys
) -> None:
    forged = signature(keys)[:-4] + "AAAA"
    answer = await send(http, braze, flush(events=[ce("Added To Cart")]), token=forged)
    assert answer.status == 200
    assert answer.json["auth_error"]["error_code"] == 20
    answer = await send(http, braze, flush(events=[ce("Added To Cart")]))
    assert answer.status == 200
    # the only command needs the signature: the SDK must ask the app for one and re-queue
    assert answer.json["auth_error"]["error_code"] == 26
    assert answer.json["auth_error"]["reason"].startswith("signature_required: ")
    assert collector.received == []
    both = flush(events=[ce("Added To Cart", user=None), ce("Added To Cart")])
    answer = await send(http, braze, both)  # the anonymous one goes, the signed-only one not
    assert answer.headers["X-Trackgate-Rejected"] == "1"
    assert [e.get("user_id") for e in collector.received[0].json["events"]] == [None]
    assert counted(braze, "signature_required") == 2


async def test_anonymous_traffic_needs_no_token(
    braze: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    body = flush(events=[ce("Added To Cart", user=None) | {"alias": {"name": "a", "label": "l"}}])
    answer = await send(http, braze, body, token="not-a-token")  # a bad token, not needed
    assert answer.status == 200
    assert collector.received[0].json == body


async def test_every_command_rejected_is_answered_200_empty(
    braze: Sidecar, collector: Collector, http: aiohttp.ClientSession, keys: Keys
) -> None:
    answer = await send(
        http, braze, flush(events=[ce("Debug"), ce("Debug")]), token=signature(keys)
    )
    assert (answer.status, answer.json) == (200, {})
    assert answer.headers["X-Trackgate-Rejected"] == "2"
    assert collector.received == []


async def test_a_stripped_device_id_leaves_the_request(
    braze: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    body = flush(events=[{"name": "ss", "data": {}, "alias": {"name": "a", "label": "l"}}])
    body["api_key"] = "brz-nodevice-key"
    answer = await send(http, braze, body, api_key="brz-nodevice-key")
    assert answer.status == 200
    forwarded = collector.received[0].json
    assert "device_id" not in forwarded
    assert forwarded["events"] == body["events"]


async def test_unknown_api_key_is_invalid_api_key_readable_by_allowed_origins(
    braze: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    body = flush(events=[ce("Added To Cart")]) | {"api_key": "nope"}
    answer = await send(http, braze, body, api_key="nope", headers={"Origin": APP})
    assert (answer.status, answer.json) == (200, {"error": "invalid_api_key"})
    assert answer.headers["Access-Control-Allow-Origin"] == APP
    answer = await send(
        http, braze, body, api_key="nope", headers={"Origin": "http://evil.example"}
    )
    assert answer.json == {"error": "invalid_api_key"}
    assert "Access-Control-Allow-Origin" not in answer.headers
    assert counted(braze, "unknown_stream", "_unknown") == 2  # the real reason
    assert collector.received == []


async def test_preflights_are_granted_from_the_braze_streams_origins(
    braze: Sidecar, http: aiohttp.ClientSession
) -> None:
    wanted = (
        "content-type,x-braze-api-key,x-braze-auth-signature,x-braze-datarequest,x-requested-with"
    )
    sent = {
        "Origin": APP,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": wanted,
    }
    answer = await post(http, braze.url + DATA, raw=b"", headers=sent, method="OPTIONS")
    assert answer.status == 204
    assert answer.headers["Access-Control-Allow-Origin"] == APP
    assert answer.headers["Access-Control-Allow-Headers"] == wanted
    sent["Origin"] = "http://evil.example"
    answer = await post(http, braze.url + DATA, raw=b"", headers=sent, method="OPTIONS")
    assert answer.status == 403


async def test_two_api_keys_conflict(
    braze: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    answer = await send(http, braze, flush(), api_key="brz-nodevice-key")
    assert answer.status == 400
    assert answer.json["error"] == "stream_id_conflict"
    assert answer.json["message"]
    assert collector.received == []


async def test_a_misspelled_key_is_malformed(
    braze: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    body = flush(events=[{"name": "ce", "data": {"n": "Added To Cart", "P": {"card_number": "1"}}}])
    answer = await send(http, braze, body)
    assert (answer.status, answer.json["error"]) == (400, "malformed_payload")
    assert collector.received == []


async def test_companion_endpoints_are_checked_and_forwarded_unchanged(
    braze: Sidecar, collector: Collector, http: aiohttp.ClientSession, keys: Keys
) -> None:
    raw = b'{"api_key":"brz-api-key-0001","device_id":"d","last_full_sync_at":0,"user_id":"u1"}'
    token = signature(keys)
    sent = {"X-Braze-Api-Key": KEY, "X-Braze-Auth-Signature": token}
    answer = await post(http, braze.url + "/api/v3/content_cards/sync", raw=raw, headers=sent)
    assert answer.status == 200
    assert collector.received[0].body == raw
    assert collector.received[0].headers["X-Braze-Auth-Signature"] == token
    answer = await post(
        http, braze.url + "/api/v3/feature_flags/sync", raw=raw, headers={"X-Braze-Api-Key": "nope"}
    )
    assert answer.json == {"error": "stream_id_conflict", "message": answer.json["message"]}
    answer = await post(
        http, braze.url + "/api/v3/feature_flags/sync", raw=b'{"api_key":"nope"}', headers={}
    )
    assert answer.json == {"error": "invalid_api_key"}


async def test_upstream_errors_keep_their_status_for_the_sdk_to_retry(
    make_sidecar: StartSidecar, keys: Keys, http: aiohttp.ClientSession
) -> None:
    sidecar = await make_sidecar(streams=braze_streams(keys), upstream="http://127.0.0.1:9")
    answer = await send(http, sidecar, flush(events=[{"name": "ss", "data": {}}]))
    assert answer.status == 502
    assert answer.headers["Retry-After"]
    assert answer.json["error"] == "upstream_unavailable"


# Every place a Braze request carries a customer id is judged: each item's `user_id`
# and `alias`, and the request's own — `device_id`, and `user_id` / `alias` at the top
# level (companions: Z(…, true) in the SDK's network-manager.js) or in `respond_with`
# (every data flush and template request).
CARDS = "/api/v3/content_cards/sync"
RESPOND_U2 = {"respond_with": {"user_id": "u2", "config": {"config_time": 0}}}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (DATA, flush(events=[ce("Added To Cart")], **RESPOND_U2)),
        (DATA, flush(events=[ce("Added To Cart")], user_id="u2")),
        (DATA, flush(attributes=[{"user_id": "u2", "first_name": "Ann"}])),
        (DATA, flush(**RESPOND_U2)),  # no items: the SDK asks for triggers only
        (CARDS, {"api_key": KEY, "device_id": "dev-1", "user_id": "u2"}),
        ("/api/v3/template", {"api_key": KEY, "device_id": "dev-1", **RESPOND_U2}),
    ],
    ids=["respond_with", "top-level", "attributes", "respond_with-only", "companion", "template"],
)
async def test_a_user_id_that_is_not_the_signed_one_is_ids_mismatch_wherever_it_travels(
    braze: Sidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    keys: Keys,
    path: str,
    body: dict[str, Any],
) -> None:
    answer = await send(http, braze, body, path=path, token=signature(keys, "u1"))
    assert answer.status == 200
    assert answer.json["auth_error"]["error_code"] == 28
    assert answer.json["auth_error"]["reason"].startswith("ids_mismatch: ")
    assert collector.received == []
    assert counted(braze, "ids_mismatch") == 1


async def test_a_request_level_user_id_needs_its_signature(
    braze: Sidecar, collector: Collector, http: aiohttp.ClientSession, keys: Keys
) -> None:
    companion = {"api_key": KEY, "device_id": "dev-1", "user_id": "u1"}
    answer = await send(http, braze, companion, path=CARDS)  # no signature
    assert answer.json["auth_error"]["error_code"] == 26
    answer = await send(http, braze, companion, path=CARDS, token=signature(keys, ttl=-60))
    assert answer.json["auth_error"]["error_code"] == 22  # as /data/ answers it
    assert collector.received == []
    # events without a user id of their own in a flush for an unsigned user are that
    # user's (Braze merges them into the user the request names)
    body = flush(events=[ce("Added To Cart", user=None)], respond_with={"user_id": "u1"})
    answer = await send(http, braze, body)
    assert answer.json["auth_error"]["error_code"] == 26
    assert collector.received == []
    assert counted(braze, "signature_required") == 2
    answer = await send(http, braze, companion, path=CARDS, token=signature(keys))
    assert answer.status == 200
    assert collector.received[0].body == json.dumps(companion).encode()  # signed: unchanged
    answer = await send(http, braze, body, token=signature(keys))
    assert answer.status == 200
    assert collector.received[1].json == body


async def test_request_level_ids_of_a_denied_type_leave_the_request(
    make_sidecar: StartSidecar, collector: Collector, http: aiohttp.ClientSession, keys: Keys
) -> None:
    sidecar = await make_sidecar(streams=braze_streams(keys))
    alias = {"name": "a", "label": "l"}
    body = flush(
        events=[ce("Added To Cart", user=None)],
        alias=alias,
        respond_with={"triggers": True, "user_id": "u1", "alias": alias, "config": {}},
    ) | {"api_key": "brz-anonymous-key"}
    answer = await send(http, sidecar, body, api_key="brz-anonymous-key")
    assert answer.status == 200
    forwarded = collector.received[0].json
    assert forwarded["respond_with"] == {"triggers": True, "config": {}}
    assert "alias" not in forwarded
    assert "user_id" not in forwarded
    assert forwarded["device_id"] == "dev-1"
    assert forwarded["events"] == body["events"]
    # a companion's device_id on a stream that denies it
    companion = {"api_key": "brz-nodevice-key", "device_id": "dev-1", "alias": alias, "n": 1}
    answer = await send(http, sidecar, companion, path=CARDS, api_key="brz-nodevice-key")
    assert answer.status == 200
    assert collector.received[1].json == {"api_key": "brz-nodevice-key", "alias": alias, "n": 1}
    # a respond_with user that is no item's, every id of the request denied: the request's
    # own command is rejected (no_customer_ids), its ids leave, the items go
    event = {"name": "ss", "data": {}, "alias": alias, "user_id": "u8"}
    body = {"api_key": "brz-nodevice-key", "device_id": "d", "respond_with": {"user_id": "u9"}}
    body["events"] = [event]
    answer = await send(http, sidecar, body, api_key="brz-nodevice-key")
    assert answer.status == 200
    assert answer.headers["X-Trackgate-Rejected"] == "1"
    assert collector.received[2].json == {
        "api_key": "brz-nodevice-key",
        "respond_with": {},
        "events": [{"name": "ss", "data": {}, "alias": alias}],
    }


@pytest.mark.parametrize(
    "extra",
    [
        {"respond_with": {"User_id": "u2"}},
        {"USER_ID": "u2"},
        {"respond_with": {"alias": {"name": "a", "Label": "l"}}},
        {"respond_with": "u2"},
        {"user_id": "u1", "respond_with": {"user_id": "u2"}},
        {"user_id": 1},
    ],
    ids=["respond_with-spelling", "top-level-spelling", "alias-spelling", "not-an-object",
         "two-user-ids", "not-a-string"],
)  # fmt: skip
async def test_request_level_ids_that_cannot_be_judged_are_malformed(
    braze: Sidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    keys: Keys,
    extra: dict[str, Any],
) -> None:
    body = flush(events=[ce("Added To Cart")], **extra)
    answer = await send(http, braze, body, token=signature(keys, "u1"))
    assert (answer.status, answer.json["error"]) == (400, "malformed_payload")
    assert collector.received == []


# A data flush exactly as @braze/web-sdk 6.13.0 sent it from Chromium (tests/capture_braze.py;
# how and what: tests/fixtures/braze/README.md).
CAPTURED = Path(__file__).parent / "fixtures" / "braze" / "web_sdk_6.13.0_flush.json"


async def test_explain_on_a_captured_web_sdk_flush_matches_the_sidecar(
    braze: Sidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    keys: Keys,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = signature(keys)
    args = ["--config", str(braze.rules_path), "--stream", "brz", "--token", token, str(CAPTURED)]
    code = main(["explain", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["endpoint"] == "data"
    assert report["token"] == "valid"
    assert report["request"]["outcome"] == "forwarded"
    # ce Added To Cart, ce Debug, p (purchase), inc logins, add password_hints; attributes
    commands = report["commands"]
    assert [c["reason"] for c in commands] == [None, "event_type_denied", None, None, None, None]
    assert commands[1]["message"] == "event type 'Debug' is not allowed on stream 'brz'"
    assert [c["stripped"] for c in commands] == [
        {"event_properties": ["card_number"]},
        {},
        {"event_properties": ["card_number"]},
        {"customer_properties": ["logins"]},
        {"customer_properties": ["password_hints"]},
        {"customer_properties": ["password"]},
    ]
    assert report["would"]["reject"] == {"event_type_denied": 1}
    captured = json.loads(CAPTURED.read_bytes())
    forwarded = report["forwarded_body"]
    # the denied event and the operations on stripped attributes are gone, the rest kept
    assert [(e["name"], e["data"].get("n")) for e in forwarded["events"]] == [
        ("ce", "Added To Cart"),
        ("p", None),
    ]
    assert forwarded["events"][0]["data"]["p"] == {"sku": "X-1"}
    assert forwarded["events"][1]["data"] == {
        "pid": "sku-1", "c": "EUR", "p": "9.99", "q": 2, "pr": {"gift": True}
    }  # fmt: skip
    assert forwarded["attributes"] == [
        {
            "user_id": "u1",
            "first_name": "Ann",
            "email": "ann@example.com",
            "custom": {"plan": "gold"},
        }
    ]
    unjudged = ("events", "attributes")
    assert {k: v for k, v in forwarded.items() if k not in unjudged} == {
        k: v for k, v in captured.items() if k not in unjudged
    }  # the envelope (respond_with, device, device_id, …) as the SDK sent it
    answer = await post(
        http,
        braze.url + DATA,
        raw=CAPTURED.read_bytes(),
        headers={"X-Braze-Api-Key": KEY, "X-Braze-Auth-Signature": token},
    )
    assert answer.status == 200
    assert answer.headers["X-Trackgate-Rejected"] == "1"
    assert collector.received[0].json == forwarded
    assert "hunter2" not in collector.received[0].body.decode()
