"""JWT validation (SPEC §5.2) through the running sidecar: algorithms, the attack
suite, the validation checklist and every enforcement mode."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import StartSidecar
from tests.harness import Collector, Sidecar
from tests.http import Answer, batch_url, customers_url, events_url, post
from tests.jwt_keys import (
    ENV,
    KID_ALGS,
    Keys,
    b64,
    forge_hmac,
    good_claims,
    jwt_streams,
    mint,
    public_pem,
)

SIGNED_EVENT = {
    "customer_ids": {"cookie": "c-1", "registered": "u-1"},
    "event_type": "purchase",
    "properties": {"total": 10},
}
OPEN_EVENT = {"customer_ids": {"cookie": "c-1"}, "event_type": "page_visit"}

Send = Callable[..., Awaitable[Answer]]


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys.create(tmp_path_factory.mktemp("keys"))


@pytest.fixture
async def start(make_sidecar: StartSidecar, keys: Keys) -> Callable[..., Awaitable[Sidecar]]:
    async def start_mode(mode: str = "enforce", extra: str = "") -> Sidecar:
        return await make_sidecar(streams=jwt_streams(keys, mode, extra), env=ENV)

    return start_mode


@pytest.fixture
async def send(start: Callable[..., Awaitable[Sidecar]], http: aiohttp.ClientSession) -> Send:
    sidecars: dict[str, Sidecar] = {}

    async def send_with(
        body: Any, token: str | None = None, mode: str = "enforce", **kw: Any
    ) -> Answer:
        if mode not in sidecars:
            sidecars[mode] = await start(mode)
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        headers.update(kw.pop("headers", {}))
        return await post(
            http, kw.pop("url", events_url)(sidecars[mode].url), body, headers=headers
        )

    return send_with


@pytest.mark.parametrize("kid", list(KID_ALGS))
async def test_tokens_of_every_algorithm_are_accepted(
    send: Send, collector: Collector, keys: Keys, kid: str
) -> None:
    token = mint(keys, kid)
    answer = await send(SIGNED_EVENT, token)
    assert answer.status == 200, answer.body
    [received] = collector.received
    assert received.json == SIGNED_EVENT
    assert "Authorization" not in received.headers  # the consumed token is never forwarded
    assert token.encode() not in received.body


async def test_a_repeated_token_is_verified_once_through_the_sidecar(
    send: Send, collector: Collector, keys: Keys, signature_checks: list[str]
) -> None:
    """The benchmark's workload (b) in miniature: the same token on every request
    reaches the signature check once; the rest are answered from the cache."""
    checks = signature_checks
    token = mint(keys, "rs256")
    for _ in range(6):
        assert (await send(SIGNED_EVENT, token)).status == 200
    assert checks == ["rs256"]
    assert len(collector.received) == 6
    other = mint(keys, "rs256", claims={"n": 2})
    assert (await send(SIGNED_EVENT, other)).status == 200
    assert checks == ["rs256", "rs256"]  # a different token is verified


# -- the attack suite: each case its reason code, nothing forwarded -----------------


def attack_tokens(keys: Keys, fetch_url: str) -> list[tuple[str, str, str]]:
    """(name, token, reason): `fetch_url` is where jku/x5u point (a recording server)."""
    secret = b"h" * 32
    now = int(time.time())
    signed = mint(keys, "hs256")
    header, payload, signature = signed.split(".")
    rs_pem = (keys.directory / "rs256.pem").read_bytes()
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    attacker_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(attacker.public_key()))
    cases = []
    for alg in ("none", "None", "NONE", "nOnE"):
        unsigned = f"{b64(json.dumps({'alg': alg, 'kid': 'hs256'}).encode())}.{payload}"
        cases.append((f"alg {alg} without signature", f"{unsigned}.", "token_malformed"))
        cases.append(
            (f"alg {alg} with signature", f"{unsigned}.{signature}", "token_algorithm_mismatch")
        )
    cases += [
        ("empty signature", f"{header}.{payload}.", "token_malformed"),
        (
            "RSA public key PEM as HS256 secret, kid of the RSA key",
            forge_hmac({"alg": "HS256", "kid": "rs256"}, good_claims(), rs_pem),
            "token_algorithm_mismatch",
        ),
        (
            "RSA public key PEM as HS256 secret, kid of the HMAC key",
            forge_hmac({"alg": "HS256", "kid": "hs256"}, good_claims(), rs_pem),
            "token_bad_signature",
        ),
    ]
    for kid in ("", "../../dev/null", "x' OR '1'='1", "k; rm -rf / #", "$(id)", None, 7):
        head: dict[str, Any] = {"alg": "HS256"} if kid is None else {"alg": "HS256", "kid": kid}
        cases.append((f"kid {kid!r}", forge_hmac(head, good_claims(), secret), "token_unknown_kid"))
    for name in ("jku", "x5u"):
        cases.append(
            (
                f"{name} pointing elsewhere",
                jwt.encode(
                    good_claims(), attacker, "RS256", headers={"kid": "rs256", name: fetch_url}
                ),
                "token_bad_signature",
            )
        )
    cases += [
        (
            "embedded jwk",
            jwt.encode(good_claims(), attacker, "RS256", headers={"kid": "rs256", "jwk": attacker_jwk}),
            "token_bad_signature",
        ),
        (
            "embedded x5c",
            jwt.encode(good_claims(), attacker, "RS256", headers={"kid": "rs256", "x5c": ["MIIB"]}),
            "token_bad_signature",
        ),
        (
            "unknown crit",
            forge_hmac({"alg": "HS256", "kid": "hs256", "crit": ["exp-ext"], "exp-ext": 1}, good_claims(), secret),
            "token_malformed",
        ),
        ("=-padded segments", f"{header}==.{payload}.{signature}", "token_malformed"),
        ("ES256 r = s = 0", mint(keys, "es256").rsplit(".", 1)[0] + "." + b64(bytes(64)), "token_bad_signature"),
        ("20 KB token (a head within server.limits)", signed + "A" * 20_000, "token_malformed"),
        ("tampered payload", f"{header}.{b64(json.dumps(good_claims(ids={'registered': 'admin'})).encode())}.{signature}", "token_bad_signature"),
        ("exp missing", forge_hmac({"alg": "HS256", "kid": "hs256"}, {"ids": {"registered": "u-1"}}, secret), "token_exp_missing"),
        ("exp a string", forge_hmac({"alg": "HS256", "kid": "hs256"}, good_claims(exp=str(now + 60)), secret), "token_exp_missing"),
        ("exp in the past", mint(keys, "hs256", ttl=-3600), "token_expired"),
        ("exp more than 90 days ahead", mint(keys, "hs256", ttl=91 * 86400), "token_lifetime_too_long"),
        ("nbf in the future", mint(keys, "hs256", claims={"nbf": now + 3600}), "token_claims_invalid"),
        ("ids not an object", mint(keys, "hs256", ids=["registered", "u-1"]), "token_claims_invalid"),
        ("ids with an empty value", mint(keys, "hs256", ids={"registered": ""}), "token_claims_invalid"),
        ("ids with a non-string value", mint(keys, "hs256", ids={"registered": 42}), "token_claims_invalid"),
        ("ids empty", mint(keys, "hs256", ids={}), "token_claims_invalid"),
        ("ids missing", forge_hmac({"alg": "HS256", "kid": "hs256"}, {"exp": now + 60}, secret), "token_claims_invalid"),
        ("not a JWS", "not-a-token", "token_malformed"),
        ("JSON serialization", json.dumps({"payload": payload, "signatures": []}), "token_malformed"),
    ]  # fmt: skip
    return cases


@pytest.fixture
async def jku_server() -> Any:
    """A loopback server the jku/x5u headers point at: it must never be called."""
    hits: list[str] = []

    async def record(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"keys": []})

    app = web.Application()
    app.router.add_get("/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}/jwks.json", hits
    await runner.cleanup()


async def test_attack_suite(
    send: Send, collector: Collector, keys: Keys, jku_server: tuple[str, list[str]]
) -> None:
    url, hits = jku_server
    results = {}
    for name, token, reason in attack_tokens(keys, url):
        answer = await send(SIGNED_EVENT, token)
        results[name] = (answer.status, answer.code)
        assert (answer.status, answer.code) == (401, reason), name
        assert answer.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"'), name
        assert token not in answer.body.decode()
    assert collector.received == []
    assert hits == []  # jku/x5u were never fetched
    print(f"\nattack suite: {len(results)} cases, all rejected with their reason codes")


async def test_two_different_tokens_are_ambiguous(
    start: Callable[..., Awaitable[Sidecar]], collector: Collector, keys: Keys
) -> None:
    sidecar = await start()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            events_url(sidecar.url),
            json=SIGNED_EVENT,
            headers=[
                ("Authorization", f"Bearer {mint(keys, 'hs256')}"),
                ("Authorization", f"Bearer {mint(keys, 'rs256')}"),
            ],
        ) as response,
    ):
        assert response.status == 400
        assert (await response.json())["code"] == "token_ambiguous"
    assert collector.received == []


# -- the validation checklist ---------------------------------------------------


async def test_a_signed_only_event_is_accepted_with_a_valid_token(
    send: Send, collector: Collector, keys: Keys
) -> None:
    answer = await send(SIGNED_EVENT, mint(keys))
    assert answer.status == 200
    assert collector.received[0].json == SIGNED_EVENT


async def test_a_signed_only_event_without_a_token_is_403(send: Send, collector: Collector) -> None:
    answer = await send(SIGNED_EVENT)
    assert (answer.status, answer.code) == (403, "signature_required")
    assert "WWW-Authenticate" not in answer.headers
    assert collector.received == []


async def test_an_expired_token_is_401_and_a_fresh_one_succeeds(
    send: Send, collector: Collector, keys: Keys
) -> None:
    answer = await send(SIGNED_EVENT, mint(keys, ttl=-60))
    assert (answer.status, answer.code) == (401, "token_expired")
    assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]
    assert collector.received == []
    retried = await send(SIGNED_EVENT, mint(keys))
    assert retried.status == 200
    assert [r.json for r in collector.received] == [SIGNED_EVENT]


async def test_mismatched_identifiers_reject_the_whole_request(
    send: Send, collector: Collector, keys: Keys
) -> None:
    token = mint(keys, ids={"registered": "u-1"})
    other = {**SIGNED_EVENT, "customer_ids": {"cookie": "c", "registered": "u-2"}}
    answer = await send(other, token)
    assert (answer.status, answer.code) == (403, "ids_mismatch")
    commands = [
        {"name": "customers/events", "data": OPEN_EVENT},
        {"name": "customers/events", "data": other},
    ]
    batch = await send({"commands": commands}, token, url=batch_url)
    assert (batch.status, batch.code) == (403, "ids_mismatch")
    assert collector.received == []


async def test_allowed_and_denied_ids_keep_only_the_allowed_even_when_signed(
    send: Send, collector: Collector, keys: Keys
) -> None:
    token = mint(keys, ids={"registered": "u-1", "phone_id": "+1555"})
    body = {
        **SIGNED_EVENT,
        "customer_ids": {"cookie": "c-1", "registered": "u-1", "phone_id": "+1555"},
    }
    answer = await send(body, token)
    assert answer.status == 200
    assert collector.received[0].json["customer_ids"] == {"cookie": "c-1", "registered": "u-1"}


async def test_a_signed_only_id_not_in_the_token_rejects_its_command(
    send: Send, collector: Collector, keys: Keys
) -> None:
    token = mint(keys, ids={"cookie": "c-1"})
    commands = [
        {"name": "customers/events", "data": OPEN_EVENT},
        {
            "name": "customers/events",
            "data": {**OPEN_EVENT, "customer_ids": {"cookie": "c-1", "registered": "u-9"}},
        },
    ]
    answer = await send({"commands": commands}, token, url=batch_url)
    assert answer.status == 200
    assert [r.get("code") for r in answer.json["results"]] == [None, "signature_required"]
    assert collector.received[0].json == {"commands": [commands[0]]}


async def test_signed_only_properties_are_stripped_without_a_token(
    send: Send, collector: Collector, keys: Keys
) -> None:
    body = {
        "customer_ids": {"cookie": "c-1"},
        "properties": {"first_name": "Ada", "email": "a@b.c"},
    }
    answer = await send(body, url=customers_url)
    assert answer.status == 200
    assert collector.received[0].json["properties"] == {"first_name": "Ada"}
    answer = await send(body, mint(keys, ids={"cookie": "c-1"}), url=customers_url)
    assert collector.received[1].json["properties"] == {"first_name": "Ada", "email": "a@b.c"}


async def test_subject_tokens_sign_one_id(
    start: Callable[..., Awaitable[Sidecar]],
    collector: Collector,
    keys: Keys,
    http: aiohttp.ClientSession,
) -> None:
    sidecar = await start(extra="    subject: {claim: sub, id_type: registered}")
    token = jwt.encode(
        {"sub": "u-1", "exp": int(time.time()) + 60}, "h" * 32, "HS256", headers={"kid": "hs256"}
    )
    ok = await post(
        http, events_url(sidecar.url), SIGNED_EVENT, headers={"Authorization": f"Bearer {token}"}
    )
    assert ok.status == 200
    other = {**SIGNED_EVENT, "customer_ids": {"cookie": "c", "registered": "u-2"}}
    bad = await post(
        http, events_url(sidecar.url), other, headers={"Authorization": f"Bearer {token}"}
    )
    assert (bad.status, bad.code) == (403, "ids_mismatch")
    no_sub = jwt.encode({"exp": int(time.time()) + 60}, "h" * 32, "HS256", headers={"kid": "hs256"})
    missing = await post(
        http, events_url(sidecar.url), SIGNED_EVENT, headers={"Authorization": f"Bearer {no_sub}"}
    )
    assert (missing.status, missing.code) == (401, "token_claims_invalid")


# -- every enforcement mode x token x need ------------------------------------------

MATRIX = [
    # (mode, token, needs signature, status, code)
    ("enforce", "none", False, 200, None),
    ("enforce", "valid", False, 200, None),
    ("enforce", "bad", False, 200, None),
    ("enforce", "none", True, 403, "signature_required"),
    ("enforce", "valid", True, 200, None),
    ("enforce", "bad", True, 401, "token_bad_signature"),
    ("monitor", "none", False, 200, None),
    ("monitor", "valid", False, 200, None),
    ("monitor", "bad", False, 200, None),
    ("monitor", "none", True, 200, None),
    ("monitor", "valid", True, 200, None),
    ("monitor", "bad", True, 200, None),
    ("off", "none", False, 200, None),
    ("off", "valid", False, 200, None),
    ("off", "bad", False, 200, None),
    ("off", "none", True, 200, None),
    ("off", "valid", True, 200, None),
    ("off", "bad", True, 200, None),
]


@pytest.mark.parametrize(("mode", "token", "needs", "status", "code"), MATRIX)
async def test_enforcement_modes(
    send: Send,
    collector: Collector,
    keys: Keys,
    mode: str,
    token: str,
    needs: bool,
    status: int,
    code: str | None,
) -> None:
    tokens = {"none": None, "valid": mint(keys), "bad": mint(keys)[:-4] + "AAAA"}
    body = SIGNED_EVENT if needs else OPEN_EVENT
    answer = await send(body, tokens[token], mode=mode)
    assert (answer.status, answer.code if status >= 400 else None) == (status, code)
    assert [r.json for r in collector.received] == ([body] if status == 200 else [])


async def test_no_token_secret_or_key_appears_in_logs_or_error_bodies(
    send: Send, keys: Keys, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = [*ENV.values(), public_pem(keys.rsa).decode().splitlines()[1]]
    tokens = [
        mint(keys),
        mint(keys, ttl=-60),
        mint(keys)[:-4] + "AAAA",
        forge_hmac({"alg": "HS256", "kid": "../x"}, good_claims(), b"s"),
    ]
    bodies = []
    for token in tokens:
        for body in (SIGNED_EVENT, OPEN_EVENT):
            bodies.append((await send(body, token)).body.decode())
    captured = caplog.text + capsys.readouterr().out + "".join(bodies)
    for value in [*secrets, *tokens, *(t.split(".")[2] for t in tokens)]:
        assert value not in captured


# -- where the token travels (jwt.token_from) -----------------------------------

TOKEN_FROM = """
    token_from:
      - {header: Authorization, scheme: Bearer}
      - {header: X-Tracking-Token}
      - {cookie: tg_token}
  forward_cookies: [session, tg_token]
