"""Keys from an identity provider (SPEC §2 "Remote keys", §5.2) through the running
sidecar, against a real HTTPS provider (`tests/idp.py`) that the tests rotate,
break and count fetches on. Intervals are set down to 1 s; no test waits longer
than a few seconds."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization

from sidecar.keys.refresh import RemoteJwks
from sidecar.keys.remote import RemoteKeys
from tests.conftest import StartSidecar
from tests.harness import ROOT, Collector, Sidecar, rules_text, serve_process
from tests.http import Answer, events_url, post
from tests.idp import Provider

SIGNED_EVENT = {"customer_ids": {"cookie": "c-1", "registered": "u-1"}, "event_type": "purchase"}
FAST_RELOAD = "reload_interval_seconds: 0.2\n"


def app_stream(idp: Provider, jwt_extra: str = "", **jwks: object) -> str:
    """The `app` stream of SPEC §2: keys from `idp` (its JWKS URL unless `jwks` says)."""
    options = {"url": idp.jwks_url, "ca_file": str(idp.ca_file), **jwks}
    listed = ", ".join(f"{name}: {value}" for name, value in options.items() if value)
    return stream_with(f"jwks: {{{listed}}}", jwt_extra)


def stream_with(keys: str, jwt_extra: str = "") -> str:
    return f"""
- name: app
  id: 40494d18-e714-4c8c-bbd9-35225de4e81d
  type: public
  jwt:
    enforcement: enforce
    {keys}
{jwt_extra}
  customer_ids: {{default: deny, allow: [cookie], signed_only: [registered]}}
  event_types: {{default: deny, allow: [page_visit], signed_only: [purchase]}}
