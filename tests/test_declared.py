"""The declaration language, table-driven and sans-IO (SPEC §3.5): every carrier,
pointer form and answer rule of a declared dialect, judged by the same stages as the
sidecar (`trackgate explain`), with the `lab` declaration of tests/declared_lab.py."""

from __future__ import annotations

import base64
import gc
import json
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote_plus, unquote_to_bytes

import pytest

from sidecar.body import Body
from sidecar.commands import FORWARD, Verdict
from sidecar.errors import Reason, Rejection
from sidecar.reply import Reply
from sidecar.rules import Rules
from tests.declared_lab import dialect_of, judge, lab_rules, request, rules_of, stream_id_of


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Rules:
    return lab_rules(tmp_path_factory.mktemp("lab"))


def outcomes(report: dict[str, Any]) -> list[str]:
    return [c["reason"] or "forwarded" for c in report["commands"]]


# -- commands, ids, event types, containers ---------------------------------------------------


def test_a_batch_of_two_arrays_is_judged_in_body_order_and_rewritten(rules: Rules) -> None:
    body = {
        "key": "lab-1",
        "visitor": {"id": "v-1"},
        "events": [
            {"name": "view", "anon": "a-1", "props": {"url": "/", "card": "4111", "k": "x"}},
            {"name": "secret", "anon": "a-1"},
            {"name": "click", "anon": "a-1", "user": {"id": "u-1"}, "traits": {
                "lang": "de", "email": "e@x", "$set": {"plan": "gold", "email": "e@x"},
                "$unset": ["email", "plan"]}},
        ],
        "profiles": [{"anon": "a-1", "$set": {"email": "e@x", "lang": "de"}, "$unset": ["email"]}],
    }  # fmt: skip
    report = judge(rules, "/lab/batch", body)
    assert outcomes(report) == ["forwarded", "event_type_denied", "forwarded", "forwarded"]
    assert report["commands"][0]["stripped"] == {"event_properties": ["card"]}
    assert report["commands"][2]["stripped"] == {
        "customer_ids": ["user"],
        "customer_properties": ["email"],
    }
    assert report["forwarded_body"] == {
        "key": "lab-1",
        "visitor": {"id": "v-1"},
        "events": [
            {"name": "view", "anon": "a-1", "props": {"url": "/", "k": "x"}},
            {"name": "click", "anon": "a-1", "user": {}, "traits": {
                "lang": "de", "$set": {"plan": "gold"}, "$unset": ["plan"]}},
        ],
        "profiles": [{"anon": "a-1", "$set": {"lang": "de"}, "$unset": []}],
    }  # fmt: skip


def test_an_excluded_key_of_a_container_is_no_property(rules: Rules) -> None:
    body = {"events": [{"name": "view", "anon": "a", "props": {"k": "lab-1", "x": 1}}]}
    report = judge(rules, "/lab/batch", body)
    assert report["commands"][0]["stripped"] == {}
    assert _decode(rules, "/lab/batch", body).commands[0].event_properties == ("x",)


@pytest.mark.parametrize(
    ("event", "outcome"),
    [
        ({"name": "view", "anon": 42}, "forwarded"),  # an integer id is its decimal string
        ({"name": "view", "anon": True}, "malformed_payload"),
        ({"name": "view", "anon": {"a": 1}}, "malformed_payload"),
        ({"name": "view", "anon": "a", "$anon": "b"}, "malformed_payload"),  # one type, 2 values
        ({"name": "view", "anon": "a", "$anon": "a"}, "forwarded"),
        ({"name": "view", "anon": ""}, "no_customer_ids"),  # "" is no id
        ({"name": "view", "anon": None}, "no_customer_ids"),
        ({"name": "view"}, "no_customer_ids"),
        ({"name": 7, "anon": "a"}, "malformed_payload"),  # the discriminator: no case, otherwise
        ({"anon": "a"}, "malformed_payload"),  # no event type
        ({"name": "", "anon": "a"}, "malformed_payload"),
        ({"name": "identify", "anon": "a", "traits": {"lang": "de"}}, "forwarded"),
        ({"name": "view", "anon": "a", "props": [1]}, "malformed_payload"),
        ({"name": "view", "anon": "a", "props": "x"}, "malformed_payload"),
        ({"name": "view", "anon": "a", "traits": {"$unset": [1]}}, "malformed_payload"),
        ({"name": "view", "anon": "a", "traits": {"$set": "-"}}, "forwarded"),  # no names
        ("not an object", "malformed_payload"),
    ],
)
def test_each_command_is_read_by_its_shape(rules: Rules, event: Any, outcome: str) -> None:
    report = judge(rules, "/lab/batch", {"events": [event]})
    assert outcomes(report) == [outcome]


