"""The rules holder: one reference swapped atomically on reload.

A request reads `holder.current` once and uses that `Rules` object from start
to end, so it never mixes two versions.
"""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.rules import Rules


@dataclass(slots=True)
class RulesHolder:
    """The active rules (None until the first successful load)."""

    current: Rules | None = None
    draining: bool = False  # set on SIGTERM: /readyz turns 503
