"""Wire formats. Each dialect module owns its endpoints and body shapes."""

from __future__ import annotations

import functools

from sidecar.dialects.base import Dialect, Endpoint, Payload
from sidecar.dialects.bloomreach import Bloomreach
from sidecar.dialects.segment import Segment

DIALECTS: dict[str, Dialect] = {d.name: d for d in (Bloomreach(), Segment())}


@functools.lru_cache(maxsize=4096)
def find_endpoint(path: str) -> Endpoint | None:
    """The endpoint `path` names in any dialect (dialects' paths do not overlap).
    Endpoints are immutable, so matches are remembered (bounded)."""
    for dialect in DIALECTS.values():
        endpoint = dialect.match(path)
        if endpoint is not None:
            return endpoint
    return None


__all__ = ["DIALECTS", "Dialect", "Endpoint", "Payload", "find_endpoint"]