def test_a_customer_update_case_has_no_event_type(rules: Rules) -> None:
    payload = _decode(rules, "/lab/batch", {"events": [{"name": "identify", "anon": "a"}]})
    assert payload.commands[0].event_type is None
    assert payload.commands[0].kind.value == "customer"


def test_a_document_id_is_every_commands_and_leaves_the_document_when_stripped(
    rules: Rules,
) -> None:
    body = {"visitor": {"id": "v-1", "other": 1}, "events": [{"name": "view", "anon": "a"}]}
    payload = _decode(rules, "/lab/batch", body)
    assert payload.commands[0].customer_ids == {"anon": "a", "visitor": "v-1"}
    report = judge(rules, "/lab/batch", body, stream="lab-novisitor")
    assert report["forwarded_body"] == {"visitor": {"other": 1}, "events": body["events"]}


def test_a_body_without_its_command_arrays_is_malformed(rules: Rules) -> None:
    assert judge(rules, "/lab/batch", {"key": "lab-1"})["request"]["reason"] == (
        "malformed_payload"
    )
    assert judge(rules, "/lab/batch", {"events": []})["request"]["reason"] == "malformed_payload"
    assert judge(rules, "/lab/batch", {"events": {}})["request"]["message"] == (
        "/events must be an array"
    )
    assert judge(rules, "/lab/batch", [1])["request"]["message"] == "the body must be a JSON object"


def test_request_level_ids_need_a_judged_command(rules: Rules) -> None:
    only_passthrough = {"visitor": {"id": "v-1"}, "events": [{"name": "ping"}]}
    assert judge(rules, "/lab/batch", only_passthrough)["request"] == {
        "outcome": "rejected",
        "status": 400,
        "reason": "malformed_payload",
        "message": "the body holds no judged commands",
    }
    body = {
        "visitor": {"id": "v-1", "x": 1},
        "events": [{"name": "secret", "anon": "a"}, {"name": "ping"}],
    }
    report = judge(rules, "/lab/batch", body)
    assert outcomes(report) == ["event_type_denied", "forwarded"]
    assert report["forwarded_body"] == {"visitor": {"x": 1}, "events": [{"name": "ping"}]}
    passthrough = {"events": [{"name": "view", "anon": "a"}, {"name": "ping"}]}
    assert outcomes(judge(rules, "/lab/batch", passthrough)) == ["forwarded", "forwarded"]


@pytest.mark.parametrize(
    ("body", "count"),
    [
        ({"batch": [{"name": "view", "anon": "a"}, {"name": "view", "anon": "b"}]}, 2),
        ([{"name": "view", "anon": "a"}, {"name": "view", "anon": "b"}, {"name": "ping"}], 3),
        ({"name": "view", "anon": "a"}, 1),
    ],
    ids=["batch-member", "array", "one"],
)
def test_a_whole_document_source_is_the_fallback(rules: Rules, body: Any, count: int) -> None:
    assert len(_decode(rules, "/lab/fallback", body).commands) == count


def test_a_single_command_endpoint_is_rejected_with_its_commands_reason(rules: Rules) -> None:
    report = judge(rules, "/lab/one", {"name": "secret", "anon": "a"})
    assert report["request"] == {
        "outcome": "rejected",
        "status": 403,
        "reason": "event_type_denied",
        "message": "event type 'secret' is not allowed on stream 'lab'",
    }
    malformed = judge(rules, "/lab/one", {"name": "view", "anon": True})
    assert malformed["request"]["reason"] == "malformed_payload"
    assert judge(rules, "/lab/one", [{"name": "view"}])["request"]["message"] == (
        "the body must be an object"
    )


