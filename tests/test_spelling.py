"""Key spelling (SPEC §3.3 "No parser differential with the collector", issue 12
findings 1 and 4): the guard sans-IO, then the real sidecar in front of a real
case-folding decoder (tests/gocollector, Go's encoding/json)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.body import Body
from sidecar.dialects import BUILTIN_ROUTER
from sidecar.errors import Reason, Rejection
from sidecar.rules import Rules
from sidecar.spelling import NAMES, Fields, KeyProblem, check_query, fold
from tests import go_collector, payloads
from tests.conftest import StartSidecar
from tests.harness import BACKEND_ID, WEB_ID, Collector, Sidecar
from tests.http import post
from tests.payloads import KELVIN, LONG_S

# -- the guard, sans-IO -----------------------------------------------------------------

DATA = Fields("customer_ids", "event_type", "timestamp", "properties")
MESSAGE = Fields("type", "userId", "anonymousId", "writeKey")


@pytest.mark.parametrize(
    ("fields", "obj", "message"),
    [
        (DATA, {"event_type": 1, "Event_Type": 2}, 'the body: key 1 folds to "event_type"'),
        (DATA, {"EVENT_TYPE": 1}, 'the body: key 0 folds to "event_type"'),
        (DATA, {"event_type\0": 1}, 'the body: key 0 folds to "event_type"'),
        (DATA, {f"cu{LONG_S}tomer_ids": 1}, 'the body: key 0 folds to "customer_ids"'),
        (MESSAGE, {f"write{KELVIN}ey": 1}, 'the body: key 0 folds to "writeKey"'),
        (MESSAGE, {"userid": 1}, 'the body: key 0 folds to "userId"'),
        (MESSAGE, {"messageId": 1, "MessageID": 2}, "the body: keys 0 and 1 fold alike"),
        (NAMES, {"email": 1, "Email": 2}, "the body: keys 0 and 1 fold alike"),
        (NAMES, {"em\0ail": 1, "email": 2}, "the body: keys 0 and 1 fold alike"),
    ],
)
def test_a_key_spelled_like_another_is_refused(
    fields: Fields, obj: dict[str, Any], message: str
) -> None:
    for _ in range(2):  # the second time through the remembered spellings
        with pytest.raises(KeyProblem) as caught:
            fields.check(obj, "")
        assert caught.value.reason is Reason.MALFORMED_PAYLOAD
        assert caught.value.message == message


@pytest.mark.parametrize(
    ("fields", "obj"),
    [
        (Fields(*DATA.names), {"customer_ids": {}, "event_type": "x", "Foo": 1, "bar": 2}),
        (Fields(*MESSAGE.names), {"type": 1, "userId": 2, "anonymousId": 3, "messageId": 4}),
        (Fields(), {"Email": 1, "first_name": 2, "ﬀ": 3, "ß": 4, "Straße": 5}),
        (Fields(), {}),
    ],
)
def test_distinct_keys_pass_and_are_remembered(fields: Fields, obj: dict[str, Any]) -> None:
    """(Fresh tables: what a shared one remembers depends on what it saw first.)"""
    fields.check(obj, "")
    assert obj.keys() <= fields.safe  # the next object of this shape takes the fast path
    fields.check(obj, "")


def test_the_fast_path_never_hides_a_lookalike_of_a_remembered_key() -> None:
    fields = Fields("event")
    fields.check({"Email": 1, "sentAt": 2}, "")
    for obj in ({"email": 1}, {"SentAt": 1}):
        fields.check(obj, "")  # alone each is fine, but it is not remembered
        assert not obj.keys() <= fields.safe
    with pytest.raises(KeyProblem):
        fields.check({"Email": 1, "email": 2}, "")


def test_a_problem_names_its_position_and_never_a_key_or_value() -> None:
    with pytest.raises(KeyProblem) as caught:
        DATA.check({"customer_ids": {}, "Event_Type": "victim"}, "")
    problem = caught.value.within("data").within("commands[3]")
    assert problem.message == 'commands[3].data: key 1 folds to "event_type"'
    with pytest.raises(KeyProblem) as caught:
        NAMES.check({"Secret_Name": 1, "secret_name": 2}, "properties")
    problem = caught.value.within("batch[0]")
    assert problem.message == "batch[0].properties: keys 0 and 1 fold alike"


def test_a_container_holds_at_most_max_names() -> None:
    NAMES.check_names({f"n{i}": i for i in range(5)}, "properties", 5)
    with pytest.raises(KeyProblem) as caught:
        NAMES.check_names({f"n{i}": i for i in range(6)}, "properties", 5)
    assert caught.value.reason is Reason.PAYLOAD_TOO_LARGE


def test_the_remembered_spellings_stay_bounded() -> None:
    fields = Fields("name")
    for start in range(0, 10_000, 100):
        fields.check({f"k{i}": i for i in range(start, start + 100)}, "")
    assert len(fields.safe) <= 4096


@pytest.mark.parametrize(
    "key",
    ["Stream_id", "STREAM_ID", "stream_id[]", "Stream_Id[]", "stream_id\0", f"{LONG_S}tream_id"],
)
def test_a_query_key_spelled_like_the_credential_is_refused(key: str) -> None:
    with pytest.raises(Rejection) as caught:
        check_query({"stream_id": "a", key: "b"}, "stream_id")
    assert caught.value.reason is Reason.STREAM_ID_CONFLICT


def test_other_query_keys_pass() -> None:
    check_query({"stream_id": "a", "stream": "b", "id": "c", "stream_ids": "d"}, "stream_id")
    check_query({"writeKey": "a"}, "writeKey")


def test_fold_is_go_compatible_for_ascii_field_names() -> None:
    """Every non-ASCII character Go folds onto an ASCII letter, casefold does too."""
    assert fold(f"{LONG_S}{KELVIN}\0S") == "sks"
    assert all(fold(chr(c)) == chr(c).lower() for c in range(0x20, 0x7F))


# -- streams for the end-to-end tests -----------------------------------------------------

SEGMENT_KEY, PRIVATE_KEY, OPEN_ID, OPEN_KEY = "SEG_WK", "PRIVATE_WK", "open-br", "OPEN_WK"
HS256_SECRET = "h" * 32
JWT = "jwt: {enforcement: enforce, keys: [{kid: hs, alg: HS256, secret: {env: HS256_SECRET}}]}"
STREAMS = f"""
- name: web
  id: {WEB_ID}
  type: public
  {JWT}
  customer_ids: {{default: deny, allow: [cookie], signed_only: [registered]}}
  event_types: {{default: deny, allow: [page_visit, view_item], signed_only: [purchase]}}
  customer_properties: {{default: deny, allow: [first_name], signed_only: [email], deny: [password]}}
  event_properties: {{default: allow, deny: [password]}}
