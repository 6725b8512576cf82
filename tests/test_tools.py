"""The CLI tools of SPEC §7: check, schema, keygen, token, explain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
import yaml

from sidecar.cli import main
from tests.conftest import StartSidecar
from tests.harness import BACKEND_SECRET, WEB_ID, Collector, Sidecar
from tests.http import batch_url, event, events_url, post
from tests.jwt_keys import ENV as JWT_ENV
from tests.jwt_keys import Keys, jwt_streams, mint
from tests.test_config import ENV, INVALID, ROOT, expectation

ExplainCase = tuple[str, dict[str, Any]]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_check_prints_the_path_of_each_problem(
    path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    code, _, err = run(capsys, "check", "--config", str(path))
    assert code == 1
    assert expectation(path) in err


def test_schema_validates_the_shipped_configs_and_rejects_a_bad_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "schema")
    assert code == 0
    schema = json.loads(out)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for name in ("demo.yaml", "example.yaml"):
        validator.validate(yaml.safe_load((ROOT / "config" / name).read_text()))
    for bad in (
        "unknown_stream_key",
        "bad_alg",
        "inline_secret",
        "wrong_version",
        "secret_sha_and_value",
    ):
        document = yaml.safe_load((ROOT / f"tests/fixtures/invalid/{bad}.yaml").read_text())
        assert list(validator.iter_errors(document)), bad


async def test_keygen_and_token_produce_tokens_a_sidecar_accepts(
    tmp_path: Path,
    make_sidecar: StartSidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, out, _ = run(capsys, "keygen", "hmac", "--kid", "web-1", "--alg", "HS384")
    secret = dict(line.split(": ", 1) for line in out.splitlines())["secret"]
    run(capsys, "keygen", "rsa", "--out", str(tmp_path), "--kid", "app-1")
    _, out, _ = run(capsys, "keygen", "secret")
    stream_secret, digest = (line.split(": ", 1)[1].strip('"') for line in out.splitlines())
    streams = f"""
- name: web
  id: {WEB_ID}
  type: public
  jwt:
    keys:
      - {{kid: web-1, alg: HS384, secret: {{env: WEB_SECRET}}}}
      - {{kid: app-1, alg: RS256, public_key: {{file: {tmp_path / "app-1.pem"}}}}}
  customer_ids: {{allow: [cookie], signed_only: [registered]}}
  event_types: {{signed_only: [purchase]}}
- name: backend
  id: backend-1
  type: private
  secrets: [{{id: s, sha256: "{digest}"}}]
  customer_ids: {{allow: [cookie]}}
  event_types: {{allow: [page_visit]}}
"""
    sidecar = await make_sidecar(streams=streams, env={"WEB_SECRET": secret})
    monkeypatch.setenv("WEB_SECRET", secret)
    body = event("purchase", cookie="c", registered="u-1")
    for source in (
        ["--secret-env", "WEB_SECRET", "--kid", "web-1", "--alg", "HS384"],
        ["--private-key", str(tmp_path / "app-1.key"), "--kid", "app-1"],
    ):
        code, token, _ = run(capsys, "token", *source, "--ids", "registered=u-1", "--ttl", "1h")
        assert code == 0
        answer = await post(
            http,
            events_url(sidecar.url),
            body,
            headers={"Authorization": f"Bearer {token.strip()}"},
        )
        assert answer.status == 200, answer.body
    answer = await post(
        http,
        events_url(sidecar.url, "backend-1"),
        event(),
        headers={"X-Stream-Secret": stream_secret},
    )
    assert answer.status == 200
    assert len(collector.received) == 3


def test_token_refuses_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "token", "--secret-env", "NOT_SET_X", "--kid", "k", "--ids", "a=b")
    assert code == 2 and "NOT_SET_X is not set" in err


EXPLAIN_CASES: list[ExplainCase] = [
    ("allowed", event("page_visit")),
    ("stripped", event("page_visit", cookie="c", phone_id="+1")),
    ("denied", event("internal_debug")),
    ("no ids left", event("page_visit", phone_id="+1")),
    (
        "batch",
        {
            "commands": [
                {"name": "customers/events", "data": event(t, cookie="c", phone_id="p")}
                for t in ("page_visit", "nope")
            ]
        },
    ),
    ("all rejected", {"commands": [{"name": "customers/events", "data": event("nope")}]}),
    ("malformed", {"customer_ids": "x"}),
]


@pytest.mark.parametrize(("name", "body"), EXPLAIN_CASES, ids=[c[0] for c in EXPLAIN_CASES])
async def test_explain_matches_what_the_sidecar_does(
    sidecar: Sidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    body: dict[str, Any],
) -> None:
    monkeypatch.setenv("BACKEND_SECRET", BACKEND_SECRET)
    body_path = sidecar.rules_path.parent / "body.json"
    body_path.write_text(json.dumps(body))
    code, out, err = run(
        capsys, "explain", "--config", str(sidecar.rules_path), "--stream", "web", str(body_path)
    )
    assert code == 0, err
    report = json.loads(out)
    url = batch_url(sidecar.url) if "commands" in body else events_url(sidecar.url)
    answer = await post(http, url, body)
    request = report["request"]
    if request["outcome"] == "rejected":
        assert (answer.status, answer.code) == (request["status"], request["reason"])
        assert collector.received == []
    elif request["outcome"] == "answered":
        assert answer.status == 200 and collector.received == []
        assert [r["code"] for r in answer.json["results"]] == [
            c["reason"] for c in report["commands"]
        ]
    else:
        assert answer.status == 200
        assert collector.received[0].json == report["forwarded_body"]
    if "commands" in body and request["outcome"] == "forwarded":
        codes = [r.get("code") for r in answer.json["results"]]
        assert codes == [c["reason"] for c in report["commands"]]


@pytest.mark.parametrize("ttl", [3600, -60])
async def test_explain_with_a_token_matches_the_sidecar(
    make_sidecar: StartSidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    ttl: int,
) -> None:
    keys = Keys.create(tmp_path)
    for name, value in JWT_ENV.items():
        monkeypatch.setenv(name, value)
    sidecar = await make_sidecar(streams=jwt_streams(keys), env=JWT_ENV)
    body = event("purchase", cookie="c", registered="u-1")
    (tmp_path / "body.json").write_text(json.dumps(body))
    token = mint(keys, ttl=ttl)
    code, out, err = run(
        capsys, "explain", "--config", str(sidecar.rules_path), "--stream", "web",
        "--token", token, str(tmp_path / "body.json"),
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    answer = await post(
        http, events_url(sidecar.url), body, headers={"Authorization": f"Bearer {token}"}
    )
    assert report["token"] == ("valid" if ttl > 0 else "token_expired")
    if ttl > 0:
        assert answer.status == 200 and collector.received[0].json == report["forwarded_body"]
    else:
        assert (answer.status, answer.code) == (
            report["request"]["status"],
            report["request"]["reason"],
        )