def test_an_event_type_pattern_and_pointers_tried_in_order(rules: Rules) -> None:
    ue = {
        "schema": "iglu:x/unstruct/1-0-0",
        "data": {"schema": "iglu:com.acme/link/jsonschema/1-0-0", "data": {"a": 1}},
    }
    body = {"data": [
        {"e": "ue", "duid": "d", "ue_pr": json.dumps(ue)},
        {"e": "ue", "duid": "d", "ue_px": _b64url(ue)},
        {"e": "ue", "duid": "d", "ue_pr": json.dumps({**ue, "data": {"schema": "nope"}})},
        {"e": "se", "duid": "d", "se_ac": "click", "se_ca": "c", "se_la": "l", "x": "y"},
    ]}  # fmt: skip
    payload = _decode(rules, "/lab/sp", body)
    assert [c.event_type for c in payload.commands] == [
        "com.acme/link",
        "com.acme/link",
        None,
        "click",
    ]
    assert payload.commands[2].malformed == "the event type does not match its pattern"
    assert payload.commands[3].event_properties == ("se_ca", "se_la")


def test_two_present_event_type_pointers_that_differ_make_the_command_malformed(
    rules: Rules,
) -> None:
    ue = {"schema": "s", "data": {"schema": "iglu:com.acme/link/jsonschema/1-0-0", "data": {}}}
    other = {**ue, "data": {"schema": "iglu:com.acme/secret/jsonschema/1-0-0", "data": {}}}
    body = {"data": [
        {"e": "ue", "duid": "d", "ue_pr": json.dumps(ue), "ue_px": _b64url(other)},
        {"e": "ue", "duid": "d", "ue_pr": json.dumps(ue), "ue_px": _b64url(ue)},
    ]}  # fmt: skip
    payload = _decode(rules, "/lab/sp", body)
    assert payload.commands[0].malformed == "two event types of the command differ"
    assert payload.commands[1].event_type == "com.acme/link"


# -- embedded JSON strings --------------------------------------------------------------------


def _b64url(document: Any, padded: bool = True) -> str:
    text = base64.urlsafe_b64encode(json.dumps(document).encode()).decode()
    return text if padded else text.rstrip("=")


@pytest.mark.parametrize("padded", [True, False])
def test_embedded_json_is_judged_and_written_back_in_its_form(rules: Rules, padded: bool) -> None:
    inner = {
        "schema": "iglu:com.acme/link/jsonschema/1-0-0",
        "data": {"card": "4111", "to": "/x?é"},
    }
    ue = {"schema": "iglu:x/unstruct/1-0-0", "data": inner}
    body = {"data": [
        {"e": "ue", "duid": "d", "ue_px": _b64url(ue, padded), "aid": "lab-1"},
        {"e": "ue", "duid": "d", "ue_pr": json.dumps(ue), "aid": "lab-1"},
        {"e": "se", "duid": "d", "se_ac": "click", "se_ca": "c", "se_la": "l", "aid": "lab-1"},
    ]}  # fmt: skip
    report = judge(rules, "/lab/sp", body)
    assert [c["stripped"] for c in report["commands"][:2]] == [{"event_properties": ["card"]}] * 2
    px, pr, se = report["forwarded_body"]["data"]
    stripped = {**ue, "data": {**inner, "data": {"to": "/x?é"}}}
    assert px["ue_px"] == _b64url_compact(stripped, padded)
    assert "-" in px["ue_px"] or "_" in px["ue_px"] or "=" in px["ue_px"] or not padded
    assert json.loads(pr["ue_pr"]) == stripped and isinstance(pr["ue_pr"], str)
    assert se == body["data"][2]  # untouched


def _b64url_compact(document: Any, padded: bool) -> str:
    data = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    text = base64.urlsafe_b64encode(data).decode()
    return text if padded else text.rstrip("=")


def test_a_bad_embedded_string_makes_its_command_malformed(rules: Rules) -> None:
    body = {
        "data": [{"e": "ue", "duid": "d", "ue_px": "not+base64/url_"}, {"e": "pv", "duid": "d"}]
    }
    report = judge(rules, "/lab/sp", body)
    assert outcomes(report)[0] == "malformed_payload"
    assert report["commands"][0]["message"] == "/ue_px mixes two base64 alphabets"


# -- carriers ---------------------------------------------------------------------------------


