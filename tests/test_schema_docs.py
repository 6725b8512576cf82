"""One table describes every field (sidecar/schema_docs.py): `trackgate schema`
carries it as `description` and `default`, docs/configuration.md renders it, and
its defaults are the ones the rules compile to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from sidecar.cli import main
from sidecar.config import load_rules
from sidecar.field_tables import render
from sidecar.keys.remote import RemoteKeys
from sidecar.rules import SetName
from sidecar.schema import SCHEMA
from sidecar.schema_docs import FIELDS, documented_schema, properties
from tests.harness import ROOT

DOCS = ROOT / "docs/configuration.md"


def printed_schema(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["schema"]) == 0
    schema: dict[str, Any] = json.loads(capsys.readouterr().out)
    return schema


def test_every_field_of_the_printed_schema_has_a_description(
    capsys: pytest.CaptureFixture[str],
) -> None:
    schema = printed_schema(capsys)
    fields = list(properties(schema))
    assert len(fields) > 80
    assert [path for path, node, _ in fields if not node.get("description")] == []
    jsonschema.Draft202012Validator.check_schema(schema)


def test_every_entry_of_the_table_names_a_field() -> None:
    paths = {path for path, _, _ in properties(SCHEMA)}
    assert set(FIELDS) - paths == set()


def test_every_default_is_valid_for_its_own_field() -> None:
    for path, node, _ in properties(documented_schema()):
        if "default" in node:
            jsonschema.Draft202012Validator(node).validate(node["default"])
            assert not isinstance(node["default"], str) or node["default"], path


def test_the_docs_tables_are_generated_from_the_table_and_current() -> None:
    text = DOCS.read_text()
    assert text.count("<!-- fields ") >= 5
    assert render(text, documented_schema()) == text, (
        "stale: run python -m sidecar.field_tables docs/configuration.md"
    )
    assert '`mode` | `"enforce"` |' in text  # a row, as rendered


def test_the_documented_defaults_are_what_the_rules_compile_to(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        """
version: 1
server: {upstream: {url: "http://127.0.0.1:1"}}
streams:
  - name: web
    id: web-1
    type: public
    jwt: {keys: [{kid: k, alg: HS256, secret: {env: SECRET}}]}
  - name: app
    id: app-1
    type: public
    jwt: {jwks: {url: "https://idp.example.com/jwks.json"}}
"""
    )
    rules = load_rules(path, env={"SECRET": "s" * 32})
    server, [stream, app] = rules.server, rules.streams
    assert stream.jwt is not None and app.jwt is not None
    assert isinstance(app.jwt.keys, RemoteKeys)
    remote = app.jwt.keys.settings
    compiled = {
        "server.listen": ":".join(map(str, server.listen)),
        "server.admin_listen": ":".join(map(str, server.admin_listen)),
        "server.max_body_bytes": server.max_body_bytes,
        "server.reload_interval_seconds": server.reload_interval_seconds,
        "server.shutdown_delay_seconds": server.shutdown_delay_seconds,
        "server.workers": server.workers,
        "server.trusted_proxies": list(server.trusted_proxies),
        **{f"server.limits.{k}": getattr(server.limits, k) for k in server.limits.__slots__},
        **{
            f"server.upstream.{k}": getattr(server.upstream, k)
            for k in ("timeout_seconds", "max_connections", "idle_seconds", "max_answer_bytes")
        },
        "streams[].dialect": stream.dialect,
        "streams[].mode": stream.mode.value,
        "streams[].debug_headers": stream.debug_headers,
        "streams[].forward_cookies": sorted(stream.forward_cookies),
        **{f"streams[].{s}.default": stream.permissions.of(s).default.value for s in SetName},
        "streams[].jwt.enforcement": stream.jwt.enforcement.value,
        "streams[].jwt.leeway_seconds": stream.jwt.leeway_seconds,
        "streams[].jwt.max_lifetime_days": stream.jwt.max_lifetime_seconds / 86_400,
        "streams[].jwt.kid_required": stream.jwt.kid_required,
        "streams[].jwt.token_from": [
            {
                k: v
                for k, v in (("header", p.header), ("scheme", p.scheme), ("cookie", p.cookie))
                if v
            }
            for p in stream.jwt.token_from
        ],
        **{
            f"streams[].jwt.jwks.{k}": getattr(remote, k)
            for k in (
                "refresh_seconds",
                "stale_if_error_seconds",
                "unknown_kid_cooldown_seconds",
                "timeout_seconds",
            )
        },
    }
    defaults = {p: n["default"] for p, n, _ in properties(documented_schema()) if "default" in n}
    segment = {p for p in defaults if p.startswith("streams[].limits.")}  # the dialect's own
    assert set(defaults) - segment == set(compiled)
    assert {p: defaults[p] for p in compiled} == compiled
