"""HTTP Basic credentials, parsed once for the stream ID (user) and the secret (password)."""

from __future__ import annotations

import base64

import pytest

from sidecar.credentials import INVALID, Basic, basic_credentials


def basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (basic(b"wk:"), Basic("wk", b"")),  # Segment's write key, no secret
        (basic(b"wk:s3cret:with:colons"), Basic("wk", b"s3cret:with:colons")),
        ("basic " + base64.b64encode(b"wk:pw").decode(), Basic("wk", b"pw")),  # scheme any case
        (basic(b"no-colon"), Basic("no-colon", b"")),
        ("Basic !!!", INVALID),  # not base64
        ("Basic d2s", INVALID),  # unpadded: strict base64 refuses it
        (basic(b"\xff\xfe:pw"), INVALID),  # the user is not UTF-8
        ("Bearer abc", None),
        ("", None),
    ],
)
def test_basic_credentials(header: str, expected: Basic | None) -> None:
    assert basic_credentials(header) == expected
