"""Body decoding: bounded gzip and strict JSON (pure functions)."""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar import jsoncodec as codec
from sidecar.body import gunzip
from sidecar.errors import Reason, Rejection
from sidecar.jsoncodec import MAX_DEPTH, _parse_strict, dump_json, parse_json, within_depth


def bomb(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"0" * (1 << 20)
    parts = [compressor.compress(chunk) for _ in range(size >> 20)]
    return b"".join(parts) + compressor.flush()


def test_a_gzip_bomb_is_refused_without_allocating_its_expansion() -> None:
    data = bomb(512 << 20)  # 512 MiB expanded, well under 1 MiB on the wire
    assert len(data) < 1 << 20
    tracemalloc.start()
    with pytest.raises(Rejection) as caught:
        gunzip(data, 1 << 20)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert caught.value.reason is Reason.PAYLOAD_TOO_LARGE
    assert peak < 8 << 20  # a few MiB at most, never hundreds


def test_gzip_at_the_limit_is_accepted() -> None:
    plain = b"x" * 1000
    assert gunzip(gzip.compress(plain), 1000) == plain
    with pytest.raises(Rejection):
        gunzip(gzip.compress(plain), 999)


@pytest.mark.parametrize(
    "raw",
    [b"NaN", b"[Infinity]", b'{"a":1,"a":2}', b"1e400", b"[" * 100_000, b"", b"{"],
)
def test_strict_json_refuses(raw: bytes) -> None:
    with pytest.raises(Rejection) as caught:
        parse_json(raw)
    assert caught.value.reason is Reason.MALFORMED_PAYLOAD


def test_dump_keeps_order_unicode_and_big_numbers() -> None:
    document = parse_json(
        b'{"z":1,"a":"\\u00e9\xf0\x9f\x8e\x89","n":123456789012345678901234567890}'
    )
    assert dump_json(document) == '{"z":1,"a":"é🎉","n":123456789012345678901234567890}'.encode()


def test_dump_survives_lone_surrogates() -> None:
    document = parse_json(b'{"a":"\\ud800"}')
    assert parse_json(dump_json(document)) == document


# -- the fast JSON path agrees with the strict parser, duplicates included -------------

KEYS = st.sampled_from(["a", "b", "é", 'q"t', "back\\slash", "c:d", " s ", "1"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet='ab":\\ é\n', max_size=6),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.lists(st.tuples(KEYS, inner), max_size=4)), max_leaves=12)  # fmt: skip
# Documents the fast path takes (no backslash, no run of 20 digits), spaced or not:
PLAIN_KEYS = st.sampled_from(["a", "b", "é", "c:d", ":", "1"])
PLAIN_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.text(alphabet="ab:é,}{[", max_size=5),
)
PLAIN_VALUES = st.recursive(PLAIN_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.lists(st.tuples(PLAIN_KEYS, inner), max_size=4)), max_leaves=12)  # fmt: skip


