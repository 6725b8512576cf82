"""The closed set of reasons: every member is fully defined in one table."""

from __future__ import annotations

import pytest

from sidecar.errors import Reason


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_has_a_status_and_a_shape(reason: Reason) -> None:
    assert 400 <= reason.status <= 599
    assert reason.is_token_failure == (reason.status == 401 and reason.value.startswith("token_"))
    if reason is Reason.KEYS_UNAVAILABLE:  # the identity provider: not at once
        assert reason.headers["Retry-After"] == "5"
    elif reason.is_upstream_error or reason.status == 503:
        assert reason.headers["Retry-After"] == "1"  # SDKs retry, nothing is lost
    else:
        assert "Retry-After" not in reason.headers


def test_the_wire_codes_are_the_specs() -> None:
    assert {r.value for r in Reason if r.is_upstream_error} == {
        "upstream_unavailable",
        "upstream_timeout",
        "upstream_invalid",
    }
    assert Reason.METHOD_NOT_ALLOWED.headers == {"Allow": "POST"}
    assert (Reason.KEYS_UNAVAILABLE.status, Reason.KEYS_UNAVAILABLE.is_token_failure) == (
        503,
        False,
    )
