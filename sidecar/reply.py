"""An HTTP answer before it becomes a response: what stages and dialects return."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer before it becomes an aiohttp response."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