def test_a_form_carried_document_is_written_back_in_the_same_form(rules: Rules) -> None:
    events = [{"name": "view", "anon": "a", "props": {"card": "4111", "q": "a b"}}]
    plain = b"verbose=1&data=" + _quote(json.dumps(events)) + b"&ip=0"
    report = judge(rules, "/lab/form", plain)
    assert (
        report["forwarded_body"]
        == "verbose=1&data="
        + _quote(
            json.dumps(
                [{"name": "view", "anon": "a", "props": {"q": "a b"}}], separators=(",", ":")
            )
        ).decode()
        + "&ip=0"
    )
    encoded = base64.b64encode(json.dumps(events).encode())
    report = judge(rules, "/lab/form", b"data=" + _quote(encoded.decode()) + b"&ip=1")
    sent = report["forwarded_body"]
    value = base64.b64decode(_unquote(sent.split("&")[0].removeprefix("data=")))
    assert json.loads(value) == [{"name": "view", "anon": "a", "props": {"q": "a b"}}]
    written = _unquote(sent.split("&")[0].removeprefix("data="))
    assert sent.endswith("&ip=1") and len(written) % 4 == 0  # standard alphabet, padded


def _quote(text: str) -> bytes:
    return quote_plus(text, safe="").encode()


def _unquote(text: str) -> bytes:
    return unquote_to_bytes(text.replace("+", " "))


def test_a_base64_body_is_written_back_in_its_alphabet_without_padding(rules: Rules) -> None:
    document = {"events": [{"name": "view", "anon": "a", "props": {"card": 1, "x": "~~~?"}}]}
    raw = base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=")
    report = judge(rules, "/lab/b64url", raw)
    sent = report["forwarded_body"]
    assert isinstance(sent, str) and "=" not in sent and "+" not in sent and "/" not in sent
    padded = sent + "=" * (-len(sent) % 4)
    assert json.loads(base64.urlsafe_b64decode(padded)) == {
        "events": [{"name": "view", "anon": "a", "props": {"x": "~~~?"}}]
    }


def test_an_unmodified_carried_body_is_forwarded_byte_for_byte(rules: Rules) -> None:
    raw = b"data=" + _quote(json.dumps({"name": "view", "anon": "a"})) + b"&z=%41"
    report = judge(rules, "/lab/form", raw)
    assert report["forwarded_body"] == raw.decode()


# -- the key-spelling guard -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"Events": [], "events": []}, 'the body: key 0 folds to "events"'),
        ({"KEY": "x", "events": []}, 'the body: key 0 folds to "key"'),
        ({"visitor": {"ID": "v"}, "events": []}, 'visitor: key 0 folds to "id"'),
        ({"events": [{"Name": "view", "anon": "a"}]}, 'events[0]: key 0 folds to "name"'),
        (
            {"events": [{"name": "v", "anon": "a", "props": {"a": 1, "A": 2}}]},
            "events[0].props: keys 0 and 1 fold alike",
        ),
        (
            {"events": [{"name": "v", "anon": "a", "traits": {"$SET": {}}}]},
            'events[0].traits: key 0 folds to "$set"',
        ),
        ({"events": [{"name": "v", "anon": "a", "K": "x"}]}, 'events[0]: key 2 folds to "k"'),
        (
            {"events": [{"name": "v", "anon": "a", "user": {"Id": "u"}}]},
            'events[0].user: key 0 folds to "id"',
        ),
        (
            {"events": [{"name": "v", "anon": "a", "\u017f": 1, "s": 2}]},
            "events[0]: keys 2 and 3 fold alike",
        ),
        ({"events": [{"name": "view", "anon": "a", "Other": 1}]}, None),  # no name it reads
    ],
)
def test_a_look_alike_key_the_dialect_reads_rejects_the_request(
    rules: Rules, body: Any, message: str | None
) -> None:
    report = judge(rules, "/lab/batch", body)
    if message is None:
        assert report["request"]["outcome"] == "forwarded"
        return
    assert report["request"]["reason"] == "malformed_payload"
    assert report["request"]["message"] == message


def test_a_look_alike_inside_an_embedded_string_rejects_the_request(rules: Rules) -> None:
    ue = {"schema": "s", "Data": {}, "data": {"schema": "iglu:a/b/c", "data": {}}}
    report = judge(rules, "/lab/sp", {"data": [{"e": "ue", "duid": "d", "ue_pr": json.dumps(ue)}]})
    assert report["request"]["message"] == 'data[0].ue_pr: key 1 folds to "data"'


