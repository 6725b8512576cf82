"""Body decoding: bounded gzip and strict JSON (pure functions)."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib

import pytest

from sidecar.body import dump_json, gunzip, parse_json
from sidecar.errors import Reason, Rejection


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
