"""Strict JSON, the one reading trackgate and the collector must share (SPEC §3.3).

`parse_json` refuses what a collector might read differently from trackgate:
duplicate keys, NaN and Infinity, numbers past a double, anything but UTF-8
without a BOM (RFC 8259 §8.1), and documents nested deeper than `MAX_DEPTH`.
`dump_json` writes compact UTF-8 with key order, unicode and big integers kept.
Request bodies, collector answers and token segments all go through here.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import orjson

from sidecar.errors import Reason, Rejection

_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 20  # may not fit in 64 bits: parsed exactly by the stdlib
MAX_DEPTH = 64  # nesting levels of arrays and objects (SPEC §3.3)
_PARENS = bytes.maketrans(b"[{]}", b"(())")
_NOT_MARKS = bytes(sorted(set(range(256)) - set(b'[]{}"')))
_STEPS = bytes.maketrans(b"()", b"\x01\xff")  # +1 / -1 as signed bytes
_QUICK_PASSES = 8  # deeper than this is rare: the rest of the way is one linear scan
# orjson's serialiser refuses documents nested deeper than 254 levels (checked at
# import: `_serialiser_limit_is`). Serialised inside 190 more levels of `[...]`
# (a chain of lists built once), a document fails exactly when it is nested
# deeper than MAX_DEPTH: the fast path gets its depth check from the
# serialisation it makes anyway (for the duplicate-key count), for 380 bytes of
# brackets, instead of a scan of the body (~1.3 µs/KB).
_ORJSON_LEVELS = 254
_SMALL = 4096  # below this, counting the brackets is cheaper than the padding


def parse_json(body: bytes) -> Any:
    """The JSON document in `body`. Rejects: malformed_payload.

    The fast path (orjson) takes bodies with no backslash and no run of 20 digits
    (integers orjson would turn into floats). Without a backslash no string has
    an escape, so orjson's compact re-serialisation writes every string exactly
    as received, and a `:` outside a string is a key's separator: the counts of
    `:` in the body and in the re-serialisation differ exactly when a duplicate
    key was dropped (each drop removes at least its separator; nothing adds one).
    Every other body, and any mismatch, goes to the strict stdlib parser, which
    refuses duplicate keys itself. The nesting depth is checked by that
    re-serialisation on the fast path, and on the bytes before the strict parser.
    """
    # `find`, not `in`: with bytes, `in` first tries its operand as an integer and
    # builds and drops a TypeError, which costs more than the search itself.
    if body.find(b"\\") < 0 and body.translate(_DIGITS_TO_ZERO).find(_LONG_NUMBER) < 0:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
        else:
            if len(body) <= _SMALL and body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
                serialised: bytes | None = orjson.dumps(document)  # too few brackets to nest deeper
            else:
                serialised = _serialised(document, body)
            if serialised is not None and body.count(b":") == serialised.count(b":"):
                return document
    if not within_depth(body):
        raise Rejection(
            Reason.MALFORMED_PAYLOAD, f"the body is nested more than {MAX_DEPTH} levels deep"
        )
    return _parse_strict(body)


def _serialised(document: Any, body: bytes) -> bytes | None:
    """orjson's compact serialisation of `document` (with only brackets around it),
    or None when it is nested deeper than MAX_DEPTH. (`parse_json` serialises a small
    body with too few brackets to nest deeper, a single event, itself.)"""
    if _HOLE is None:  # the probe at import failed: scan the bytes instead
        return orjson.dumps(document) if within_depth(body) else None
    _HOLE[0] = document
    try:
        return orjson.dumps(_PADDED)
    except orjson.JSONEncodeError:
        return None
    finally:
        _HOLE[0] = None  # hold on to no request's data


def _parse_strict(body: bytes) -> Any:
    # Decoded here, strictly: given bytes, json.loads would also take UTF-16/32,
    # a BOM and surrogates encoded in UTF-8 (CESU-8), which RFC 8259 §8.1 excludes.
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise Rejection(Reason.MALFORMED_PAYLOAD, "the body is not UTF-8 text") from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_no_constant,
            parse_float=_finite_float,
        )
    except (ValueError, RecursionError) as error:
        detail = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
        raise Rejection(Reason.MALFORMED_PAYLOAD, f"the body is not valid JSON: {detail}") from None


def within_depth(body: bytes) -> bool:
    """True unless `body`, read as JSON, nests arrays and objects more than
    `MAX_DEPTH` levels deep (a body that is not JSON may get either answer; the
    parser rejects it anyway).

    Done on the bytes, before parsing, with C-level passes only: the brackets
    outside strings are kept as `(` and `)` (escaped quotes and backslashes are
    dropped first, so quotes pair up; a string with no bracket in it is an
    adjacent `""` pair, and when every quote is in one the quotes just go). Each
    `replace("()", "")` then removes exactly the innermost pairs, one level; a
    few passes finish a normal document, and a deeper one gets a single
    running-sum scan that stops at the first level past the limit.
    """
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = body.translate(_PARENS, _NOT_MARKS)
    if marks.count(b"(") <= MAX_DEPTH:  # the common single event: done
        return True
    quotes = marks.count(b'"')
    if marks.count(b'""') * 2 == quotes:
        marks = marks.translate(None, b'"')
    else:  # some string holds a bracket: keep what is between strings
        marks = b"".join(marks.split(b'"')[::2])
    for done in range(_QUICK_PASSES):
        if marks.count(b"(") <= MAX_DEPTH - done:
            return True
        shorter = marks.replace(b"()", b"")
        if len(shorter) == len(marks):
            return True  # unbalanced: not JSON
        marks = shorter
    levels = itertools.accumulate(memoryview(marks.translate(_STEPS)).cast("b"))
    return not any(map((MAX_DEPTH - _QUICK_PASSES).__lt__, levels))


def _chain(levels: int) -> tuple[list[Any], list[Any]]:
    """`levels` nested one-element lists: (the outermost, the innermost)."""
    inner: list[Any] = [None]
    outer = inner
    for _ in range(levels - 1):
        outer = [outer]
    return outer, inner


def _serialiser_limit_is(levels: int) -> bool:
    """True when orjson serialises `levels` nested lists but not one more."""
    outcomes = []
    for depth in (levels, levels + 1):
        try:
            orjson.dumps(_chain(depth)[0])
        except orjson.JSONEncodeError:
            outcomes.append(False)
        else:
            outcomes.append(True)
    return outcomes == [True, False]


# Not thread-safe, and need not be: the request path runs on one event loop.
_PADDED, _HOLE = (
    _chain(_ORJSON_LEVELS - MAX_DEPTH) if _serialiser_limit_is(_ORJSON_LEVELS) else (None, None)
)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("an object has a duplicate key")
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("a number is out of range")
    return value


def dump_json(document: Any) -> bytes:
    """Compact UTF-8 JSON; key order and unicode kept as parsed."""
    try:
        return orjson.dumps(document)
    except TypeError:  # integers past 64 bits or lone surrogates: the stdlib keeps them
        pass
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate escape in the input: keep it escaped
        return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