"""


@pytest.mark.parametrize(
    ("place", "status"),
    [
        ("bearer", 200),
        ("header", 200),
        ("cookie", 200),
        ("bearer+header", 200),  # the same token twice is one token
        ("none", 403),
    ],
)
async def test_tokens_are_read_from_the_listed_places_and_consumed(
    start: Callable[..., Awaitable[Sidecar]],
    collector: Collector,
    http: aiohttp.ClientSession,
    keys: Keys,
    place: str,
    status: int,
) -> None:
    """Finding 10: browser SDKs cannot put a JWT in `Authorization` (analytics.js
    overwrites it); `jwt.token_from` names other places, and the token is consumed
    wherever it travels — even from a cookie the stream forwards."""
    sidecar = await start(extra=TOKEN_FROM)
    token = mint(keys)
    headers = {"Cookie": "session=s-1; other=o"}
    if "bearer" in place:
        headers["Authorization"] = f"Bearer {token}"
    if "header" in place:
        headers["X-Tracking-Token"] = token
    if place == "cookie":
        headers["Cookie"] = f"session=s-1; tg_token={token}; other=o"
    answer = await post(http, events_url(sidecar.url), SIGNED_EVENT, headers=headers)
    assert answer.status == status, answer.body
    if status != 200:
        assert answer.code == "signature_required"
        return
    received = collector.received[0].headers
    assert "Authorization" not in received and "X-Tracking-Token" not in received
    assert received.getall("Cookie") == ["session=s-1"]
    assert token not in str(received)


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Tracking-Token", "{1}"), ("Cookie", "tg_token={2}")],
        [("Authorization", "Bearer {1}"), ("X-Tracking-Token", "{2}")],
        [("Cookie", "tg_token={1}; tg_token={2}")],
        [("X-Tracking-Token", "{1}"), ("X-Tracking-Token", "{2}")],
    ],
    ids=["header+cookie", "bearer+header", "two-cookies", "two-headers"],
)
async def test_different_tokens_in_any_two_places_are_ambiguous(
    start: Callable[..., Awaitable[Sidecar]],
    collector: Collector,
    http: aiohttp.ClientSession,
    keys: Keys,
    headers: list[tuple[str, str]],
) -> None:
    sidecar = await start(extra=TOKEN_FROM)
    first, second = mint(keys, "hs256"), mint(keys, "rs256")
    sent = [(n, v.replace("{1}", first).replace("{2}", second)) for n, v in headers]
    async with http.post(events_url(sidecar.url), json=SIGNED_EVENT, headers=sent) as response:
        assert response.status == 400
        assert (await response.json())["code"] == "token_ambiguous"
    assert collector.received == []


async def test_a_segment_browser_stream_keeps_its_basic_write_key_with_a_header_token(
    make_sidecar: StartSidecar, collector: Collector, http: aiohttp.ClientSession, keys: Keys
) -> None:
    """analytics.js sends `Authorization: Basic base64(writeKey:)`; the token travels in
    `X-Tracking-Token`, is consumed, and the collector still gets the write key."""
    streams = jwt_streams(keys, "enforce", "    token_from: [{header: X-Tracking-Token}]\n")
    streams = streams.replace("  type: public\n", "  type: public\n  dialect: segment\n")
    streams = streams.replace(
        "customer_ids: {default: deny,",
        "customer_ids: {default: deny, allow: [anonymous_id], signed_only: [user_id],",
    )
    streams = streams.replace(
        ", allow: [cookie], signed_only: [registered], deny: [phone_id]}", "}"
    )
    streams = streams.replace("signed_only: [purchase]", "signed_only: [Order Completed]")
    sidecar = await make_sidecar(streams=streams, env=ENV)
    write_key = sidecar.holder.current.streams[0].id
    basic = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    token = mint(keys, ids={"user_id": "u-1"})
    message = {"type": "track", "event": "Order Completed", "userId": "u-1", "anonymousId": "a"}
    answer = await post(
        http, sidecar.url + "/v1/track", message,
        headers={"Authorization": basic, "X-Tracking-Token": token},
    )  # fmt: skip
    assert answer.status == 200, answer.body
    received = collector.received[0].headers
    assert received.getall("Authorization") == [basic]
    assert "X-Tracking-Token" not in received
