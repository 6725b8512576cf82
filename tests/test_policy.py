"""The pure decision function (SPEC §5.2 table, §5.3), table-driven."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.auth import Principal, TokenState
from sidecar.commands import Command, Kind
from sidecar.config import load_rules
from sidecar.errors import Reason, Rejection
from sidecar.policy import Decision, decide, needs_signature, verdict_memo
from sidecar.rules import SetName, Stream

STREAM = """
version: 1
server: {{upstream: {{url: "http://127.0.0.1:1"}}}}
streams:
  - name: web
    id: w1
    type: public
    {jwt}
    customer_ids: {{default: deny, allow: [cookie], signed_only: [registered], deny: [phone_id]}}
    event_types: {{default: deny, allow: [page_visit], signed_only: [purchase]}}
    customer_properties: {{default: deny, allow: [first_name], signed_only: [email]}}
    event_properties: {{default: allow, deny: [card_number], signed_only: [total]}}
"""
SECRET = "k" * 32


def stream(tmp_path: Path, mode: str | None) -> Stream:
    jwt = (
        f"jwt: {{enforcement: {mode}, keys: [{{kid: k, alg: HS256, secret: {{env: S}}}}]}}"
        if mode
        else ""
    )
    path = tmp_path / "rules.yaml"
    path.write_text(STREAM.format(jwt=jwt))
    return load_rules(path, {"S": SECRET}).streams[0]


NO_TOKEN = Principal()
VALID = Principal(TokenState.VALID, signed_ids={"registered": "u-1"})
VALID_COOKIE = Principal(TokenState.VALID, signed_ids={"cookie": "c-1"})
BAD = Principal(TokenState.INVALID, Rejection(Reason.TOKEN_EXPIRED, "the token has expired"))


def visit(**ids: str) -> Command:
    return Command(Kind.EVENT, customer_ids=ids or {"cookie": "c-1"}, event_type="page_visit")


def purchase(**ids: str) -> Command:
    return Command(Kind.EVENT, customer_ids=ids or {"cookie": "c-1"}, event_type="purchase")


# (mode, principal, command) → (request rejection, command reason, would_reject)
TABLE = [
    # needs no signature: the token never matters
    ("enforce", NO_TOKEN, visit(), None, None, ()),
    ("enforce", BAD, visit(), None, None, ()),
    ("monitor", BAD, visit(), None, None, ()),
    ("off", BAD, visit(), None, None, ()),
    # needs a signature, no token
    ("enforce", NO_TOKEN, purchase(), None, Reason.SIGNATURE_REQUIRED, ()),
    ("monitor", NO_TOKEN, purchase(), None, None, (Reason.SIGNATURE_REQUIRED,)),
    ("off", NO_TOKEN, purchase(), None, None, ()),
    (None, NO_TOKEN, purchase(), None, None, ()),
    # needs a signature, the token failed: 401 for the whole request
    ("enforce", BAD, purchase(), Reason.TOKEN_EXPIRED, None, ()),
    ("monitor", BAD, purchase(), None, None, (Reason.TOKEN_EXPIRED,)),
    ("off", BAD, purchase(), None, None, ()),
    # needs a signature, valid token
    ("enforce", VALID, purchase(), None, None, ()),
    ("enforce", VALID, purchase(cookie="c-1", registered="u-1"), None, None, ()),
    # a signed-only id the token does not sign
    (
        "enforce",
        VALID_COOKIE,
        visit(cookie="c-1", registered="u-1"),
        None,
        Reason.SIGNATURE_REQUIRED,
        (),
    ),
    (
        "monitor",
        VALID_COOKIE,
        visit(cookie="c-1", registered="u-1"),
        None,
        None,
        (Reason.SIGNATURE_REQUIRED,),
    ),
    ("off", VALID_COOKIE, visit(cookie="c-1", registered="u-1"), None, None, ()),
    # an id the token signs with another value: the whole request
    ("enforce", VALID, visit(cookie="c-1", registered="u-2"), Reason.IDS_MISMATCH, None, ()),
    (
        "monitor",
        VALID,
        visit(cookie="c-1", registered="u-2"),
        None,
        None,
        (Reason.IDS_MISMATCH,),
    ),
    ("off", VALID, visit(cookie="c-1", registered="u-2"), None, None, ()),
]


@pytest.mark.parametrize(
    ("mode", "principal", "command", "request_reason", "reason", "would"), TABLE
)
def test_enforcement_table(
    tmp_path: Path,
    mode: str | None,
    principal: Principal,
    command: Command,
    request_reason: Reason | None,
    reason: Reason | None,
    would: tuple[Reason, ...],
) -> None:
    decision = decide(stream(tmp_path, mode), principal, [command])
    if request_reason:
        assert decision.rejection is not None and decision.rejection.reason is request_reason
        return
    assert decision.rejection is None
    [verdict] = decision.verdicts
    assert verdict.reason is reason
    assert set(verdict.would_reject) | set(decision.would_reject) == set(would)


def outcome(decision: Decision) -> object:
    if decision.rejection is not None:
        return decision.rejection.reason
    return [(v.reason, dict(v.stripped), v.would_reject) for v in decision.verdicts]


@pytest.mark.parametrize("mode", ["enforce", "monitor", "off"])
def test_the_verdict_memo_never_changes_a_decision(tmp_path: Path, mode: str) -> None:
    """One stream (one memo) judges every principal and command in turn, twice, and
    must agree with a fresh stream (an empty memo) each time: a remembered verdict
    from one principal never answers for another."""
    signs_u2 = Principal(TokenState.VALID, signed_ids={"registered": "u-2"})
    signs_both = Principal(TokenState.VALID, signed_ids={"registered": "u-1", "cookie": "c-1"})
    principals = [NO_TOKEN, VALID, VALID_COOKIE, BAD, signs_u2, signs_both]
    commands = [
        visit(),
        purchase(),
        visit(cookie="c-1", registered="u-1"),
        visit(cookie="c-1", registered="u-2"),
        purchase(cookie="c-1", registered="u-1"),
        purchase(registered="u-2"),
        visit(phone_id="p", registered="u-1"),
    ]
    shared = stream(tmp_path, mode)
    for _ in range(2):
        for principal in principals:
            for command in commands:
                fresh = stream(tmp_path, mode)
                batch = [command, visit(), command]
                assert outcome(decide(shared, principal, batch)) == outcome(
                    decide(fresh, principal, batch)
                ), (principal, command)
    assert verdict_memo(shared)  # the memo was used


def test_monitor_records_request_level_reasons(tmp_path: Path) -> None:
    decision = decide(stream(tmp_path, "monitor"), VALID, [visit(cookie="c", registered="u-2")])
    assert decision.would_reject == (Reason.IDS_MISMATCH,)
    decision = decide(stream(tmp_path, "monitor"), BAD, [purchase()])
    assert Reason.TOKEN_EXPIRED in decision.would_reject


@pytest.mark.parametrize(
    ("command", "reason", "stripped"),
    [
        (visit(cookie="c", phone_id="p"), None, {SetName.CUSTOMER_IDS: ("phone_id",)}),
        (visit(phone_id="p"), Reason.NO_CUSTOMER_IDS, {}),
        (Command(Kind.EVENT, customer_ids={}, event_type="page_visit"), Reason.NO_CUSTOMER_IDS, {}),
        (
            Command(Kind.EVENT, customer_ids={"cookie": "c"}, event_type="x"),
            Reason.EVENT_TYPE_DENIED,
            {},
        ),
        (
            Command(
                Kind.CUSTOMER,
                customer_ids={"cookie": "c"},
                customer_properties=("first_name", "email", "age"),
            ),
            None,
            {SetName.CUSTOMER_PROPERTIES: ("email", "age")},
        ),
        (
            Command(
                Kind.EVENT,
                customer_ids={"cookie": "c"},
                event_type="page_visit",
                event_properties=("path", "card_number", "total"),
            ),
            None,
            {SetName.EVENT_PROPERTIES: ("card_number", "total")},
        ),
        (Command(Kind.PASSTHROUGH), None, {}),
        (Command(Kind.EVENT, malformed="bad"), Reason.MALFORMED_PAYLOAD, {}),
    ],
)
def test_commands_in_enforce_without_token(
    tmp_path: Path,
    command: Command,
    reason: Reason | None,
    stripped: dict[SetName, tuple[str, ...]],
) -> None:
    [verdict] = decide(stream(tmp_path, "enforce"), NO_TOKEN, [command]).verdicts
    assert verdict.reason is reason
    assert dict(verdict.stripped) == stripped


def test_signed_properties_are_kept_with_a_valid_token(tmp_path: Path) -> None:
    command = Command(
        Kind.CUSTOMER, customer_ids={"cookie": "c"}, customer_properties=("email", "password")
    )
    [verdict] = decide(stream(tmp_path, "enforce"), VALID, [command]).verdicts
    assert dict(verdict.stripped) == {SetName.CUSTOMER_PROPERTIES: ("password",)}


def test_an_ids_mismatch_rejects_the_whole_batch(tmp_path: Path) -> None:
    commands = [visit(), visit(cookie="c", registered="someone-else")]
    decision = decide(stream(tmp_path, "enforce"), VALID, commands)
    assert decision.rejection is not None and decision.rejection.reason is Reason.IDS_MISMATCH


def test_needs_signature(tmp_path: Path) -> None:
    perms = stream(tmp_path, "enforce").permissions
    assert needs_signature(perms, purchase())
    assert needs_signature(perms, visit(cookie="c", registered="u"))
    assert not needs_signature(perms, visit())
    assert needs_signature(
        perms, Command(Kind.CUSTOMER, customer_ids={"cookie": "c"}, customer_properties=("email",))
    )
    assert not needs_signature(perms, Command(Kind.PASSTHROUGH))


def test_monitor_records_what_enforce_would_do_once_per_command(tmp_path: Path) -> None:
    command = purchase(cookie="c-1", registered="u-1")  # two signed-only items, one verdict
    [verdict] = decide(stream(tmp_path, "monitor"), NO_TOKEN, [command]).verdicts
    assert verdict.would_reject == (Reason.SIGNATURE_REQUIRED,)
    assert verdict.forwarded