def test_too_many_names_in_a_container_is_payload_too_large(rules: Rules) -> None:
    names = {f"p{i}": i for i in range(rules.server.limits.max_names_per_object + 1)}
    report = judge(rules, "/lab/batch", {"events": [{"name": "v", "anon": "a", "props": names}]})
    assert report["request"]["reason"] == "payload_too_large"


# -- the stream ID ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kwargs", "body", "found"),
    [
        ("/lab/batch", {"headers": {"X-Lab-Key": "lab-1"}}, b"{}", "lab-1"),
        ("/lab/batch", {"query": {"key": "lab-1"}}, b"{}", "lab-1"),
        ("/lab/batch", {"headers": {"Authorization": "Basic bGFiLTE6"}}, b"{}", "lab-1"),
        ("/lab/batch", {}, b'{"key": "lab-1"}', "lab-1"),
        ("/lab/batch", {}, b'{"key": 1042}', "1042"),
        ("/lab/batch", {}, b'{"events": [{"k": "lab-1"}, {"k": "lab-1"}, {}]}', "lab-1"),
        ("/lab/batch", {}, b'{"profiles": [{"k": "lab-1"}]}', "lab-1"),
        ("/lab/batch", {}, b'{"key": ""}', None),
        ("/lab/batch", {}, b'{"key": true}', None),
        ("/lab/batch", {}, b"not json", None),
        ("/lab/lab-1/either", {}, b"{}", "lab-1"),
        ("/lab/lab-2/either", {"headers": {"X-Lab-Key": "lab-1"}}, b"{}", "lab-2"),  # own places
        ("/lab/form", {}, b"data=" + _quote('[{"k": "lab-1"}]'), "lab-1"),
        ("/lab/form", {}, b"data=" + _quote(base64.b64encode(b'{"k": "lab-1"}').decode()), "lab-1"),
        ("/lab/fallback", {}, b'[{"k": "lab-1"}]', "lab-1"),
        ("/lab/fallback", {}, b'{"k": "lab-1"}', "lab-1"),
    ],
)
def test_every_stream_id_place(
    rules: Rules, path: str, kwargs: dict[str, Any], body: bytes, found: str | None
) -> None:
    assert stream_id_of(rules, path, body, **kwargs) == found


def test_a_carried_document_opened_for_the_stream_id_is_kept_by_its_body_only(
    rules: Rules,
) -> None:
    endpoint = rules.router.match("/lab/form")
    assert endpoint is not None
    body = Body(b"data=" + _quote('{"name": "view", "anon": "a", "k": "lab-1"}'))
    assert endpoint.dialect.stream_id(request("/lab/form"), endpoint, body) == "lab-1"
    # a request rejected now (unknown_stream, origin) leaves its body to the collector
    assert [r for r in gc.get_referrers(body) if not isinstance(r, FrameType)] == []
    payload = endpoint.dialect.decode(endpoint, body, rules.streams[0], rules.server.limits)
    assert payload.commands[0].event_type == "view" and body.carried is None


@pytest.mark.parametrize(
    ("kwargs", "body"),
    [
        ({"headers": {"X-Lab-Key": "lab-1"}}, b'{"key": "lab-2"}'),
        ({"query": {"key": "lab-1"}, "headers": {"X-Lab-Key": "lab-2"}}, b"{}"),
        ({}, b'{"events": [{"k": "lab-1"}, {"k": "lab-2"}]}'),
        ({}, b'{"key": "lab-1", "profiles": [{"k": "lab-2"}]}'),
        ({"query": {"Key": "lab-1"}}, b"{}"),  # spelled like the parameter
        ({"query": {"key[]": "lab-1"}}, b"{}"),
        ({"headers": {"Authorization": "Basic bGFiLTI6"}, "query": {"key": "lab-1"}}, b"{}"),
    ],
)
def test_places_that_disagree_are_a_stream_id_conflict(
    rules: Rules, kwargs: dict[str, Any], body: bytes
) -> None:
    with pytest.raises(Rejection) as caught:
        stream_id_of(rules, "/lab/batch", body, **kwargs)
    assert caught.value.reason is Reason.STREAM_ID_CONFLICT


