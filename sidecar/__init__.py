"""trackgate: a reverse-proxy authorization sidecar for event-tracking collectors."""

__version__ = "0.1.0"
