"""Declarations are validated with the rules, every problem naming its path (SPEC §2,
§3.5); they are linted, listed by `trackgate schema`, routed one path to one dialect,
and hot-reloaded with the rules file."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.cli import main
from sidecar.config import load_rules
from sidecar.dialects.catalog import DECLARED_BUILTIN, declared_builtins
from sidecar.errors import ConfigError
from sidecar.schema import declaration_errors

BASE: dict[str, Any] = {
    "name": "shop",
    "anonymous_id": "anon",
    "stream_id": [{"body": "/site"}],
    "endpoints": [{"path": "/collect", "commands": [{"pointer": "/hits", "shape": "hit"}]}],
    "shapes": [
        {
            "name": "hit",
            "ids": [{"pointer": "/anon", "type": "anon"}, {"pointer": "/member", "type": "member"}],
            "event_type": {"pointer": "/type"},
            "event_properties": [{"pointer": "/attrs"}],
        }
    ],
}
STREAM = {"name": "s", "id": "s-1", "type": "public", "dialect": "shop", "template": "public"}


def load(tmp_path: Path, dialects: list[Any], streams: list[Any] | None = None) -> Any:
    path = tmp_path / "rules.yaml"
    document = {
        "version": 1,
        "server": {"upstream": {"url": "http://127.0.0.1:1"}},
        "dialects": dialects,
        "streams": streams if streams is not None else [STREAM],
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_rules(path, env={})


def problems(tmp_path: Path, dialects: list[Any], streams: list[Any] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, dialects, streams)
    return "\n".join(caught.value.problems)


def changed(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    declaration = copy.deepcopy(BASE)
    change(declaration)
    return declaration


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change setting the dotted `path` (list items by index) to `value`."""

    def change(declaration: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = declaration
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is _DELETE:
            del node[last]
        else:
            node[int(last) if last.isdigit() else last] = value

    return change


_DELETE = object()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("name", "Shop"), "dialects[0].name: 'Shop' does not match"),
        (_set("name", "segment"), "dialects[0].name: 'segment' is a built-in dialect"),
        (_set("name", "posthog"), "dialects[0].name: 'posthog' is a built-in dialect"),
        (
            _set("anonymous_id", "cookie"),
            "dialects[0].anonymous_id: 'cookie' is not an id type of the shapes (anon, member)",
        ),
        (_set("stream_id", []), "dialects[0].stream_id: needs at least 1 item(s)"),
        (
            _set("stream_id", [{"body": "site"}]),
            "dialects[0].stream_id[0].body: 'site' does not match",
        ),
        (
            _set("stream_id", [{"header": "X", "query": "y"}]),
            "dialects[0].stream_id[0]: set exactly one of",
        ),
        (
            _set("stream_id", [{"path": "stream_id"}]),
            "dialects[0].endpoints[0].stream_id: a `path: stream_id` place needs a {stream_id} segment",
        ),
        (_set("stream_id", [{"cookie": "x"}]), "dialects[0].stream_id[0].cookie: unknown key"),
        (
            _set("endpoints.0.path", "collect"),
            "dialects[0].endpoints[0].path: 'collect' does not match",
        ),
        (
            _set("endpoints.0.path", "/a/{stream_id}/{stream_id}"),
            "dialects[0].endpoints[0].path: at most one {stream_id} segment",
        ),
        (
            _set("endpoints.0.commands.0.shape", "hits"),
            "dialects[0].endpoints[0].commands[0].shape: no shape is named 'hits' (hit)",
        ),
        (
            _set("endpoints.0.commands.0.as", "many"),
            "dialects[0].endpoints[0].commands[0].as: 'many' is not one of array, object, either",
        ),
        (
            _set("endpoints.0.carrier", {"base64": "sometimes"}),
            "dialects[0].endpoints[0].carrier.base64: 'sometimes' is not one of never, always, optional",
        ),
        (
            _set(
                "endpoints.0.commands",
                [{"pointer": "", "shape": "hit"}, {"pointer": "", "shape": "hit"}],
            ),
            'dialects[0].endpoints[0].commands: at most one source at pointer ""',
        ),
        (
            lambda d: d["endpoints"].append(copy.deepcopy(d["endpoints"][0])),
            "dialects[0].endpoints[1].name: '/collect' is already used by dialects[0].endpoints[0]",
        ),
        (
            lambda d: d["shapes"].append(copy.deepcopy(d["shapes"][0])),
            "dialects[0].shapes[1].name: 'hit' is already used by dialects[0].shapes[0]",
        ),
        (
            _set("shapes.0.event_type", _DELETE),
            "dialects[0].shapes[0].event_type: an event needs an event type (or set kind)",
        ),
        (
            _set("shapes.0.event_type", {"pointer": "/a", "value": "b"}),
            "dialects[0].shapes[0].event_type: set exactly one of pointer, pointers, value",
        ),
        (
            _set("shapes.0.event_type", {"pointer": "/a", "pattern": "("}),
            "dialects[0].shapes[0].event_type.pattern: not a regular expression",
        ),
        (
            _set("shapes.0.event_type", {"pointer": "/a", "pattern": "^a"}),
            "dialects[0].shapes[0].event_type.pattern: needs a group",
        ),
        (
            _set("shapes.0.discriminator", "/type"),
            "dialects[0].shapes[0]: `discriminator` and `cases` go together",
        ),
        (
            _set("shapes.0.otherwise", {}),
            "dialects[0].shapes[0].otherwise: only a shape with a `discriminator` has cases",
        ),
        (
            _set("shapes.0.kind", "update"),
            "dialects[0].shapes[0].kind: 'update' is not one of event, customer, passthrough",
        ),
        (
            _set("shapes.0.ids.0.in", "request"),
            "dialects[0].shapes[0].ids[0].in: 'request' is not one of command, document",
        ),
        (
            _set("shapes.0.ids.1.pointer", "/Anon"),
            "dialects[0].shapes[0]: two names read in the object at '(the root)' fold alike",
        ),
        (
            _set("shapes.0.event_properties.0.operators", ["$set", "$SET"]),
            "dialects[0].shapes[0]: two names read in the object at '/attrs' fold alike",
        ),
        (
            _set("answers", {"rejected": {"overrides": [{"reasons": ["nope"]}]}}),
            "dialects[0].answers.rejected.overrides[0].reasons: 'nope' is not a reason code",
        ),
        (
            _set("answers", {"rejected": {"statuses": [99]}}),
            "dialects[0].answers.rejected.statuses[0]: must be at least 100",
        ),
        (
            _set("answers", {"partial": {"status": "200"}}),
            "dialects[0].answers.partial.status: expected an integer",
        ),
        (
            _set("templates", {"public": {"event_types": {"default": "maybe"}}}),
            "dialects[0].templates.public.event_types.default: 'maybe' is not one of",
        ),
        (_set("templates", {"staging": {}}), "dialects[0].templates.staging: unknown key"),
        (_set("extra", 1), "dialects[0].extra: unknown key"),
    ],
)
def test_every_declaration_error_names_its_path(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    assert message in problems(tmp_path, [changed(change)])


def test_a_dialect_is_declared_once(tmp_path: Path) -> None:
    found = problems(tmp_path, [BASE, BASE])
    assert "dialects[1].name: 'shop' is already declared by dialects[0]" in found


def test_a_stream_names_a_dialect_that_exists(tmp_path: Path) -> None:
    found = problems(tmp_path, [BASE], [{**STREAM, "dialect": "shoop"}])
    assert "streams[0].dialect: 'shoop' is no dialect; declare it under dialects:" in found


def test_a_template_the_declaration_lacks_is_an_error(tmp_path: Path) -> None:
    declaration = {**BASE, "templates": {"private": {}}}
    found = problems(tmp_path, [declaration], [STREAM])
    assert "streams[0].template: the shop dialect has no 'public' template (private)" in found


def test_templates_are_derived_from_the_id_types(tmp_path: Path) -> None:
    rules = load(
        tmp_path, [BASE], [STREAM, {**STREAM, "name": "p", "id": "p-1", "template": "private"}]
    )
    public, private = (s.permissions.customer_ids for s in rules.streams)
    assert (public.access("anon").value, public.access("member").value) == ("allow", "signed_only")
    assert (private.access("anon").value, private.access("member").value) == ("allow", "allow")
    assert public.access("cookie").value == "deny"


def test_lints_read_the_declaration(tmp_path: Path) -> None:
    stream = {
        **STREAM,
        "customer_ids": {"deny": ["anon"], "allow": ["cookie"]},
        "event_types": {"default": "deny"},
    }
    warnings = load(tmp_path, [BASE], [stream]).warnings
    assert any("customer id 'anon' is deny; the shop web SDKs track" in w for w in warnings)
    assert any(
        "customer id 'cookie' is never sent in the shop dialect (anon, member)" in w
        for w in warnings
    )


def test_two_routed_dialects_may_not_take_one_path(tmp_path: Path) -> None:
    other = {**copy.deepcopy(BASE), "name": "other"}
    other["endpoints"][0]["path"] = "/{stream_id}"
    streams = [STREAM, {**STREAM, "name": "o", "id": "o-1", "dialect": "other"}]
    found = problems(tmp_path, [BASE, other], streams)
    assert "streams: the shop and other dialects both take /collect" in found
    # declared but unused: no conflict (the router holds only what streams use)
    assert load(tmp_path, [BASE, other]).router.match("/collect") is not None


def test_a_declared_path_may_not_shadow_a_coded_dialects(tmp_path: Path) -> None:
    declaration = copy.deepcopy(BASE)
    declaration["endpoints"][0]["path"] = "/v1/batch"
    found = problems(tmp_path, [declaration])
    assert "streams: the shop and segment dialects both take /v1/batch" in found


def test_posthog_and_mixpanel_share_paths_so_one_rules_file_uses_one(tmp_path: Path) -> None:
    streams = [
        {"name": "ph", "id": "ph-1", "type": "public", "dialect": "posthog"},
        {"name": "mp", "id": "mp-1", "type": "public", "dialect": "mixpanel"},
    ]
    found = problems(tmp_path, [], streams)
    assert "the posthog and mixpanel dialects both take /engage/" in found


def test_the_built_in_declarations_are_valid_package_data() -> None:
    assert list(declared_builtins()) == list(DECLARED_BUILTIN)
    for name in DECLARED_BUILTIN:
        text = (Path(__file__).parent.parent / f"sidecar/dialects/declared/{name}.yaml").read_text()
        assert declaration_errors(yaml.safe_load(text), name) == []


def test_trackgate_schema_prints_the_declaration_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    item = schema["properties"]["dialects"]["items"]
    assert item["required"] == ["name", "anonymous_id", "stream_id", "endpoints", "shapes"]
    assert item["properties"]["shapes"]["items"]["properties"]["discriminator"]["description"]


def test_trackgate_check_accepts_a_declaration_and_prints_its_lints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load(tmp_path, [BASE], [{**STREAM, "customer_ids": {"deny": ["anon"]}}])
    assert main(["check", "--config", str(tmp_path / "rules.yaml")]) == 0
    out = capsys.readouterr()
    assert "ok (1 streams" in out.out and "customer id 'anon' is deny" in out.out + out.err
    problems(tmp_path, [changed(_set("anonymous_id", "x"))])
    assert main(["check", "--config", str(tmp_path / "rules.yaml")]) == 1
    assert "dialects[0].anonymous_id" in capsys.readouterr().err