def test_paths_match_exactly_or_with_their_stream_id_segment(rules: Rules) -> None:
    match = rules.router.match
    assert match("/lab/batch") is not None and match("/lab/batch/") is None
    endpoint = match("/lab/abc/either")
    assert endpoint is not None and endpoint.path_stream_id == "abc" and endpoint.is_batch
    assert match("/lab/a/b/either") is None and match("/lab//either") is None
    single = match("/lab/one")
    assert single is not None and not single.is_batch
    form = match("/lab/form")
    assert form is not None and form.form


# -- answers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "status", "body"),
    [
        (
            Reason.EVENT_TYPE_DENIED,
            403,
            {
                "ok": False,
                "code": "event_type_denied",
                "status": 403,
                "why": "event_type_denied: m",
            },
        ),
        (
            Reason.MALFORMED_PAYLOAD,
            400,
            {
                "ok": False,
                "code": "malformed_payload",
                "status": 400,
                "why": "malformed_payload: m",
            },
        ),
        (
            Reason.PAYLOAD_TOO_LARGE,
            400,
            {
                "ok": False,
                "code": "payload_too_large",
                "status": 400,
                "why": "payload_too_large: m",
            },
        ),
        (
            Reason.TOKEN_EXPIRED,
            400,
            {"ok": False, "code": "token_expired", "status": 400, "why": "token_expired: m"},
        ),
        (
            Reason.UPSTREAM_UNAVAILABLE,
            502,
            {
                "ok": False,
                "code": "upstream_unavailable",
                "status": 502,
                "why": "upstream_unavailable: m",
            },
        ),
        (
            Reason.KEYS_UNAVAILABLE,
            503,
            {"ok": False, "code": "keys_unavailable", "status": 503, "why": "keys_unavailable: m"},
        ),
        (Reason.UNKNOWN_STREAM, 200, "unknown: unknown_stream"),
    ],
)
def test_a_rejected_request_is_answered_per_class(
    rules: Rules, reason: Reason, status: int, body: Any
) -> None:
    reply = dialect_of(rules).error_reply(Rejection(reason, "m"))
    assert reply.status == status
    if isinstance(body, str):
        assert (reply.body.decode(), reply.headers["Content-Type"]) == (
            body,
            "text/plain; charset=utf-8",
        )
    else:
        assert (json.loads(reply.body), reply.headers["Content-Type"]) == (body, "application/json")
    assert dict(reply.headers).items() >= dict(reason.headers).items()
    assert ("WWW-Authenticate" in reply.headers) == reason.is_token_failure


def test_a_batch_is_answered_all_rejected_partial_or_as_the_collector_did(rules: Rules) -> None:
    dialect = dialect_of(rules)
    rejected = Verdict(Reason.EVENT_TYPE_DENIED, "no")
    verdicts = [FORWARD, rejected, rejected]
    every = dialect.answer_batch([rejected] * 3, None)
    assert (every.status, json.loads(every.body)) == (202, {"ok": True, "rejected": 3})
    assert every.headers["X-Trackgate-Rejected"] == "3"
    partial = dialect.answer_batch(verdicts, Reply(200, b"{}", {"A": "b"}))
    assert (partial.status, json.loads(partial.body)) == (207, {"rejected": [1, 2]})
    assert partial.headers["X-Trackgate-Rejected"] == "2"
    failed = dialect.answer_batch(verdicts, Reply(503, b"down", {"A": "b"}))
    assert (failed.status, failed.body, failed.headers["A"]) == (503, b"down", "b")
    assert failed.headers["X-Trackgate-Rejected"] == "2"


PLAIN = """
dialects:
  - name: plain
    anonymous_id: a
    stream_id: [{header: X-Key}]
    endpoints:
      - path: /plain
        commands: [{pointer: "", shape: s, as: either}]
    shapes:
      - name: s
        ids: [{pointer: /a, type: a}]
        event_type: {value: hit}
streams:
  - {name: plain, id: p-1, type: public, dialect: plain, template: public}
"""


