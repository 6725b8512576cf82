"""`lab`: a declaration using every feature of the language, for the table-driven tests
of declared dialects (tests/test_declared*.py), and helpers to judge bodies with it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from sidecar.body import Body
from sidecar.config import load_rules
from sidecar.dialects import Dialect, PlainRequest
from sidecar.explain import explain
from sidecar.rules import Rules

LAB = """
dialects:
  - name: lab
    anonymous_id: anon
    stream_id:
      - header: X-Lab-Key
      - query: key
      - basic: user
      - body: /key
      - command: /k
    endpoints:
      - path: /lab/batch
        commands:
          - {pointer: /events, shape: event}
          - {pointer: /profiles, shape: profile}
      - path: /lab/one
        commands: [{pointer: "", shape: event, as: object}]
      - path: /lab/{stream_id}/either
        commands: [{pointer: "", shape: event, as: either}]
        stream_id: [{path: stream_id}]
      - path: /lab/form
        carrier: {form: data, base64: optional}
        commands: [{pointer: "", shape: event, as: either}]
      - path: /lab/b64url
        carrier: {base64: always, alphabet: url, padding: false}
        commands: [{pointer: /events, shape: event}]
      - path: /lab/sp
        commands: [{pointer: /data, shape: sp}]
      - path: /lab/fallback
        commands:
          - {pointer: /batch, shape: event}
          - {pointer: "", shape: event, as: either}
    shapes:
      - name: event
        ids:
          - {pointer: /anon, type: anon}
          - {pointer: /$anon, type: anon}
          - {pointer: /user/id, type: user}
          - {in: document, pointer: /visitor/id, type: visitor}
        event_type: {pointer: /name}
        event_properties: [{pointer: /props, exclude: [k]}]
        customer_properties:
          - {pointer: /traits, operators: [$set, $unset]}
        discriminator: /name
        cases:
          - when: [identify]
            kind: customer
          - when: [ping]
            kind: passthrough
        otherwise: {}
      - name: profile
        kind: customer
        ids: [{pointer: /anon, type: anon}]
        customer_properties: [{pointer: /$set}, {pointer: /$unset}]
      - name: sp
        embedded:
          - {pointer: /ue_pr}
          - {pointer: /ue_px, base64: always, alphabet: url}
        ids: [{pointer: /duid, type: anon}]
        discriminator: /e
        cases:
          - when: [se]
            event_type: {pointer: /se_ac}
            event_properties: [{pointer: "", only: [se_ca, se_la]}]
          - when: [ue]
            event_type:
              pointers: [/ue_pr/data/schema, /ue_px/data/schema]
              pattern: '^iglu:([^/]+/[^/]+)/'
            event_properties: [{pointer: /ue_pr/data/data}, {pointer: /ue_px/data/data}]
    answers:
      rejected:
        body: {"ok": false, "code": "{code}", "status": "{status}", "why": "{code}: {message}"}
        statuses: [400, 403]
        overrides:
          - reasons: [unknown_stream]
            status: 200
            body: "unknown: {code}"
      all_rejected: {status: 202, body: {"ok": true, "rejected": "{rejected}"}}
      partial: {status: 207, body: {"rejected": "{rejected_indices}"}}
"""

STREAMS = """
streams:
  - name: lab
    id: lab-1
    type: public
    dialect: lab
    customer_ids: {default: deny, allow: [anon, visitor], deny: [user]}
    event_types: {default: deny, allow: [view, click, identify, buy, com.acme/link], deny: [secret]}
    customer_properties: {default: deny, allow: [lang, plan], deny: [email]}
    event_properties: {default: allow, deny: [card]}
  - name: lab-novisitor
    id: lab-2
    type: public
    dialect: lab
    customer_ids: {default: deny, allow: [anon], deny: [visitor]}
    event_types: {default: allow}
"""


def lab_rules(tmp_path: Path) -> Rules:
    """The lab declaration and its streams, loaded like any rules file."""
    return rules_of(tmp_path, LAB + STREAMS)


def rules_of(tmp_path: Path, text: str) -> Rules:
    """A rules file of `dialects` and `streams` (YAML text) in front of nothing."""
    path = tmp_path / "rules.yaml"
    path.write_text(
        "version: 1\nserver: {upstream: {url: 'http://127.0.0.1:1'}}\n" + textwrap.dedent(text)
    )
    return load_rules(path, env={})


def judge(rules: Rules, endpoint: str, body: Any, stream: str = "lab") -> dict[str, Any]:
    """`trackgate explain` on `body` (JSON unless bytes)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return explain(rules, stream, raw, endpoint, None)


def request(
    path: str, headers: dict[str, str] | None = None, query: dict[str, str] | None = None
) -> PlainRequest:
    return PlainRequest(
        "POST",
        path,
        MultiDictProxy(MultiDict(query or {})),
        CIMultiDictProxy(CIMultiDict(headers or {})),
    )


def stream_id_of(rules: Rules, path: str, body: bytes = b"", **kwargs: Any) -> str | None:
    endpoint = rules.router.match(path)
    assert endpoint is not None
    return endpoint.dialect.stream_id(request(path, **kwargs), endpoint, Body(body))


def dialect_of(rules: Rules, name: str = "lab") -> Dialect:
    return rules.router.dialects[name]
