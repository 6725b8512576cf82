"""An HTTP answer before it becomes a response: what stages and dialects return."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sidecar.errors import Rejection


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer before it becomes an aiohttp response."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


def error_reply(rejection: Rejection, body: bytes) -> Reply:
    """The standard answer to a rejection (SPEC §5): the reason's status and fixed
    headers (`Retry-After`, `Allow`), and for a failed token `WWW-Authenticate`
    (RFC 6750 §3: the SDK refreshes its token and retries). Dialects whose SDKs
    need another answer (Braze reads only 2xx bodies) build their own."""
    reason = rejection.reason
    headers = {"Content-Type": "application/json", **reason.headers}
    if reason.is_token_failure:
        headers["WWW-Authenticate"] = (
            f'Bearer error="invalid_token", error_description="{rejection.message}"'
        )
    return Reply(reason.status, body, headers)
