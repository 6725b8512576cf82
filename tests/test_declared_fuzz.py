"""Fuzzing declared dialects (issue 16): random JSON, and documents built from each
dialect's own field names (look-alikes included), carried as each endpoint carries
them (form field, base64), through the stream ID lookup, decode, decision and
rewrite: only a `Rejection` may come out. And an unmodified body is forwarded as
received, byte for byte."""

from __future__ import annotations

import base64
import copy
import json
from types import MappingProxyType
from typing import Any
from urllib.parse import quote_plus

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sidecar.auth import Principal
from sidecar.body import Body
from sidecar.commands import FORWARD, Command, Kind, Verdict
from sidecar.dialects.declared import Declared
from sidecar.dialects.declared_model import Source
from sidecar.dialects.declared_read import (
    DocumentView,
    Malformed,
    read_case,
    read_command,
    read_plain,
)
from sidecar.dialects.declared_write import _plan as copying_plan
from sidecar.dialects.declared_write import kept_commands
from sidecar.dialects.pointers import Opened, edit, resolve
from sidecar.errors import Rejection
from sidecar.jsoncodec import dump_json
from sidecar.outcome import Forward, outcome
from sidecar.policy import Decision, decide
from sidecar.rules import Rules, SetName
from tests import payloads
from tests.declared_lab import LAB, STREAMS, request, rules_of

BUILT_IN = """
  - {name: ph, id: ph-1, type: public, dialect: posthog, template: public}
"""
FIELD_NAMES = [
    "event", "distinct_id", "$distinct_id", "properties", "$set", "$set_once", "$unset", "token",
    "api_key", "$token", "batch", "events", "event_type", "user_id", "device_id",
    "user_properties", "event_properties", "$identify", "e", "ue_pr", "ue_px", "data", "schema",
    "aid", "duid", "se_ac", "se_ca", "name", "anon", "props", "traits", "profiles", "key", "k",
    "visitor", "id", "user", "Event", "EVENTS", "Api_Key",
]  # fmt: skip


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Rules:
    return rules_of(tmp_path_factory.mktemp("fuzz"), LAB + STREAMS + BUILT_IN)


def shaped() -> st.SearchStrategy[Any]:
    """Documents made of the dialects' field names, with junk values."""
    leaves = st.one_of(
        payloads.SCALARS,
        st.sampled_from(["lab-1", "ph-1", "view", "ue", "se", "pv", "identify", "ping", "$set"]),
        st.just(json.dumps({"schema": "s", "data": {"schema": "iglu:a/b/c", "data": {"x": 1}}})),
        st.just(base64.urlsafe_b64encode(b'{"data":{"schema":"iglu:a/b/c","data":{}}}').decode()),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.sampled_from(FIELD_NAMES), inner, max_size=5),
        ),
        max_leaves=14,
    )


def carried(dialect: Declared, path: str, text: str) -> bytes:
    """`text` as the endpoint's carrier carries it."""
    route = next(r for r in dialect.routes if r.path == path)
    data = text.encode()
    if route.wrapping.use.value != "never":
        data = base64.b64encode(data)
    if route.form is not None:
        data = b"verbose=1&" + route.form.encode() + b"=" + quote_plus(data).encode()
    return data


def endpoints(rules: Rules) -> list[tuple[str, str]]:
    found = []
    for name, stream in (("lab", "lab"), ("posthog", "ph")):
        dialect = rules.router.dialects[name]
        assert isinstance(dialect, Declared)
        found.extend((stream, r.path.replace("{stream_id}", "lab-1")) for r in dialect.routes)
    return found


def judge(rules: Rules, stream_name: str, path: str, raw: bytes) -> None:
    """What the handler does between reading the body and forwarding it."""
    endpoint = rules.router.match(path)
    assert endpoint is not None
    stream = next(s for s in rules.streams if s.name == stream_name)
    try:
        endpoint.dialect.stream_id(request(path), endpoint, Body(raw))
        payload = endpoint.dialect.decode(endpoint, Body(raw), stream, rules.server.limits)
    except Rejection:
        return
    decision = decide(stream, Principal(), payload.commands)
    then = outcome(endpoint, payload, decision, raw)
    if isinstance(then, Forward) and not decision.modified:
        assert then.body == raw
    if decision.forwards_any and decision.modified:
        endpoint.dialect.encode(payload, decision.verdicts)


