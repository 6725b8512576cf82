"""docs/example-collect-v2.md is true as printed: its declaration is the one in
config/collect-v2.yaml, its body is config/bodies/collect-v2.json, its `trackgate
explain` output is what explain prints, and a real sidecar in front of a real
collector forwards exactly the body explain shows."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from sidecar.cli import main
from tests.docs import ROOT, blocks
from tests.harness import Collector, Sidecar, start_sidecar
from tests.http import post

DOC = ROOT / "docs/example-collect-v2.md"
CONFIG = ROOT / "config/collect-v2.yaml"
BODY = ROOT / "config/bodies/collect-v2.json"
ENV = {"WEB_JWT_SECRET": "w" * 32}


def test_the_documented_declaration_is_the_config_files() -> None:
    (declaration,) = blocks(DOC, "yaml")
    assert CONFIG.read_text().endswith(declaration.text.strip() + "\n")


def test_the_documented_body_is_the_example_body() -> None:
    body, _ = blocks(DOC, "json")
    assert json.loads(body.text) == json.loads(BODY.read_text())


def test_the_documented_explain_output_is_what_explain_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEB_JWT_SECRET", ENV["WEB_JWT_SECRET"])
    _, printed = blocks(DOC, "json")
    assert main(["explain", "--config", str(CONFIG), "--stream", "shop", str(BODY)]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(printed.text)


@pytest.fixture
async def shop(tmp_path: Path, collector: Collector) -> AsyncIterator[Sidecar]:
    text = CONFIG.read_text().replace("http://127.0.0.1:8081", collector.url)
    path = tmp_path / "collect-v2.yaml"
    path.write_text(text)
    sidecar, runners = await start_sidecar(path, ENV)
    yield sidecar
    sidecar.watcher.cancel()
    for runner in reversed(runners):
        await runner.cleanup()
    await sidecar.reloader.key_sources.close()


async def test_the_sidecar_forwards_what_explain_shows(
    shop: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    _, printed = blocks(DOC, "json")
    answer = await post(http, f"{shop.url}/collect/v2", raw=BODY.read_bytes())
    assert answer.status == 200
    assert answer.headers["X-Trackgate-Rejected"] == "1"
    (received,) = collector.received
    assert received.path_qs == "/collect/v2"
    assert received.json == json.loads(printed.text)["forwarded_body"]


async def test_a_look_alike_key_is_refused_and_nothing_forwarded(
    shop: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    body = {"site": "shop-eu", "visitor": {"anon": "a"}, "hits": [], "Hits": []}
    answer = await post(http, f"{shop.url}/collect/v2", body)
    assert (answer.status, answer.json["error"]) == (400, "malformed_payload")
    every = {"site": "shop-eu", "visitor": {"anon": "a"}, "hits": [{"type": "purchase"}]}
    answer = await post(http, f"{shop.url}/collect/v2", every)
    assert (answer.status, answer.json) == (200, {"ok": True, "accepted": 0})
    assert collector.received == []


async def test_a_declaration_hot_reloads_with_the_rules(
    shop: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    body = {"site": "shop-eu", "visitor": {"anon": "a"}, "hits": [{"type": "page_view"}]}
    assert (await post(http, f"{shop.url}/collect/v2", body)).status == 200
    text = shop.rules_path.read_text()
    shop.rules_path.write_text(text.replace("path: /collect/v2", "path: /collect/v3"))
    assert await shop.reloader.reload()
    assert (await post(http, f"{shop.url}/collect/v2", body)).status == 404
    assert (await post(http, f"{shop.url}/collect/v3", body)).status == 200
    broken = text.replace("shape: hit", "shape: hits")
    shop.rules_path.write_text(broken)
    assert not await shop.reloader.reload()  # an invalid declaration changes nothing
    assert (await post(http, f"{shop.url}/collect/v3", body)).status == 200
    assert [r.path_qs for r in collector.received] == ["/collect/v2", "/collect/v3", "/collect/v3"]
