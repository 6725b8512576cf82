"""The closed set of request-time reasons, and the configuration error.

Every rejection trackgate makes is one of these codes. The code is the value
clients see in error bodies, the `reason` metric label and the log field; the
HTTP status belongs to the code, so it is decided here and nowhere else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType


class Reason(StrEnum):
    """A rejection reason: its value is the wire code, `status` its HTTP status."""

    UNKNOWN_ENDPOINT = "unknown_endpoint"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNKNOWN_STREAM = "unknown_stream"
    STREAM_ID_CONFLICT = "stream_id_conflict"
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    SECRET_MISSING = "secret_missing"
    SECRET_INVALID = "secret_invalid"
    MALFORMED_PAYLOAD = "malformed_payload"
    TOKEN_AMBIGUOUS = "token_ambiguous"
    TOKEN_MALFORMED = "token_malformed"
    TOKEN_UNKNOWN_KID = "token_unknown_kid"
    TOKEN_ALGORITHM_MISMATCH = "token_algorithm_mismatch"
    TOKEN_BAD_SIGNATURE = "token_bad_signature"
    TOKEN_EXP_MISSING = "token_exp_missing"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_LIFETIME_TOO_LONG = "token_lifetime_too_long"
    TOKEN_CLAIMS_INVALID = "token_claims_invalid"
    TOKEN_ISSUER_INVALID = "token_issuer_invalid"
    TOKEN_AUDIENCE_INVALID = "token_audience_invalid"
    KEYS_UNAVAILABLE = "keys_unavailable"
    SIGNATURE_REQUIRED = "signature_required"
    IDS_MISMATCH = "ids_mismatch"
    EVENT_TYPE_DENIED = "event_type_denied"
    NO_CUSTOMER_IDS = "no_customer_ids"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_INVALID = "upstream_invalid"
    INTERNAL_ERROR = "internal_error"
    NOT_READY = "not_ready"

    @property
    def status(self) -> int:
        """The HTTP status a request rejected for this reason gets."""
        return _TABLE[self].status

    @property
    def headers(self) -> Mapping[str, str]:
        """Fixed headers of the answer (`Retry-After` for what a client should retry)."""
        return _TABLE[self].headers

    @property
    def is_token_failure(self) -> bool:
        """True for the reasons a JWT verification can end in (answered with
        `WWW-Authenticate`, so the SDK refreshes its token: RFC 6750 §3)."""
        return _TABLE[self].token_failure

    @property
    def is_upstream_error(self) -> bool:
        """True when the collector, not the client, is at fault (outcome `upstream_error`)."""
        return _TABLE[self].upstream_error


@dataclass(frozen=True, slots=True)
class _Traits:
    status: int
    headers: Mapping[str, str] = field(default_factory=lambda: _NO_HEADERS)
    token_failure: bool = False
    upstream_error: bool = False


_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
_RETRY = MappingProxyType({"Retry-After": "1"})
_TOKEN = _Traits(401, token_failure=True)
_UPSTREAM = _Traits(502, _RETRY, upstream_error=True)

# Every reason once: its status and how its answer is shaped. One table, so a new
# reason cannot be half-defined (a test checks every member has a row).
_TABLE: Mapping[Reason, _Traits] = MappingProxyType(
    {
        Reason.UNKNOWN_ENDPOINT: _Traits(404),
        Reason.METHOD_NOT_ALLOWED: _Traits(405, MappingProxyType({"Allow": "POST"})),
        Reason.PAYLOAD_TOO_LARGE: _Traits(413),
        Reason.UNKNOWN_STREAM: _Traits(403),
        Reason.STREAM_ID_CONFLICT: _Traits(400),
        Reason.ORIGIN_NOT_ALLOWED: _Traits(403),
        Reason.SECRET_MISSING: _Traits(401),
        Reason.SECRET_INVALID: _Traits(401),
        Reason.MALFORMED_PAYLOAD: _Traits(400),
        Reason.TOKEN_AMBIGUOUS: _Traits(400),
        Reason.TOKEN_MALFORMED: _TOKEN,
        Reason.TOKEN_UNKNOWN_KID: _TOKEN,
        Reason.TOKEN_ALGORITHM_MISMATCH: _TOKEN,
        Reason.TOKEN_BAD_SIGNATURE: _TOKEN,
        Reason.TOKEN_EXP_MISSING: _TOKEN,
        Reason.TOKEN_EXPIRED: _TOKEN,
        Reason.TOKEN_LIFETIME_TOO_LONG: _TOKEN,
        Reason.TOKEN_CLAIMS_INVALID: _TOKEN,
        Reason.TOKEN_ISSUER_INVALID: _TOKEN,
        Reason.TOKEN_AUDIENCE_INVALID: _TOKEN,
        # The stream has no keys (its identity provider unreachable beyond the stale
        # window): the client should retry later, not refresh its token.
        Reason.KEYS_UNAVAILABLE: _Traits(503, MappingProxyType({"Retry-After": "5"})),
        Reason.SIGNATURE_REQUIRED: _Traits(403),
        Reason.IDS_MISMATCH: _Traits(403),
        Reason.EVENT_TYPE_DENIED: _Traits(403),
        Reason.NO_CUSTOMER_IDS: _Traits(403),
        Reason.UPSTREAM_UNAVAILABLE: _UPSTREAM,
        Reason.UPSTREAM_TIMEOUT: _Traits(504, _RETRY, upstream_error=True),
        Reason.UPSTREAM_INVALID: _UPSTREAM,
        Reason.INTERNAL_ERROR: _Traits(500),
        Reason.NOT_READY: _Traits(503, _RETRY),
    }
)


class Rejection(Exception):
    """Raised by a pipeline stage to end the request with `reason`.

    `message` is for humans and must never contain a secret, a token or a
    customer id value: it goes into the response body and the log.
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ConfigError(Exception):
    """The rules file, or a file it references, is invalid.

    Every problem starts with the path of the offending field, e.g.
    `streams[1].secrets[0].value.env: environment variable X is not set`.
    Messages never contain secret or key material.
    """

    def __init__(self, *problems: str, sources: Sequence[Path] = ()) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
        self.sources = tuple(sources)  # files the failed load read: the watcher watches them


class StartupError(Exception):
    """The process cannot start as configured (e.g. a port is taken). The message
    names the setting to change: `server.listen: cannot listen on …`."""

    @classmethod
    def cannot_listen(cls, setting: str, host: str, port: int, error: OSError) -> StartupError:
        """A failed bind, e.g. `server.listen: cannot listen on 0.0.0.0:8080: address
        already in use`."""
        reason = os.strerror(error.errno) if error.errno else type(error).__name__
        return cls(f"{setting}: cannot listen on {host}:{port}: {reason.lower()}")