@settings(max_examples=400, deadline=None)
@given(data=st.data(), ascii_only=st.booleans())
def test_random_documents_only_ever_reject(
    rules: Rules, data: st.DataObject, ascii_only: bool
) -> None:
    stream, path = data.draw(st.sampled_from(endpoints(rules)))
    document = data.draw(st.one_of(payloads.JSON, shaped()))
    endpoint = rules.router.match(path)
    assert endpoint is not None and isinstance(endpoint.dialect, Declared)
    template = next(r.path for r in endpoint.dialect.routes if r.name == endpoint.name)
    judge(
        rules,
        stream,
        path,
        carried(endpoint.dialect, template, payloads.render(document, ascii_only)),
    )


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_random_bytes_only_ever_reject(rules: Rules, data: st.DataObject) -> None:
    stream, path = data.draw(st.sampled_from(endpoints(rules)))
    judge(rules, stream, path, data.draw(st.binary(max_size=200)))


@settings(max_examples=200, deadline=None)
@given(events=st.lists(st.fixed_dictionaries({
    "name": st.sampled_from(["view", "click", "identify", "ping"]),
    "anon": st.text(min_size=1, max_size=5),
    "props": st.dictionaries(st.sampled_from(["a", "b", "url"]), payloads.SCALARS, max_size=3),
}), min_size=1, max_size=5))  # fmt: skip
def test_decode_then_encode_of_what_is_allowed_changes_nothing(
    rules: Rules, events: list[dict[str, Any]]
) -> None:
    assume(any(e["name"] != "ping" for e in events))  # only passthroughs: malformed (lab's visitor)
    for path, wrap in (("/lab/batch", False), ("/lab/b64url", True)):
        text = dump_json({"events": events})  # compact, as the rewrite writes it
        raw = base64.urlsafe_b64encode(text).rstrip(b"=") if wrap else text
        endpoint = rules.router.match(path)
        assert endpoint is not None
        payload = endpoint.dialect.decode(
            endpoint, Body(raw), rules.streams[0], rules.server.limits
        )
        verdicts = tuple(FORWARD for _ in payload.commands)
        assert endpoint.dialect.encode(payload, verdicts) == raw
        assert outcome(endpoint, payload, Decision(verdicts), raw) == Forward(raw)


def test_the_fuzz_covers_every_declared_endpoint(rules: Rules) -> None:
    assert len(endpoints(rules)) == 7 + 6


NAME_LIST = ["a", "b", "lang", "email", "card", "k", "token", "$set", "alias", "distinct_id"]
NAMES = st.sampled_from(NAME_LIST)
NAMED = st.dictionaries(NAMES, st.sampled_from(["x", 1, None]), max_size=4)
UPDATES = st.fixed_dictionaries(
    {}, optional={"$set": NAMED, "$unset": st.one_of(NAMED, st.lists(NAMES, max_size=3))}
)


def commands() -> st.SearchStrategy[dict[str, Any]]:
    """Well-formed commands of the lab's `event` and `profile` shapes and PostHog's
    `event`, whatever their source (each shape reads its own names and skips the rest)."""
    ids = st.sampled_from(["u-1", "u-2"])
    return st.fixed_dictionaries(
        {},
        optional={
            "name": st.sampled_from(["view", "click", "identify", "other"]),
            "event": st.sampled_from(["view_item", "$identify", "$create_alias", "purchase"]),
            "anon": ids,
            "$anon": ids,
            "distinct_id": ids,
            "user": st.fixed_dictionaries({"id": ids}),
            "props": NAMED,
            "traits": st.one_of(NAMED, UPDATES),
            "properties": st.one_of(
                NAMED,
                st.fixed_dictionaries(
                    {"$anon_distinct_id": ids},
                    optional={"distinct_id": ids, "alias": ids, "$set": NAMED, "$unset": NAMED},
                ),
            ),
            "$set": NAMED,
            "$unset": st.lists(NAMES, max_size=3),
        },
    )