- name: seg
  id: {SEGMENT_KEY}
  type: public
  dialect: segment
  {JWT}
  customer_ids: {{default: deny, allow: [anonymous_id], signed_only: [user_id]}}
  event_types: {{default: deny, allow: [Product Viewed, page], signed_only: [Order Completed]}}
  customer_properties: {{default: deny, allow: [name], signed_only: [email], deny: [password]}}
- name: seg-private
  id: {PRIVATE_KEY}
  type: private
  dialect: segment
  secrets: [{{id: s, value: {{env: BACKEND_SECRET}}}}]
  customer_ids: {{allow: [user_id, anonymous_id]}}
  event_types: {{allow: [Order Completed]}}
# open streams for the differential test: almost everything passes, a few names are stripped
- name: open
  id: {OPEN_ID}
  type: public
  customer_ids: {{default: allow, deny: [phone_id]}}
  event_types: {{default: allow}}
  customer_properties: {{default: allow, deny: [password]}}
  event_properties: {{default: allow, deny: [password]}}
- name: open-seg
  id: {OPEN_KEY}
  type: public
  dialect: segment
  customer_ids: {{default: allow}}
  event_types: {{default: allow}}
  customer_properties: {{default: allow, deny: [password]}}
  event_properties: {{default: allow, deny: [password]}}
