"""Rules file → compiled rules (SPEC §2, §4): valid files, every invalid fixture, templates."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sidecar.config import load_rules
from sidecar.dialects import BUILTIN
from sidecar.errors import ConfigError
from sidecar.keys.refresh import RemoteSettings
from sidecar.keys.remote import RemoteKeys
from sidecar.rules import Access, Enforcement, SetName, StreamType

ROOT = Path(__file__).resolve().parent.parent
INVALID = sorted((ROOT / "tests/fixtures/invalid").glob("*.yaml"))
ENV = {
    "WEB_JWT_SECRET": "w" * 32,
    "BACKEND_SECRET_OLD": "an-old-backend-secret",
    "SHORT_SECRET": "0123456789abcdef",
    "GOOD_SECRET": "g" * 32,
    "EMPTY_SECRET": "",
}


def expectation(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    return first.removeprefix("# expect: ")


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_each_invalid_fixture_names_the_bad_field(path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_rules(path, ENV)
    assert expectation(path) in str(caught.value)


def test_config_errors_never_echo_secret_values() -> None:
    path = ROOT / "tests/fixtures/invalid/inline_secret.yaml"
    with pytest.raises(ConfigError) as caught:
        load_rules(path, ENV)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "streams"),
    [("demo.yaml", {"web", "backend"}), ("example.yaml", {"web", "app", "backend"})],
)
def test_shipped_configs_load(name: str, streams: set[str]) -> None:
    rules = load_rules(ROOT / "config" / name, ENV)
    assert {s.name for s in rules.streams} == streams
    assert len(rules.version) == 12


def test_example_config_compiles_every_option() -> None:
    rules = load_rules(ROOT / "config/example.yaml", ENV)
    web = rules.by_id["40494d18-e714-4c8c-bbd9-35225de4e81d"]
    assert web.jwt is not None
    assert web.jwt.enforcement is Enforcement.ENFORCE
    assert {k.kid: k.alg for k in web.jwt.keys.current().by_kid.values()} == {
        "web-2026-11": "HS256",
        "app-rsa-1": "RS256",
        "idp-ec-1": "ES256",
    }
    assert web.jwt.max_lifetime_seconds == 90 * 86400
    assert web.cors is not None and "https://shop.example.com" in web.cors.allowed_origins
    perms = web.permissions
    assert perms.customer_properties.access("password") is Access.DENY
    assert perms.customer_properties.access("email") is Access.SIGNED_ONLY
    assert perms.event_properties.access("card_number") is Access.DENY
    assert perms.event_properties.access("anything") is Access.ALLOW
    backend = rules.by_id["7f1c2d9e-0b8a-4a57-9d39-2f1f0c7e5a10"]
    assert backend.type is StreamType.PRIVATE
    assert [s.id for s in backend.secrets] == ["k-2026-11", "k-2026-05"]
    app = rules.by_id["0c1f6a52-2b7e-4d43-9b1a-6f3e2d1c0b9a"]
    assert app.jwt is not None and isinstance(app.jwt.keys, RemoteKeys)
    assert app.jwt.keys.settings == RemoteSettings(
        url="https://idp.example.com/.well-known/jwks.json",
        discovery=None,
        issuer="https://idp.example.com/",
        ca_pem=None,
    )  # every remote setting written out at its default
    assert (app.jwt.issuer, app.jwt.audiences) == ("https://idp.example.com/", {"tracking"})
    assert rules.sources[0] == ROOT / "config/example.yaml"
    assert {p.name for p in rules.sources[1:]} == {"app-rsa-1.pem", "jwks.json"}


def write(tmp_path: Path, streams: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(
        'version: 1\nserver:\n  upstream: {url: "http://127.0.0.1:1"}\nstreams:\n' + streams
    )
    return path


@pytest.mark.parametrize("dialect", sorted(BUILTIN))
@pytest.mark.parametrize("template", ["public", "private"])
def test_a_template_alone_fills_three_sets(tmp_path: Path, template: str, dialect: str) -> None:
    """Every dialect ships both templates, in its own names (SPEC §4)."""
    secrets = ', secrets: [{id: s, sha256: "' + "a" * 64 + '"}]' if template == "private" else ""
    path = write(
        tmp_path,
        f"  - {{name: s, id: s1, type: {template}, dialect: {dialect}, "
        f"template: {template}{secrets}}}\n",
    )
    stream = load_rules(path).streams[0]
    for set_name, spec in BUILTIN[dialect].templates[template].items():
        permission_set = stream.permissions.of(SetName(set_name))
        assert permission_set.default.value == spec["default"]
        for level in ("allow", "signed_only", "deny"):
            assert set(permission_set.names(Access(level))) == set(spec.get(level, ()))


def test_stream_lists_override_the_template_name_by_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - name: s\n    id: s1\n    type: public\n    template: public\n"
        "    event_types: {default: allow, deny: [purchase], allow: [signup]}\n"
        "    customer_ids: {signed_only: [cookie]}\n",
    )
    perms = load_rules(path).streams[0].permissions
    assert perms.event_types.access("purchase") is Access.DENY  # template said signed_only
    assert perms.event_types.access("signup") is Access.ALLOW  # added
    assert perms.event_types.access("page_visit") is Access.ALLOW  # kept from the template
    assert perms.event_types.access("unlisted") is Access.ALLOW  # own default wins
    assert perms.event_types.access("consent") is Access.SIGNED_ONLY  # kept
    assert perms.customer_ids.access("cookie") is Access.SIGNED_ONLY
    assert perms.customer_ids.default is Access.DENY  # template default kept


def test_without_template_sets_fail_closed(tmp_path: Path) -> None:
    perms = (
        load_rules(write(tmp_path, "  - {name: s, id: s1, type: public}\n")).streams[0].permissions
    )
    assert perms.customer_ids.default is Access.DENY
    assert perms.event_types.default is Access.DENY
    assert perms.customer_properties.default is Access.DENY
    assert perms.event_properties.default is Access.ALLOW


@pytest.mark.parametrize(
    ("stream", "warning"),
    [
        ("{name: s, id: s1, type: public, template: public}", "signed_only items act as allow"),
        (
            "{name: s, id: s1, type: public, customer_ids: {deny: [cookie]}}",
            "customer id 'cookie' is deny",
        ),
        (
            "{name: s, id: s1, type: public, customer_ids: {allow: [cookie]}, "
            "event_types: {default: allow}}",
            "event_types.default is allow on a public stream",
        ),
        (
            "{name: s, id: s1, type: public, customer_ids: {allow: [cookie]}, "
            "customer_properties: {default: allow}}",
            "customer_properties.default is allow on a public stream",
        ),
        (
            "{name: s, id: s1, type: public, dialect: segment, customer_ids: {deny: [anonymous_id]}}",
            "customer id 'anonymous_id' is deny; the segment web SDKs",
        ),
        (
            "{name: s, id: s1, type: public, dialect: segment, "
            "customer_ids: {allow: [anonymous_id], signed_only: [registered]}}",
            "customer id 'registered' is never sent in the segment dialect",
        ),
        (
            "{name: s, id: s1, type: public, forward_cookies: ['*'], customer_ids: {allow: [cookie]}}",
            "forward_cookies is ['*']",
        ),
        (
            "{name: s, id: s1, type: public, customer_ids: {allow: [cookie]}, jwt: {jwks: "
            "{url: 'https://idp.example.com/jwks', refresh_seconds: 600, "
            "stale_if_error_seconds: 300}}}",
            "stale_if_error_seconds is below refresh_seconds",
        ),
    ],
)
def test_lint_warnings(tmp_path: Path, stream: str, warning: str) -> None:
    rules = load_rules(write(tmp_path, f"  - {stream}\n"))
    assert any(warning in w for w in rules.warnings), rules.warnings


@pytest.mark.parametrize(
    "stream",
    [
        "{name: s, id: s1, type: public, customer_ids: {allow: [cookie]}}",
        # the anonymous-id lint is the dialect's own: no word about `cookie` here
        "{name: s, id: s1, type: public, dialect: segment, customer_ids: {allow: [anonymous_id]}}",
    ],
)
def test_a_clean_public_stream_has_no_warnings(tmp_path: Path, stream: str) -> None:
    assert load_rules(write(tmp_path, f"  - {stream}\n")).warnings == ()


def test_a_dialect_option_on_another_dialect_s_stream_names_the_field(tmp_path: Path) -> None:
    stream = "{name: s, id: s1, type: public, limits: {max_message_bytes: 10}}"
    with pytest.raises(ConfigError, match=r"streams\[0\]\.limits: only segment streams take"):
        load_rules(write(tmp_path, f"  - {stream}\n"))


def test_secret_files_lose_their_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("file-secret\n")
    stream = "{name: b, id: b1, type: private, secrets: [{id: s, value: {file: secret}}]}"
    rules = load_rules(write(tmp_path, f"  - {stream}\n"))
    assert rules.streams[0].secrets[0].digest == hashlib.sha256(b"file-secret").digest()
    assert tmp_path / "secret" in rules.sources


def test_the_demo_template_re_allows_a_name_taken_out_of_allow(tmp_path: Path) -> None:
    """What the README's walk-through says about editing config/demo.yaml."""
    demo = (ROOT / "config/demo.yaml").read_text()
    assert "allow: [page_visit, view_item]" in demo
    for edit, access in (
        ("allow: [page_visit]", Access.ALLOW),  # the template still allows it
        ("allow: [page_visit]\n      deny: [view_item]", Access.DENY),
    ):
        path = tmp_path / "demo.yaml"
        path.write_text(demo.replace("allow: [page_visit, view_item]", edit))
        web = load_rules(path, env={}).streams[0]
        assert web.permissions.event_types.access("view_item") is access