"""


async def send(http: aiohttp.ClientSession, sidecar: Sidecar, token: str) -> Answer:
    headers = {"Authorization": f"Bearer {token}"}
    return await post(http, events_url(sidecar.url), SIGNED_EVENT, headers=headers)


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll `condition` until it holds (fails after `seconds`)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.02)


def fetches(sidecar: Sidecar, result: str) -> float:
    labels = {"stream": "app", "result": result}
    sample = sidecar.metrics.registry.get_sample_value("trackgate_jwks_fetches_total", labels)
    return sample or 0.0


async def readyz(http: aiohttp.ClientSession, sidecar: Sidecar) -> tuple[int, Any]:
    async with http.get(f"{sidecar.admin_url}/readyz") as answer:
        return answer.status, await answer.json()


@pytest.fixture
async def start_app(make_sidecar: StartSidecar, idp: Provider) -> Callable[..., Awaitable[Sidecar]]:
    """Starts the sidecar with the `app` stream; waits for the first fetch to end."""

    async def start(jwt_extra: str = "", server: str = "", **jwks: object) -> Sidecar:
        sidecar = await make_sidecar(streams=app_stream(idp, jwt_extra, **jwks), server=server)
        await until(lambda: sum(fetches(sidecar, r) for r in RESULTS) >= 1)
        return sidecar

    return start


RESULTS = ("success", "timeout", "unreachable", "http_status", "invalid")


async def test_a_rotated_in_key_costs_no_failed_request_and_one_fetch(
    start_app: Callable[..., Awaitable[Sidecar]], idp: Provider, http: aiohttp.ClientSession
) -> None:
    sidecar = await start_app()
    assert (await send(http, sidecar, idp.mint("k1"))).status == 200
    idp.add_key("k2")  # the provider rotates without notice
    idp.remove_key("k1")
    tokens = [idp.mint("k2", n=n) for n in range(20)]
    answers = await asyncio.gather(*(send(http, sidecar, token) for token in tokens))
    assert [a.status for a in answers] == [200] * 20  # the first waited for the refetch
    assert len(idp.jwks_fetches) == 2  # the load's, and exactly one early refetch


async def test_a_request_waits_for_its_early_refetch_at_most_timeout_seconds(
    start_app: Callable[..., Awaitable[Sidecar]], idp: Provider, http: aiohttp.ClientSession
) -> None:
    sidecar = await start_app(timeout_seconds=1)
    idp.failure, idp.hang_seconds = "hang", 3
    started = time.monotonic()
    answer = await send(http, sidecar, idp.random_kid_token())
    assert 0.9 <= time.monotonic() - started < 2.5
    assert (answer.status, answer.code) == (401, "token_unknown_kid")


async def test_a_flood_of_unknown_kids_causes_at_most_one_fetch_per_cooldown(
    start_app: Callable[..., Awaitable[Sidecar]], idp: Provider, http: aiohttp.ClientSession
) -> None:
    sidecar = await start_app()
    tokens = [idp.random_kid_token() for _ in range(200)]
    answers = await asyncio.gather(*(send(http, sidecar, token) for token in tokens))
    assert {(a.status, a.code) for a in answers} == {(401, "token_unknown_kid")}
    assert len(idp.jwks_fetches) <= 2  # the load's and at most one early refetch


async def test_an_outage_is_served_from_the_last_good_keys(
    start_app: Callable[..., Awaitable[Sidecar]], idp: Provider, http: aiohttp.ClientSession
) -> None:
    sidecar = await start_app(refresh_seconds=1, stale_if_error_seconds=60)
    idp.failure = "500"
    await until(lambda: fetches(sidecar, "http_status") >= 1)
    assert (await send(http, sidecar, idp.mint("k1"))).status == 200
    status, detail = await readyz(http, sidecar)
    state = detail["key_sources"]["app"]
    assert status == 200
    assert (state["keys"], state["kids"]) == (1, ["k1"])
    assert "HTTP 500" in state["last_error"]
    assert state["last_success"] <= time.time() < state["keys_until"]


async def test_keys_stale_beyond_the_window_answer_503_until_the_provider_recovers(
    start_app: Callable[..., Awaitable[Sidecar]], idp: Provider, http: aiohttp.ClientSession
) -> None:
    sidecar = await start_app(
        refresh_seconds=1, stale_if_error_seconds=1, unknown_kid_cooldown_seconds=1
    )
    idp.failure = "500"
    await until(lambda: fetches(sidecar, "http_status") >= 1)
    answer = await send(http, sidecar, idp.mint("k1"))
    deadline = time.monotonic() + 3
    while answer.status == 200:  # until the window ends
        assert time.monotonic() < deadline, "the stale keys were never dropped"
        await asyncio.sleep(0.05)
        answer = await send(http, sidecar, idp.mint("k1"))
    assert (answer.status, answer.code) == (503, "keys_unavailable")
    assert answer.headers["Retry-After"] == "5"
    assert "WWW-Authenticate" not in answer.headers  # retry; no need for a new token
    status, detail = await readyz(http, sidecar)
    assert (status, detail["key_sources"]["app"]["keys"]) == (200, 0)
    open_event = {"customer_ids": {"cookie": "c-1"}, "event_type": "page_visit"}
    assert (await post(http, events_url(sidecar.url), open_event)).status == 200
    idp.failure = None  # the provider is back: the next token's refetch recovers
    deadline = time.monotonic() + 3
    while (await send(http, sidecar, idp.mint("k1"))).status != 200:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)


async def test_a_redirect_is_never_followed(
    start_app: Callable[..., Awaitable[Sidecar]], idp: Provider, http: aiohttp.ClientSession
) -> None:
    idp.failure = "redirect"
    sidecar = await start_app()
    assert fetches(sidecar, "http_status") == 1
    assert idp.moved_fetches == 0
    answer = await send(http, sidecar, idp.mint("k1"))
    assert (answer.status, answer.code) == (503, "keys_unavailable")
    _, detail = await readyz(http, sidecar)
    assert "redirects are not followed" in detail["key_sources"]["app"]["last_error"]


@pytest.mark.parametrize(
    ("failure", "result", "problem"),
    [
        ("500", "http_status", "answered HTTP 500"),
        ("hang", "timeout", "no answer within 1 s"),
        ("oversize", "invalid", "larger than 1 MiB"),
        ("oversize_chunked", "invalid", "larger than 1 MiB"),
        ("redirect", "http_status", "answered HTTP 302"),
        ("not_json", "invalid", "Content-Type is not JSON"),
        ("not_a_key_set", "invalid", "not a key set"),
        ("weak_key", "invalid", "at least 2048 are needed"),
    ],
)
async def test_a_broken_answer_fails_the_fetch_and_keeps_the_last_good_keys(
    start_app: Callable[..., Awaitable[Sidecar]],
    idp: Provider,
    http: aiohttp.ClientSession,
    failure: str,
    result: str,
    problem: str,
) -> None:
    sidecar = await start_app(refresh_seconds=1, timeout_seconds=1)
    idp.hang_seconds = 3
    idp.failure = failure
    await until(lambda: fetches(sidecar, result) >= 1)
    assert (await send(http, sidecar, idp.mint("k1"))).status == 200
    _, detail = await readyz(http, sidecar)
    assert problem in detail["key_sources"]["app"]["last_error"]
    assert idp.moved_fetches == 0


async def test_failed_fetches_back_off_from_one_second_doubling(
    start_app: Callable[..., Awaitable[Sidecar]], idp: Provider
) -> None:
    idp.failure = "500"
    await start_app(refresh_seconds=1)
    await until(lambda: len(idp.jwks_fetches) >= 3, seconds=6)
    first, second, third = idp.jwks_fetches[:3]
    assert 0.9 <= second - first < 1.9  # 1 s after the first failure
    assert 1.9 <= third - second < 3.9  # 2 s after the second


async def test_cache_control_max_age_replaces_refresh_seconds_clamped_to_a_minute(
    start_app: Callable[..., Awaitable[Sidecar]], idp: Provider
) -> None:
    idp.cache_control = "public, max-age=2"  # clamped up to 60 s
    await start_app(refresh_seconds=1)
    await asyncio.sleep(2.5)  # refresh_seconds alone would have fetched twice more
    assert len(idp.jwks_fetches) == 1


async def test_a_removed_kids_cached_token_stops_working_after_the_next_refresh(
    start_app: Callable[..., Awaitable[Sidecar]], idp: Provider, http: aiohttp.ClientSession
) -> None:
    idp.add_key("k2")
    sidecar = await start_app(refresh_seconds=1)
    token = idp.mint("k1")
    assert (await send(http, sidecar, token)).status == 200  # verified, now cached
    assert (await send(http, sidecar, token)).status == 200
    idp.remove_key("k1")
    await until(lambda: fetches(sidecar, "success") >= 2)
    answer = await send(http, sidecar, token)
    assert (answer.status, answer.code) == (401, "token_unknown_kid")


async def test_a_reload_that_keeps_the_jwks_settings_keeps_the_fetched_keys(
    start_app: Callable[..., Awaitable[Sidecar]], idp: Provider, http: aiohttp.ClientSession
) -> None:
    sidecar = await start_app(server=FAST_RELOAD)
    first = sidecar.holder.current
    text = sidecar.rules_path.read_text()
    sidecar.rules_path.write_text(text.replace("allow: [page_visit]", "allow: [page_visit, x]"))
    await until(lambda: sidecar.holder.current is not first)
    assert (await send(http, sidecar, idp.mint("k1"))).status == 200  # no wait, no fetch
    assert len(idp.jwks_fetches) == 1
    # changed settings: a new source fetches; the old one stops
    kept = sidecar.holder.current
    sidecar.rules_path.write_text(text.replace("jwks: {", "jwks: {timeout_seconds: 4, "))
    await until(lambda: sidecar.holder.current is not kept)
    await until(lambda: len(idp.jwks_fetches) == 2)
    await until(lambda: sum(t.get_name() == "jwks-app" for t in asyncio.all_tasks()) == 1)


async def test_a_reload_that_drops_the_remote_source_stops_it_and_its_gauges(
    start_app: Callable[..., Awaitable[Sidecar]], idp: Provider, http: aiohttp.ClientSession
) -> None:
    sidecar = await start_app(server=FAST_RELOAD)
    labels = {"stream": "app"}
    gauge = lambda: sidecar.metrics.registry.get_sample_value("trackgate_jwks_keys", labels)  # noqa: E731
    assert gauge() == 1
    text = sidecar.rules_path.read_text()
    jwks = next(line for line in text.splitlines() if "jwks:" in line)
    sidecar.rules_path.write_text(text.replace(jwks.strip(), static_key(idp, "k1")))
    await until(lambda: gauge() is None)
    await until(lambda: not any(t.get_name() == "jwks-app" for t in asyncio.all_tasks()))
    assert (await send(http, sidecar, idp.mint("k1"))).status == 200  # the static key now
    _, detail = await readyz(http, sidecar)
    assert detail["key_sources"] == {}


ISSUER = "https://idp.example.com/"
CLAIM_CASES = [
    ({"iss": ISSUER, "aud": "tracking"}, 200, None),
    ({"iss": ISSUER, "aud": ["other", "tracking"]}, 200, None),
    ({"iss": "https://evil.example.com/", "aud": "tracking"}, 401, "token_issuer_invalid"),
    ({"iss": ISSUER.rstrip("/"), "aud": "tracking"}, 401, "token_issuer_invalid"),
    ({"aud": "tracking"}, 401, "token_issuer_invalid"),
    ({"iss": ISSUER, "aud": "other-app"}, 401, "token_audience_invalid"),
    ({"iss": ISSUER, "aud": ["other-app"]}, 401, "token_audience_invalid"),
    ({"iss": ISSUER, "aud": [7]}, 401, "token_audience_invalid"),
    ({"iss": ISSUER}, 401, "token_audience_invalid"),
]


@pytest.mark.parametrize("source", ["remote", "static"])
@pytest.mark.parametrize(("claims", "status", "code"), CLAIM_CASES)
async def test_issuer_and_audience_are_checked_whatever_the_key_source(
    make_sidecar: StartSidecar,
    idp: Provider,
    http: aiohttp.ClientSession,
    source: str,
    claims: dict[str, Any],
    status: int,
    code: str | None,
) -> None:
    checks = f'    issuer: "{ISSUER}"\n    audiences: [tracking, analytics]'
    streams = app_stream(idp, checks)
    if source == "static":
        streams = stream_with(static_key(idp, "k1"), checks)
    sidecar = await make_sidecar(streams=streams)
    answer = await send(http, sidecar, idp.mint("k1", **claims))
    assert (answer.status, answer.code if status != 200 else None) == (status, code)


def static_key(idp: Provider, kid: str) -> str:
    """A `keys:` line with the provider's key `kid` configured statically (a PEM file)."""
    pem = idp.directory / f"{kid}.pem"
    pem.write_bytes(
        idp.signing[kid]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return f"keys: [{{kid: {kid}, alg: ES256, public_key: {{file: {pem}}}}}]"


async def test_a_failed_fetch_discovers_the_jwks_uri_again(
    make_sidecar: StartSidecar, idp: Provider
) -> None:
    options = {"url": "", "discovery": f'"{idp.base}/"', "refresh_seconds": 1}
    sidecar = await make_sidecar(streams=app_stream(idp, f'    issuer: "{idp.issuer}"', **options))
    await until(lambda: fetches(sidecar, "success") == 2)
    assert idp.discovery_fetches == 1  # a discovered jwks_uri is kept while it works
    idp.failure = "500"
    await until(lambda: fetches(sidecar, "http_status") == 1)
    idp.failure = None
    await until(lambda: fetches(sidecar, "success") == 3)
    assert idp.discovery_fetches == 2  # the provider may have moved its keys


@pytest.mark.parametrize(("issuer", "status"), [("idp", 200), ("other", 503)])
async def test_discovery_finds_the_key_set_and_checks_the_providers_issuer(
    make_sidecar: StartSidecar,
    idp: Provider,
    http: aiohttp.ClientSession,
    issuer: str,
    status: int,
) -> None:
    expected = idp.issuer if issuer == "idp" else "https://other.example.com/"
    streams = app_stream(idp, f'    issuer: "{expected}"', url="", discovery=f'"{idp.base}/"')
    sidecar = await make_sidecar(streams=streams)
    await until(lambda: fetches(sidecar, "success") + fetches(sidecar, "invalid") >= 1)
    answer = await send(http, sidecar, idp.mint("k1", iss=expected))
    assert answer.status == status
    assert idp.discovery_fetches == (1 if issuer == "idp" else 2)  # + the token's refetch
    assert len(idp.jwks_fetches) == (1 if issuer == "idp" else 0)
    if status == 503:
        _, detail = await readyz(http, sidecar)
        assert "its issuer is not jwt.issuer" in detail["key_sources"]["app"]["last_error"]


async def test_keys_not_for_signing_are_skipped_with_a_log_line(
    start_app: Callable[..., Awaitable[Sidecar]],
    idp: Provider,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    idp.extra = [
        {"kty": "RSA", "kid": "enc-1", "use": "enc", "n": "AQAB", "e": "AQAB"},
        {"kty": "oct", "kid": "shared", "k": "c2VjcmV0"},
    ]
    with caplog.at_level(logging.INFO, logger="trackgate"):
        sidecar = await start_app()
    assert fetches(sidecar, "success") == 1
    assert (await send(http, sidecar, idp.mint("k1"))).status == 200
    skipped = [r.fields["key"] for r in caplog.records if r.getMessage() == "jwks_key_skipped"]  # type: ignore[attr-defined]
    assert skipped == ["keys[1]: use is not 'sig'", "keys[2]: key type is not RSA, EC or OKP"]
    [changed] = [r.fields for r in caplog.records if r.getMessage() == "jwks_keys_changed"]  # type: ignore[attr-defined]
    assert (changed["added"], changed["removed"]) == (["k1"], [])
    assert idp.jwks()["keys"][0]["x"] not in caplog.text  # never key material


async def test_a_fetched_kid_that_a_static_key_uses_fails_the_fetch(
    start_app: Callable[..., Awaitable[Sidecar]], idp: Provider, http: aiohttp.ClientSession
) -> None:
    sidecar = await start_app(f"    {static_key(idp, 'k1')}")
    assert fetches(sidecar, "invalid") == 1
    assert (await send(http, sidecar, idp.mint("k1"))).status == 200  # the static key
    _, detail = await readyz(http, sidecar)
    assert "'k1' is already used" in detail["key_sources"]["app"]["last_error"]


async def test_the_fetch_uses_aiohttps_client_and_never_blocks_the_loop(
    make_sidecar: StartSidecar, idp: Provider, http: aiohttp.ClientSession
) -> None:
    idp.failure, idp.hang_seconds = "hang", 3
    sidecar = await make_sidecar(streams=app_stream(idp, timeout_seconds=2))
    open_event = {"customer_ids": {"cookie": "c-1"}, "event_type": "page_visit"}
    slowest, last = 0.0, time.monotonic()
    deadline = last + 1.5
    while last < deadline:  # the fetch hangs all along
        assert (await post(http, events_url(sidecar.url), open_event)).status == 200
        await asyncio.sleep(0.02)
        slowest, last = max(slowest, time.monotonic() - last), time.monotonic()
    assert slowest < 0.5  # the loop was never held up: each turn came at once
    assert len(idp.jwks_fetches) == 1 and fetches(sidecar, "timeout") == 0  # still waiting
    assert "aiohttp" in idp.user_agents[0]  # aiohttp's ClientSession, not urllib


async def test_metrics_count_fetches_keys_and_the_last_success(
    start_app: Callable[..., Awaitable[Sidecar]], idp: Provider, http: aiohttp.ClientSession
) -> None:
    idp.add_key("k2")
    sidecar = await start_app()
    async with http.get(f"{sidecar.admin_url}/metrics") as answer:
        text = await answer.text()
    assert 'trackgate_jwks_fetches_total{result="success",stream="app"} 1.0' in text
    assert 'trackgate_jwks_keys{stream="app"} 2.0' in text
    sample = sidecar.metrics.registry.get_sample_value(
        "trackgate_jwks_last_success_timestamp_seconds", {"stream": "app"}
    )
    assert sample is not None and abs(sample - time.time()) < 10


# -- trackgate check [--fetch] -------------------------------------------------------


async def trackgate_check(path: Path, *options: str) -> tuple[int, str, str]:
    """`trackgate check` as a real process (the provider keeps serving meanwhile)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", "check", "--config", str(path), *options,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_check_validates_without_fetching_and_check_fetch_lists_the_keys(
    tmp_path: Path, idp: Provider
) -> None:
    idp.add_key("k2")
    idp.extra = [{"kty": "RSA", "kid": "enc-1", "use": "enc", "n": "AQAB", "e": "AQAB"}]
    path = tmp_path / "rules.yaml"
    path.write_text(rules_text("http://127.0.0.1:1", app_stream(idp)))
    code, out, _ = await trackgate_check(path)
    assert (code, idp.jwks_fetches) == (0, [])
    assert "ok (1 streams" in out
    code, out, err = await trackgate_check(path, "--fetch")
    assert (code, len(idp.jwks_fetches)) == (0, 1), err
    assert f"stream 'app': {idp.jwks_url}: 2 keys" in out
    assert "  kid k1  alg ES256\n  kid k2  alg ES256\n  skipped keys[2]: use is not 'sig'" in out
    idp.failure = "500"
    code, _, err = await trackgate_check(path, "--fetch")
    assert code == 1
    assert f"stream 'app': {idp.jwks_url}: fetch failed (http_status)" in err
    assert "Traceback" not in err


# -- lifecycle ------------------------------------------------------------------------


async def test_closing_the_key_sources_stops_their_tasks_and_clients(
    start_app: Callable[..., Awaitable[Sidecar]],
) -> None:
    sidecar = await start_app()
    source = live_source(sidecar)
    assert any(t.get_name() == "jwks-app" for t in asyncio.all_tasks())
    await sidecar.reloader.key_sources.close()
    assert not any(t.get_name() == "jwks-app" for t in asyncio.all_tasks())
    assert source._session is not None and source._session.closed


def live_source(sidecar: Sidecar) -> RemoteJwks:
    rules = sidecar.holder.current
    assert rules is not None and rules.streams[0].jwt is not None
    keys = rules.streams[0].jwt.keys
    assert isinstance(keys, RemoteKeys) and keys.live is not None
    return keys.live


async def test_trackgate_serve_fetches_at_start_and_stops_the_fetcher_on_sigterm(
    tmp_path: Path, idp: Provider, collector: Collector, http: aiohttp.ClientSession
) -> None:
    served = await serve_process(
        tmp_path, collector.url, "shutdown_delay_seconds: 0\n", capture=True,
        streams=app_stream(idp, refresh_seconds=1),
    )  # fmt: skip
    headers = {"Authorization": f"Bearer {idp.mint('k1')}"}
    deadline = time.monotonic() + 5
    while (await post(http, events_url(served.base), SIGNED_EVENT, headers=headers)).status != 200:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    served.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(served.process.wait(), 20) == 0
    assert served.process.stdout is not None
    output = (await served.process.stdout.read()).decode()
    events = [json.loads(line)["event"] for line in output.splitlines()]
    assert "jwks_keys_changed" in events
    assert events[-2:] == ["key_sources_stopped", "stopped"]
    assert "library_log" not in events  # no pending task destroyed, no unclosed client
