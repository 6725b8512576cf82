"""A declared dialect's answers: what its SDKs must see when trackgate answers itself.

Three situations (SPEC §3.5): a request rejected whole, a batch whose every
command was rejected (nothing forwarded), a batch with some commands rejected
(the collector's answer, unless the declaration says otherwise). Bodies are
templates: `{code}`, `{message}`, `{status}`, `{rejected}` in strings, and a
string that is exactly `"{status}"`, `"{rejected}"` or `"{rejected_indices}"`
becomes that number or list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.commands import Verdict
from sidecar.errors import Reason, Rejection
from sidecar.jsoncodec import dump_json
from sidecar.reply import Reply

REJECTED_HEADER = "X-Trackgate-Rejected"
PLACEHOLDERS = frozenset({"code", "message", "status", "rejected", "rejected_indices"})
_PLACEHOLDER = re.compile(r"\{(code|message|status|rejected)\}")
_WHOLE = {"{status}": "status", "{rejected}": "rejected", "{rejected_indices}": "rejected_indices"}
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class BodyTemplate:
    """An answer body: a JSON value (sent as JSON) or a string (sent as text)."""

    template: Any

    @property
    def content_type(self) -> str:
        return _TEXT if isinstance(self.template, str) else _JSON

    def render(self, values: Mapping[str, Any]) -> bytes:
        if isinstance(self.template, str):
            return str(_fill(self.template, values, whole=False)).encode()
        return dump_json(_fill(self.template, values, whole=True))


def _fill(value: Any, values: Mapping[str, Any], *, whole: bool) -> Any:
    if isinstance(value, str):
        if whole and value in _WHOLE:
            return values[_WHOLE[value]]
        if "{" not in value:
            return value
        return _PLACEHOLDER.sub(lambda m: str(values[m[1]]), value)
    if isinstance(value, dict):
        return {key: _fill(item, values, whole=whole) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, values, whole=whole) for item in value]
    return value


@dataclass(frozen=True, slots=True)
class Answer:
    """A status (None: the reason's own) and a body."""

    status: int | None
    body: BodyTemplate


DEFAULT_REJECTED = BodyTemplate({"success": False, "code": "{code}", "message": "{message}"})
DEFAULT_ALL_REJECTED = Answer(200, BodyTemplate({"success": True}))


@dataclass(frozen=True, slots=True)
class Answers:
    """How a declared dialect answers (compiled from its `answers:`)."""

    rejected: BodyTemplate = DEFAULT_REJECTED
    statuses: tuple[int, ...] = ()  # the 4xx statuses its SDKs drop on (empty: all kept)
    overrides: Mapping[Reason, Answer] | None = None
    all_rejected: Answer = DEFAULT_ALL_REJECTED
    partial: Answer | None = None  # None: the collector's answer

    def error_reply(self, rejection: Rejection) -> Reply:
        """The answer to a request rejected whole: the reason's status (a 4xx the SDKs
        would retry becomes the first of `statuses`), its fixed headers, and for a
        failed token `WWW-Authenticate` (RFC 6750 §3)."""
        reason = rejection.reason
        override = self.overrides.get(reason) if self.overrides else None
        status = self._status(reason.status)
        body = self.rejected
        if override is not None:
            status = override.status if override.status is not None else status
            body = override.body
        values = {"code": reason.value, "message": rejection.message, "status": status}
        headers = {"Content-Type": body.content_type, **reason.headers}
        if reason.is_token_failure:
            headers["WWW-Authenticate"] = (
                f'Bearer error="invalid_token", error_description="{rejection.message}"'
            )
        return Reply(
            status, body.render({**values, "rejected": 0, "rejected_indices": []}), headers
        )

    def _status(self, status: int) -> int:
        if self.statuses and 400 <= status < 500 and status not in self.statuses:
            return self.statuses[0]
        return status

    def batch_reply(self, verdicts: Sequence[Verdict], upstream: Reply | None) -> Reply:
        """A batch with rejected commands: the all-rejected answer (nothing was
        forwarded), the partial answer over a 2xx from the collector, or the
        collector's answer; each with `X-Trackgate-Rejected: N`."""
        indices = [index for index, verdict in enumerate(verdicts) if not verdict.forwarded]
        rejected = {REJECTED_HEADER: str(len(indices))}
        if upstream is None:
            answer = self.all_rejected
        elif self.partial is not None and 200 <= upstream.status < 300:
            answer = self.partial
        else:
            return Reply(upstream.status, upstream.body, {**upstream.headers, **rejected})
        status = answer.status if answer.status is not None else 200
        values = {
            "code": "",
            "message": f"{len(indices)} of {len(verdicts)} commands rejected",
            "status": status,
            "rejected": len(indices),
            "rejected_indices": indices,
        }
        headers = {"Content-Type": answer.body.content_type, **rejected}
        return Reply(status, answer.body.render(values), headers)
