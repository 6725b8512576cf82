"""trackgate: a reverse-proxy authorization sidecar for event-tracking collectors."""

from sidecar import native as _native  # first: picks the compiled build or the sources

__version__ = "0.1.0"
NATIVE = _native.STATE