"""
ENV = {"HS256_SECRET": HS256_SECRET}


def basic(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:".encode()).decode()}


OK_EVENT = '{"customer_ids":{"cookie":"c-1"},"event_type":"page_visit"}'
OK_MESSAGE = '{"type":"track","anonymousId":"a-1","event":"Product Viewed"}'
EVENTS, BATCH = "/track/u/v1/customers/events", "/track/u/v1/batch"
# -- query confusion (finding 4, the query half) ----------------------------------------

QUERIES = [
    f"{EVENTS}?Stream_id={BACKEND_ID}&stream_id={WEB_ID}",
    f"{EVENTS}?stream_id={WEB_ID}&STREAM_ID=other",
    f"{EVENTS}?stream_id[]={WEB_ID}",
    f"{EVENTS}?stream_id%5B%5D={WEB_ID}&stream_id={WEB_ID}",
    f"{EVENTS}?stream_id%00={WEB_ID}",
    f"/v1/track?writeKey={SEGMENT_KEY}&writekey={PRIVATE_KEY}",
    f"/v1/track?WriteKey[]={PRIVATE_KEY}&writeKey={SEGMENT_KEY}",
]


@pytest.mark.parametrize("target", QUERIES)
async def test_a_query_key_spelled_like_the_stream_id_is_refused(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession, target: str
) -> None:
    raw = OK_MESSAGE if target.startswith("/v1/") else OK_EVENT
    answer = await post(http, sidecar.url + target, raw=raw.encode())
    assert (answer.status, answer.code) == (400, "stream_id_conflict")
    assert collector.received == []


# -- server.limits.max_names_per_object ---------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (EVENTS, {"customer_ids": {"cookie": "c"}, "event_type": "page_visit", "properties": "N"}),
        (EVENTS, {"customer_ids": "N", "event_type": "page_visit"}),
        (BATCH, {"commands": [{"name": "customers", "data": {"customer_ids": {"cookie": "c"}, "properties": "N"}}]}),
        ("/v1/identify", {"anonymousId": "a-1", "traits": "N"}),
        ("/v1/track", {"anonymousId": "a-1", "event": "e", "properties": "N"}),
        ("/v1/page", {"anonymousId": "a-1", "context": {"traits": "N"}}),
        ("/v1/batch", {"batch": [{"type": "page", "anonymousId": "a-1"}], "context": {"traits": "N"}}),
    ],
)  # fmt: skip
async def test_a_container_with_more_names_than_the_limit_is_413(
    make_sidecar: StartSidecar,
    collector: Collector,
    http: aiohttp.ClientSession,
    path: str,
    body: dict[str, Any],
) -> None:
    sidecar = await make_sidecar(
        streams=STREAMS, server="limits: {max_names_per_object: 4}\n", env=ENV
    )
    stream = f"?stream_id={OPEN_ID}" if path.startswith("/track/") else ""
    headers = {} if stream else basic(OPEN_KEY)

    def with_names(count: int) -> bytes:
        names = "{" + ",".join(f'"n{i}":"{i}"' for i in range(count)) + "}"
        return json.dumps(body).replace('"N"', names).encode()

    answer = await post(http, sidecar.url + path + stream, raw=with_names(4), headers=headers)
    assert answer.status == 200, answer.body
    answer = await post(http, sidecar.url + path + stream, raw=with_names(5), headers=headers)
    assert (answer.status, answer.code) == (413, "payload_too_large")
    assert len(collector.received) == 1


async def test_sixty_thousand_names_are_refused_whole(
    sidecar: Sidecar, collector: Collector, http: aiohttp.ClientSession
) -> None:
    """Finding 10: a 751 KiB body of 60k denied names cost per-name metric and log
    work; the default limit (1000 a container) refuses it before any of that."""
    names = ",".join(f'"d{i:05}":1' for i in range(60_000))  # 660 KB
    raw = f'{{"customer_ids":{{"cookie":"c"}},"event_type":"page_visit","properties":{{{names}}}}}'
    answer = await post(http, f"{sidecar.url}{EVENTS}?stream_id={WEB_ID}", raw=raw.encode())
    assert (answer.status, answer.code) == (413, "payload_too_large")
    assert collector.received == []


# -- the real sidecar in front of a real case-folding decoder ----------------------------


@pytest.fixture(scope="module")
def go() -> Iterator[go_collector.GoCollector]:
    """The Go collector, one per module (each test reads only its own new records)."""
    collector = go_collector.start()
    yield collector
    go_collector.stop(collector)


@pytest.fixture
async def guarded(make_sidecar: StartSidecar, go: go_collector.GoCollector) -> Sidecar:
    """The sidecar with STREAMS, forwarding to the Go collector."""
    go.new_records()  # start clean
    return await make_sidecar(streams=STREAMS, upstream=go.url, env=ENV)


# Finding 1, row by row: the body, and what Go's decoder makes of it (a field of
# its first command, or its write keys) when the body reaches it.
FINDING_1 = [
    ("event_type", EVENTS, '{"customer_ids":{"cookie":"c-1"},"event_type":"page_visit","Event_Type":"purchase"}',
     ("event_type", "purchase")),
    ("customer_ids", EVENTS, '{"customer_ids":{"cookie":"c-1"},"event_type":"page_visit","Customer_Ids":{"registered":"victim"}}',
     ("ids", {"cookie": "c-1", "registered": "victim"})),
    ("long s", EVENTS, '{"customer_ids":{"cookie":"c-1"},"event_type":"page_visit","cu\\u017ftomer_ids":{"registered":"victim"}}',
     ("ids", {"cookie": "c-1", "registered": "victim"})),
    ("userId", "/v1/track", '{"anonymousId":"a-1","event":"Product Viewed","UserId":"victim"}',
     ("ids", {"anonymous_id": "a-1", "user_id": "victim"})),
    ("commands", BATCH, f'{{"commands":[{{"name":"customers/events","data":{OK_EVENT}}}],'
     '"Commands":[{"name":"customers/events","data":{"customer_ids":{"registered":"victim"},"event_type":"purchase"}}]}',
     ("event_type", "purchase")),
    ("batch", "/v1/batch", f'{{"batch":[{OK_MESSAGE}],'
     '"Batch":[{"type":"track","userId":"victim","event":"Order Completed"}]}',
     ("event_type", "Order Completed")),
    ("properties", EVENTS, '{"customer_ids":{"cookie":"c-1"},"event_type":"page_visit","properties":{"path":"/"},"Properties":{"password":"hunter2"}}',
     ("event_properties", ["password", "path"])),
    ("traits", "/v1/identify", '{"anonymousId":"a-1","traits":{"name":"Ada"},"Traits":{"password":"hunter2"}}',
     ("customer_properties", ["name", "password"])),
    ("kelvin writeKey", "/v1/batch", f'{{"writeKey":"{SEGMENT_KEY}","batch":[{OK_MESSAGE}],"write\\u212aey":"{PRIVATE_KEY}"}}',
     ("write_keys", [PRIVATE_KEY])),
]  # fmt: skip


def decoded(record: dict[str, Any], field: str) -> Any:
    return record[field] if field == "write_keys" else record["commands"][0][field]


@pytest.mark.parametrize(
    ("name", "path", "raw", "smuggled"), FINDING_1, ids=[r[0] for r in FINDING_1]
)
async def test_finding_1_reaches_a_go_collector_only_without_trackgate(
    guarded: Sidecar,
    go: go_collector.GoCollector,
    http: aiohttp.ClientSession,
    name: str,
    path: str,
    raw: str,
    smuggled: tuple[str, Any],
) -> None:
    stream = f"?stream_id={WEB_ID}" if path.startswith("/track/") else ""
    headers = {} if stream or "writeKey" in raw else basic(SEGMENT_KEY)
    # Sent straight to the collector, the row is a real bypass: Go decodes the smuggled part.
    direct = await post(http, go.url + path + stream, raw=raw.encode(), headers=headers)
    assert direct.status == 200
    (record,) = go.new_records()
    field, value = smuggled
    assert decoded(record, field) == value
    # Through trackgate it is refused, and nothing reaches the collector.
    answer = await post(http, guarded.url + path + stream, raw=raw.encode(), headers=headers)
    assert (answer.status, answer.code) == (400, "malformed_payload"), answer.body
    assert go.new_records() == []
    assert "victim" not in answer.body.decode() and "hunter2" not in answer.body.decode()


async def test_well_spelled_bodies_still_reach_the_go_collector(
    guarded: Sidecar, go: go_collector.GoCollector, http: aiohttp.ClientSession
) -> None:
    """The control for the rows above: the same bodies without the look-alike key."""
    answer = await post(http, f"{guarded.url}{EVENTS}?stream_id={WEB_ID}", raw=OK_EVENT.encode())
    assert answer.status == 200
    batch = f'{{"batch":[{OK_MESSAGE}],"context":{{"traits":{{"name":"Ada"}}}}}}'
    answer = await post(
        http, f"{guarded.url}/v1/batch", raw=batch.encode(), headers=basic(SEGMENT_KEY)
    )
    assert answer.status == 200
    first, second = go.new_records()
    assert first["commands"][0]["event_type"] == "page_visit"
    assert second["commands"][0]["customer_properties"] == ["name"]


# -- the differential test: what trackgate forwards, Go decodes as trackgate judged -------


def judged(rules: Rules, path: str, body: bytes) -> list[dict[str, Any]]:
    """trackgate's reading of a forwarded body, in the Go collector's terms."""
    endpoint = BUILTIN_ROUTER.match(path)
    assert endpoint is not None
    stream = rules.find(OPEN_ID if path.startswith("/track/") else OPEN_KEY)
    assert stream is not None
    payload = endpoint.dialect.decode(endpoint, Body(body), stream, rules.server.limits)
    return [
        {
            "kind": command.kind.value,
            "event_type": command.event_type,
            "ids": dict(command.customer_ids),
            "customer_properties": sorted(command.customer_properties),
            "event_properties": sorted(command.event_properties),
        }
        for command in payload.commands
    ]


FORWARDED: list[str] = []  # the paths of what the differential test got forwarded
EXAMPLES: list[int] = []  # one entry per example it ran


def sent(misspell: bool) -> st.SearchStrategy[tuple[str, payloads.Obj]]:
    """(path, body) of every endpoint kind of both dialects."""
    bloomreach = payloads.bloomreach(wild=False, misspell=misspell)
    segment = payloads.segment(wild=False, misspell=misspell, write_key=OPEN_KEY)
    return st.one_of(
        *(st.tuples(st.just(f"/track/u/v1/{name}?stream_id={OPEN_ID}"), body) for name, body in bloomreach.items()),
        *(st.tuples(st.just(f"/v1/{name}"), body) for name, body in segment.items()),
    )  # fmt: skip


SENT = st.one_of(sent(misspell=True), sent(misspell=False))  # half with no look-alike key


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sent=SENT, ascii_only=st.booleans())
async def test_what_trackgate_forwards_go_decodes_as_trackgate_judged(
    guarded: Sidecar,
    go: go_collector.GoCollector,
    http: aiohttp.ClientSession,
    sent: tuple[str, payloads.Obj],
    ascii_only: bool,
) -> None:
    sidecar, rules = guarded, guarded.holder.current
    assert rules is not None
    EXAMPLES.append(1)
    path, document = sent
    raw = payloads.render(document, ascii_only).encode()
    headers = {} if path.startswith("/track/") else basic(OPEN_KEY)
    answer = await post(http, sidecar.url + path, raw=raw, headers=headers)
    records = go.new_records()
    assert answer.status != 500
    if answer.status >= 400:
        assert records == []  # a rejected request reaches nothing
        return
    for record in records:
        assert "error" not in record, record
        assert record["commands"] == judged(rules, record["path"], record["body"].encode())
        assert set(record["write_keys"]) <= {OPEN_KEY}
        FORWARDED.append(record["path"])


def test_the_differential_test_was_not_vacuous() -> None:
    """It had bodies of both dialects forwarded (this runs after it: pytest keeps
    the file's order)."""
    if len(EXAMPLES) < 100:
        pytest.skip("the differential test did not run (deselected)")
    assert len(FORWARDED) >= 10
    assert any(p.startswith("/track/") for p in FORWARDED)
    assert any(p.startswith("/v1/") for p in FORWARDED)
