"""The dialect seam: what every wire format provides to the pipeline.

A `Dialect` owns everything about its wire format — its endpoints, where the
stream ID and secrets travel, how a body becomes commands and goes back, how
its SDKs must be answered, the customer id types it produces, its templates,
its anonymous id (for the lint) and the stream options only it takes. The
generic modules (config, handler, streams, auth, explain) name no dialect.
Requests reach a dialect as a `RequestView` (method, path, query, headers),
so `explain` and tests pass plain values instead of an aiohttp request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from multidict import CIMultiDictProxy, MultiMapping

from sidecar.body import Body
from sidecar.commands import Command, Kind, Verdict
from sidecar.errors import Rejection
from sidecar.reply import Reply
from sidecar.rules import EdgeLimits, SecretPlace, Stream, TokenPlace


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A matched tracking endpoint."""

    dialect: Dialect
    name: str  # e.g. "customers/events"; a log field
    kind: Kind | None  # None for batch endpoints
    path_stream_id: str | None = None  # the stream ID carried in the path, if any
    form: bool = False  # the body is a form (application/x-www-form-urlencoded), not JSON
    secret_from: tuple[SecretPlace, ...] = ()  # where a private stream's secret travels (() §5.1's)
    gzip_magic: bool = False  # a body starting with gzip's magic bytes is gzip (no header needed)

    @property
    def is_batch(self) -> bool:
        return self.kind is None


@dataclass(frozen=True, slots=True)
class Payload:
    """A decoded request body: the document, its raw commands and their decoding."""

    endpoint: Endpoint
    document: Any
    items: Sequence[Any]  # the raw command objects, in order
    commands: Sequence[Command]

    @property
    def is_single(self) -> bool:
        """True when the document is the one command (not a batch envelope)."""
        return not self.endpoint.is_batch


class RequestView(Protocol):
    """What a dialect may read of a request besides its body (aiohttp's request is one)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def query(self) -> MultiMapping[str]: ...
    @property
    def headers(self) -> CIMultiDictProxy[str]: ...


@dataclass(frozen=True, slots=True)
class PlainRequest:
    """A `RequestView` made of plain values (for `trackgate explain` and tests)."""

    method: str
    path: str
    query: MultiMapping[str]
    headers: CIMultiDictProxy[str]


# A template: permission-set name → {default, allow, signed_only, deny} (SPEC §4).
Template = Mapping[str, Mapping[str, Any]]


class Dialect(Protocol):
    """A collector wire format."""

    name: str
    identity_headers: Mapping[str, str]  # header name → the id type it carries (SPEC §3.3)
    id_types: frozenset[str] | None  # every customer id type it can carry (None: any name)
    anonymous_id: str  # the id type its web SDKs track anonymous visitors by (a lint)
    templates: Mapping[str, Template]  # `public` and `private` in this format's names
    # Stream keys only this dialect takes: the JSON Schema of each (`trackgate schema`).
    option_schemas: Mapping[str, Mapping[str, Any]]
    # Where its SDKs send a JWT when the stream's `jwt.token_from` does not say (SPEC §5.2).
    default_token_from: tuple[TokenPlace, ...]
    # Credential headers (lower case) forwarded although consumed: Braze verifies its
    # signature again when it is the upstream (SPEC §3.4). Empty for most formats.
    forwarded_credentials: frozenset[str]

    def compile_options(self, raw: Mapping[str, Any], path: str) -> object:
        """The stream's options, compiled (`Stream.options`). Raises ConfigError."""

    def match(self, path: str) -> Endpoint | None:
        """The endpoint `path` names, if it is one of this dialect's."""

    def stream_id(self, request: RequestView, endpoint: Endpoint, body: Body) -> str | None:
        """The stream ID the request names. Rejects: stream_id_conflict."""

    def decode(self, endpoint: Endpoint, body: Body, stream: Stream, limits: EdgeLimits) -> Payload:
        """Split a body into commands, each interpreted object checked against the
        dialect's declared field names (`sidecar.spelling`) and
        `limits.max_names_per_object`. Rejects: malformed_payload, payload_too_large."""

    def encode(self, payload: Payload, verdicts: Sequence[Verdict]) -> bytes:
        """The body to forward: forwarded commands only, stripped names removed.
        It may rewrite `payload.document` in place: the document is the request's
        own, and `answer_batch` and everything after read only the verdicts."""

    def answer_batch(self, verdicts: Sequence[Verdict], upstream: Reply | None) -> Reply:
        """The client's answer to a batch with rejected commands (`upstream` None: all were)."""

    def error_reply(self, rejection: Rejection) -> Reply:
        """The answer to a rejected request, in the form this format's SDKs act on
        (`sidecar.reply.error_reply` is the standard one)."""

    def upstream_headers(self, stream: Stream, consumed: frozenset[str]) -> Mapping[str, str]:
        """Headers to set on the forwarded request, given the consumed credential headers."""

    def default_path(self, document: Any) -> str:
        """The endpoint a body of this shape would be sent to (for `trackgate explain`)."""