def sources(rules: Rules) -> list[Source]:
    """Every command source of the lab and posthog endpoints."""
    found: dict[int, Source] = {}
    for name in ("lab", "posthog"):
        dialect = rules.router.dialects[name]
        assert isinstance(dialect, Declared)
        found.update((id(s), s) for route in dialect.routes for s in route.sources)
    return list(found.values())


def walked(source: Source, item: dict[str, Any], fast: bool) -> list[Any] | None:
    """The values a command's walk puts in its slots (None: the walk rejects it, or the
    fast walk leaves it to the full one)."""
    shape = source.shape
    values: list[Any] = [None] * shape.slot_count
    opened = Opened(shape.embedded) if shape.embedded else None
    try:
        if fast:
            return values if source.tree.fill(item, values, 8, opened) else None
        source.tree.check(item, "", 8, opened, values=values)
    except Rejection:
        return None
    return values


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_fast_walk_reads_what_the_full_check_reads(rules: Rules, data: st.DataObject) -> None:
    source = data.draw(st.sampled_from(sources(rules)))
    item = data.draw(st.dictionaries(st.sampled_from(FIELD_NAMES), shaped(), max_size=6))
    full = walked(source, item, fast=False)  # (it remembers the spellings it passes)
    fast = walked(source, item, fast=True)
    if fast is not None:
        assert full == fast
    if full is not None and fast is None:
        assert walked(source, item, fast=True) is None or full == walked(source, item, True)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_plain_reading_is_the_general_one(rules: Rules, data: st.DataObject) -> None:
    source = data.draw(st.sampled_from(sources(rules)))
    item = data.draw(st.one_of(commands(), st.dictionaries(st.sampled_from(FIELD_NAMES), shaped())))
    values = walked(source, item, fast=False)
    shape = source.shape
    case = (
        shape.case_of(values[shape.discriminator_slot]) if values and shape.discriminator else None
    )
    case = case if shape.discriminator else shape.case
    assume(values is not None and case is not None and case.fast)
    view = DocumentView({}, Opened({}))
    try:
        general: Command | str = read_case(case, values, view)
    except (Malformed, Rejection) as problem:
        general = str(problem)
    try:
        plain = read_plain(case, values)
    except Malformed as problem:
        assert str(problem) == general
        return
    assert plain is None or plain == general


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_writing_back_in_place_is_writing_back_a_copy(rules: Rules, data: st.DataObject) -> None:
    source = data.draw(st.sampled_from([s for s in sources(rules) if not s.shape.embedded]))
    item = data.draw(commands())
    view = DocumentView({}, Opened({}))
    try:
        command = read_command(source, item, view, 8)
    except Rejection:
        command = Command(Kind.PASSTHROUGH)
    assume(not command.malformed and command.kind is not Kind.PASSTHROUGH)
    stripped = {
        set_name: tuple(data.draw(st.lists(st.sampled_from(names), unique=True, min_size=1)))
        for set_name, names in (
            (SetName.CUSTOMER_IDS, [*command.customer_ids, "anon", "user", "alias"]),
            (SetName.CUSTOMER_PROPERTIES, [*command.customer_properties, *NAME_LIST]),
            (SetName.EVENT_PROPERTIES, [*command.event_properties, *NAME_LIST]),
        )
        if data.draw(st.booleans())
    }
    verdict = Verdict(stripped=MappingProxyType(stripped))
    assume(verdict.modified)
    copied = copy.deepcopy(item)
    case = source.shape.case_of(
        resolve(item, source.shape.discriminator) if source.shape.discriminator else None
    )
    assert case is not None
    for pointer, change in copying_plan(case, verdict):
        copied = edit(copied, pointer, change, {})
    in_place = copy.deepcopy(item)
    assert kept_commands(source.shape, [in_place], [verdict]) == [in_place]
    assert dump_json(in_place) == dump_json(copied)
