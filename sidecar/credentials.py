"""HTTP Basic credentials (RFC 7617), read one way for every dialect and for secrets.

Segment-style SDKs send their write key as the Basic user (`Basic
base64(writeKey:)`) and backends their stream secret as the password; the
stream ID stage reads the user, the secret stage the password, from this one
parse.
"""

from __future__ import annotations

import base64
import binascii
from typing import NamedTuple


class Basic(NamedTuple):
    """An `Authorization: Basic …` value, decoded."""

    user: str
    password: bytes


INVALID = Basic("", b"")  # present but undecodable: names no stream, matches no secret


def basic_credentials(authorization: str) -> Basic | None:
    """The Basic credentials of an `Authorization` value; None when its scheme is not
    Basic, `INVALID` when it is but does not decode (strict base64, UTF-8 user)."""
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
        return Basic(user.decode(), password)
    except (binascii.Error, ValueError):
        return INVALID