def render(value: object, spaced: bool, ascii_only: bool = True) -> str:
    """JSON text; lists of pairs become objects and may repeat a key (dumps never would)."""
    colon, comma = (" : ", " , ") if spaced else (":", ",")
    if isinstance(value, list) and value and all(isinstance(p, tuple) for p in value):
        return "{" + comma.join(
            json.dumps(k, ensure_ascii=ascii_only) + colon + render(v, spaced, ascii_only)
            for k, v in value
        ) + "}"  # fmt: skip
    if isinstance(value, list):
        return "[" + comma.join(render(v, spaced, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def outcome(parse: Any, raw: bytes) -> object:
    try:
        return ("ok", json.dumps(parse(raw), sort_keys=True))
    except Rejection as rejection:
        return ("rejected", rejection.reason)


@settings(max_examples=600, deadline=None)
@given(VALUES, st.booleans())
def test_fast_and_strict_json_paths_agree(value: object, spaced: bool) -> None:
    raw = render(value, spaced).encode()
    assert outcome(parse_json, raw) == outcome(_parse_strict, raw)


@settings(max_examples=600, deadline=None)
@given(PLAIN_VALUES, st.booleans())
def test_fast_and_strict_json_paths_agree_on_fast_path_documents(
    value: object, spaced: bool
) -> None:
    raw = render(value, spaced, ascii_only=False).encode()
    assert b"\\" not in raw  # the fast path's precondition: this test exercises it
    assert outcome(parse_json, raw) == outcome(_parse_strict, raw)


# -- RFC 8259 §8.1 and the nesting limit (SPEC §3.3; issue 12 findings 6 and 10) ---------


@pytest.mark.parametrize(
    "raw",
    [
        b'\xef\xbb\xbf{"a":1}',  # UTF-8 with a BOM
        '{"a":1}'.encode("utf-16"),  # with its BOM
        '{"a":1}'.encode("utf-16-le"),
        '{"a":1}'.encode("utf-16-be"),
        '{"a":1}'.encode("utf-32"),
        b'{"a":"\xed\xa0\xbd\xed\xb8\x80"}',  # CESU-8: a surrogate pair encoded as UTF-8
        b'{"a":"\xed\xa0\x80"}',  # a lone surrogate encoded as UTF-8
        b'{"a\\\\":"\xed\xa0\x80"}',  # the same on the strict path (a backslash)
        b'{"a":"\xff"}',
    ],
)
def test_json_is_utf8_without_a_bom(raw: bytes) -> None:
    with pytest.raises(Rejection) as caught:
        parse_json(raw)
    assert caught.value.reason is Reason.MALFORMED_PAYLOAD


def nested(depth: int, inner: str = "1") -> bytes:
    opens = "".join('{"k":' if level % 2 else "[" for level in range(depth))
    closes = "".join("}" if level % 2 else "]" for level in reversed(range(depth)))
    return (opens + inner + closes).encode()


@pytest.mark.parametrize("depth", [1, 2, 63, MAX_DEPTH])
def test_nesting_up_to_the_limit_is_accepted(depth: int) -> None:
    assert parse_json(nested(depth)) is not None
    assert parse_json(b"[" + b",".join([nested(depth - 1)] * 50) + b"]") is not None  # wide too


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100, 254, 255, 256, 1024, 1025, 100_000])
def test_deeper_nesting_is_malformed_never_a_crash(depth: int) -> None:
    """Depth 254 to 1024 used to crash orjson's serialiser outside the try (a 500)."""
    for raw in (nested(depth), nested(depth, '"\\u00e9"')):  # fast and strict path
        with pytest.raises(Rejection) as caught:
            parse_json(raw)
        assert caught.value.reason is Reason.MALFORMED_PAYLOAD
        assert "nested more than 64 levels" in caught.value.message


def test_brackets_inside_strings_do_not_count() -> None:
    hidden_closers = nested(60, '"' + "]}" * 40 + '"')  # would hide depth if counted
    assert parse_json(hidden_closers) is not None
    assert not within_depth(nested(70, '"' + "]}" * 40 + '"'))
    assert within_depth(b'["' + b"[" * 200 + b'"]')
    assert within_depth(b'["\\"[[[", ' + b"[" * 10 + b"]" * 10 + b"]")
    assert not within_depth(b'["\\\\", ' + b"[" * 70 + b"]" * 70 + b"]")


def reference_depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(reference_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(reference_depth, value), default=0)
    return 0


DEEP = st.recursive(
    st.one_of(st.integers(), st.text(alphabet="[]{}ab", max_size=4), st.text(alphabet='[]{}"\\', max_size=3)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(alphabet="[]{}a", max_size=3), inner, max_size=3)),
    max_leaves=400,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(DEEP, st.integers(0, 90), st.booleans())
def test_the_depth_check_agrees_with_the_document(
    value: object, wrapping: int, ascii_only: bool
) -> None:
    for level in range(wrapping):  # around the limit, with brackets in keys too
        value = [value, "]"] if level % 2 else {"}[": value}
    raw = json.dumps(value, ensure_ascii=ascii_only).encode()
    shallow = reference_depth(value) <= MAX_DEPTH
    assert within_depth(raw) == shallow
    assert outcome(parse_json, raw)[0] == ("ok" if shallow else "rejected")


def test_the_fast_path_checks_depth_with_the_serialisation_it_makes() -> None:
    """orjson serialises 254 levels and refuses 255 (probed at import); if that
    changes, the fast path falls back to scanning the bytes: correct, but slower."""
    assert codec._serialiser_limit_is(254)
    assert codec._HOLE is not None
    for depth in (MAX_DEPTH, MAX_DEPTH + 1):
        large = nested(depth).ljust(codec._SMALL + 1)  # past the bracket count
        assert (codec._serialised(json.loads(large), large) is None) == (depth > MAX_DEPTH)