def test_without_answers_the_defaults_apply(tmp_path: Path) -> None:
    rules = rules_of(tmp_path, PLAIN)
    dialect = dialect_of(rules, "plain")
    reply = dialect.error_reply(Rejection(Reason.EVENT_TYPE_DENIED, "m"))
    assert (reply.status, json.loads(reply.body)) == (
        403,
        {"success": False, "code": "event_type_denied", "message": "m"},
    )
    rejected = Verdict(Reason.EVENT_TYPE_DENIED, "no")
    every = dialect.answer_batch([rejected], None)
    assert (every.status, json.loads(every.body)) == (200, {"success": True})
    relayed = dialect.answer_batch([rejected, FORWARD], Reply(200, b"ok", {}))
    assert (relayed.status, relayed.body, relayed.headers["X-Trackgate-Rejected"]) == (
        200,
        b"ok",
        "1",
    )


def _decode(rules: Rules, path: str, body: Any, stream: str = "lab") -> Any:
    endpoint = rules.router.match(path)
    assert endpoint is not None
    found = next(s for s in rules.streams if s.name == stream)
    return endpoint.dialect.decode(
        endpoint, Body(json.dumps(body).encode()), found, rules.server.limits
    )


@pytest.mark.parametrize(
    ("unset", "reason", "message"),
    [
        (["plan", "Plan"], "malformed_payload", "events[0].traits.$unset: keys 0 and 1 fold alike"),
        (
            [f"p{i}" for i in range(1001)],
            "payload_too_large",
            "events[0].traits.$unset: more than 1000 names",
        ),
    ],
)
def test_a_name_array_is_guarded_like_a_container(
    rules: Rules, unset: list[str], reason: str, message: str
) -> None:
    body = {"events": [{"name": "view", "anon": "a", "traits": {"$unset": unset}}]}
    report = judge(rules, "/lab/batch", body)
    assert report["request"]["reason"] == reason
    assert report["request"]["message"].startswith(message)


SHARED = """
dialects:
  - name: shared
    anonymous_id: a
    stream_id: [{body: /key}]
    endpoints:
      - path: /shared
        commands: [{pointer: /batch, shape: s}]
    shapes:
      - name: s
        ids: [{pointer: /a, type: a}]
        event_type: {pointer: /t}
        customer_properties:
          - {in: document, pointer: /context/traits}
          - {pointer: /traits}
streams:
  - name: shared
    id: sh-1
    type: public
    dialect: shared
    customer_ids: {allow: [a]}
    event_types: {allow: [view]}
    customer_properties: {default: deny, allow: [plan], deny: [email]}
"""


def test_a_document_container_leaves_with_the_last_judged_command(tmp_path: Path) -> None:
    rules = rules_of(tmp_path, PASSING)
    body = {
        "key": "sh-1",
        "context": {"traits": {"email": "e@x"}, "ip": "1"},
        "batch": [{"t": "secret", "a": "x"}, {"t": "ping"}],
    }
    report = judge(rules, "/shared", body, stream="shared")
    assert outcomes(report) == ["event_type_denied", "forwarded"]
    assert report["forwarded_body"] == {**body, "context": {"ip": "1"}, "batch": [{"t": "ping"}]}


def test_a_document_container_is_every_commands_and_stripped_from_the_document(
    tmp_path: Path,
) -> None:
    rules = rules_of(tmp_path, SHARED)
    body = {
        "key": "sh-1",
        "context": {"traits": {"email": "e@x", "plan": "p"}, "ip": "1"},
        "batch": [{"t": "view", "a": "x", "traits": {"plan": "q"}}, {"t": "view", "a": "y"}],
    }
    payload = _decode(rules, "/shared", body, stream="shared")
    assert [c.customer_properties for c in payload.commands] == [
        ("email", "plan"),
        ("email", "plan"),
    ]
    report = judge(rules, "/shared", body, stream="shared")
    assert report["forwarded_body"] == {**body, "context": {"traits": {"plan": "p"}, "ip": "1"}}
    bad = {**body, "context": {"Traits": {}, "traits": {}}}
    assert judge(rules, "/shared", bad, stream="shared")["request"]["message"] == (
        'context: key 0 folds to "traits"'
    )


PASSING = SHARED.replace(
    "        event_type: {pointer: /t}\n",
    "        event_type: {pointer: /t}\n"
    "        discriminator: /t\n"
    "        cases: [{when: [ping], kind: passthrough}]\n"
    "        otherwise: {}\n",
)
