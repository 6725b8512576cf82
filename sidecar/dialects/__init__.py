"""Wire formats: one module per dialect, each behind the `Dialect` seam (`base`).

`BUILTIN` is every dialect trackgate ships; a rules version compiles the ones it
may route to into a `Router` (`rules.router`), as Envoy's FilterConfig compiles
its matchers: the request path only looks endpoints up. Adding a wire format is
one new module here and one line in `BUILTIN`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from sidecar.dialects.base import Dialect, Endpoint, Payload, PlainRequest, RequestView, Template
from sidecar.dialects.bloomreach import Bloomreach
from sidecar.dialects.braze import Braze
from sidecar.dialects.segment import Segment

BUILTIN: Mapping[str, Dialect] = MappingProxyType(
    {d.name: d for d in (Bloomreach(), Segment(), Braze())}
)
DEFAULT = "bloomreach"  # a stream without `dialect` (SPEC §1)
MEMO_SIZE = 4096  # distinct paths remembered per router


class Router:
    """The endpoints of one rules version's dialects, matched by path.

    Dialects' paths do not overlap, so the first match is the only one. Matches
    (and misses) are remembered, bounded: endpoints are immutable, and a flood of
    random paths only costs the regular-expression matching it would anyway."""

    def __init__(self, dialects: Iterable[Dialect]) -> None:
        self.dialects: Mapping[str, Dialect] = MappingProxyType({d.name: d for d in dialects})
        self.fallback = self.dialects.get(DEFAULT) or next(iter(self.dialects.values()))
        self._memo: dict[str, Endpoint | None] = {}

    def match(self, path: str) -> Endpoint | None:
        """The endpoint `path` names in any dialect, if any."""
        try:
            return self._memo[path]
        except KeyError:
            pass
        endpoint = next(filter(None, (d.match(path) for d in self.dialects.values())), None)
        if len(self._memo) >= MEMO_SIZE:
            self._memo.clear()
        self._memo[path] = endpoint
        return endpoint


BUILTIN_ROUTER = Router(BUILTIN.values())  # before any rules are loaded (`not_ready` answers)

__all__ = [
    "BUILTIN",
    "BUILTIN_ROUTER",
    "DEFAULT",
    "Dialect",
    "Endpoint",
    "Payload",
    "PlainRequest",
    "RequestView",
    "Router",
    "Template",
]
