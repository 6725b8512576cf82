"""The closed set of request-time reasons, and the configuration error.

Every rejection trackgate makes is one of these codes. The code is the value
clients see in error bodies, the `reason` metric label and the log field; the
HTTP status belongs to the code, so it is decided here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path


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
        return _STATUS[self]

    @property
    def is_token_failure(self) -> bool:
        """True for the reasons a JWT verification can end in."""
        return self.value.startswith("token_") and self is not Reason.TOKEN_AMBIGUOUS


_STATUS: dict[Reason, int] = {
    Reason.UNKNOWN_ENDPOINT: 404,
    Reason.METHOD_NOT_ALLOWED: 405,
    Reason.PAYLOAD_TOO_LARGE: 413,
    Reason.UNKNOWN_STREAM: 403,
    Reason.STREAM_ID_CONFLICT: 400,
    Reason.ORIGIN_NOT_ALLOWED: 403,
    Reason.SECRET_MISSING: 401,
    Reason.SECRET_INVALID: 401,
    Reason.MALFORMED_PAYLOAD: 400,
    Reason.TOKEN_AMBIGUOUS: 400,
    Reason.TOKEN_MALFORMED: 401,
    Reason.TOKEN_UNKNOWN_KID: 401,
    Reason.TOKEN_ALGORITHM_MISMATCH: 401,
    Reason.TOKEN_BAD_SIGNATURE: 401,
    Reason.TOKEN_EXP_MISSING: 401,
    Reason.TOKEN_EXPIRED: 401,
    Reason.TOKEN_LIFETIME_TOO_LONG: 401,
    Reason.TOKEN_CLAIMS_INVALID: 401,
    Reason.SIGNATURE_REQUIRED: 403,
    Reason.IDS_MISMATCH: 403,
    Reason.EVENT_TYPE_DENIED: 403,
    Reason.NO_CUSTOMER_IDS: 403,
    Reason.UPSTREAM_UNAVAILABLE: 502,
    Reason.UPSTREAM_TIMEOUT: 504,
    Reason.UPSTREAM_INVALID: 502,
    Reason.INTERNAL_ERROR: 500,
    Reason.NOT_READY: 503,
}


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
