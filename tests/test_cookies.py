"""The Cookie header parser, sans-IO (RFC 6265 §4.2.1)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.cookies import CookieRule, kept, pairs, values_of


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("a=1; b=2", [("a", "a=1"), ("b", "b=2")]),
        ("a=1;b=2;  c=3 ", [("a", "a=1"), ("b", "b=2"), ("c", "c=3")]),
        ('a="x y"', []),  # a space, even quoted
        ('a="xy"', [("a", 'a="xy"')]),
        ('a="xy', []),
        ("a=", [("a", "a=")]),
        ("a", []),  # no `=`: browsers read a nameless cookie, Go a valueless one
        ("=1", []),
        ("a b=1", []),
        ("a=1, b=2", []),  # one cookie to Go, two to a comma-splitting collector
        ("a=x\\y", []),
        ("a=\x00", []),
        ("a=é", []),
        ("a=RS_ENC_v3_eyJ4IjoxfQ==; b=%2F", [("a", "a=RS_ENC_v3_eyJ4IjoxfQ=="), ("b", "b=%2F")]),
    ],
)
def test_pairs_are_read_strictly(header: str, expected: list[tuple[str, str]]) -> None:
    assert list(pairs([header])) == expected


def test_values_of_a_name_across_headers() -> None:
    assert list(values_of(["a=1; t=x", 't="y"; T=z'], "t")) == ["x", "y"]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (CookieRule(frozenset({"a", "t"}), frozenset({"t"})), "a=1"),
        (CookieRule(frozenset({"*"}), frozenset({"t"})), "a=1; b=2"),
        (CookieRule(frozenset({"*"})), "a=1; t=x; b=2"),
        (CookieRule(frozenset({"zzz"})), None),
    ],
)
def test_kept_applies_the_rule_and_consumes_token_cookies(
    rule: CookieRule, expected: str | None
) -> None:
    assert kept(["a=1; t=x", "b=2"], rule) == expected


NAME = st.text("abcxyzABC_-.!#$", min_size=1, max_size=8)
VALUE = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='",;\\'),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(NAME, VALUE), max_size=6), st.sampled_from(["; ", ";", " ;  "]))
def test_well_formed_headers_round_trip(cookies: list[tuple[str, str]], separator: str) -> None:
    header = separator.join(f"{n}={v}" for n, v in cookies)
    assert list(pairs([header])) == [(n, f"{n}={v}") for n, v in cookies]
    assert kept([header], CookieRule(frozenset({"*"}))) == ("; ".join(
        f"{n}={v}" for n, v in cookies
    ) or None)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_whatever_is_kept_is_well_formed(header: str) -> None:
    """Nothing a collector could split differently survives: no `,`, space, `\\`, or
    control character in a kept pair."""
    result = kept([header], CookieRule(frozenset({"*"})))
    for pair in (result or "").split("; ") if result else []:
        assert pair.count("=") >= 1
        assert not any(c in pair for c in " ,;\\\t\r\n") and pair.isascii()
