"""The tracking listener's connection table: how many are open, which may be
evicted, the cap, and the drain (SPEC §2 `server.limits.max_connections`, §6.5).

The cap is `max_connections`, lowered to what the process's descriptor limit
(RLIMIT_NOFILE) leaves after a reserve for the collector pool, the admin
listener and files: client connections alone must never exhaust the descriptor
table, or the admin port's `/healthz` and the collector connections fail with
them (finding 3: at `ulimit -n 1024` a slowloris left 1 request in 80).

At the cap a new connection first evicts the one that has waited longest
without sending a complete head — a connection still receiving its head, or an
idle keep-alive one — and is refused (closed at once) only when every open
connection is busy with a request. nginx does the same with idle keep-alive
connections when its worker_connections run out ("reusing connections"); also
taking unfinished heads means a slowloris flood cannot hold every slot, and the
newest connection, the one most likely to send a request now, gets served.
"""

from __future__ import annotations

import logging
import resource
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Protocol

from sidecar import logs
from sidecar.reload import RulesHolder
from sidecar.request_head import CloseReason
from sidecar.rules import EdgeLimits, Server

if TYPE_CHECKING:
    from sidecar.metrics import Metrics

# Descriptors kept out of the client budget besides the collector pool: the
# listeners, admin connections (probes, scrapes), rules and key files, stdio,
# the event loop's own, and one accept burst (asyncio accepts up to 100
# connections a turn before the evicted ones' descriptors are closed).
FD_RESERVE = 256
CAP_LOG_SECONDS = 10.0  # at most one "connection_limit_reached" line this often


class Connection(Protocol):
    """What the table needs of a client connection (`sidecar.edge.EdgeProtocol`)."""

    @property
    def is_idle(self) -> bool: ...

    def expire(self, reason: CloseReason) -> None: ...


def connection_cap(server: Server) -> int:
    """`max_connections`, within what RLIMIT_NOFILE leaves for client connections."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return server.limits.max_connections
    budget = soft - server.upstream.max_connections - FD_RESERVE
    return max(1, min(server.limits.max_connections, budget))


class Connections:
    """Every open client connection of the tracking listener, counted; the
    waiting ones (head unfinished, or idle) in the order they began to wait."""

    def __init__(self, holder: RulesHolder, metrics: Metrics) -> None:
        self.holder = holder
        self.metrics = metrics
        self.open = 0
        # Connections waiting for a head (unfinished or idle), longest-waiting
        # first: each moves itself to the end when it starts to wait and out
        # when a request begins (`EdgeProtocol._set_phase`).
        self.waiting: OrderedDict[Connection, None] = OrderedDict()
        self._cap_events = {"evicted": 0, "refused": 0}
        self._cap_logged_at = -CAP_LOG_SECONDS

    @property
    def limits(self) -> EdgeLimits:
        """The limits of the current rules (new connections take them up at once)."""
        rules = self.holder.current
        return rules.server.limits if rules is not None else EdgeLimits()

    @property
    def cap(self) -> int:
        rules = self.holder.current
        return connection_cap(rules.server) if rules is not None else EdgeLimits().max_connections

    def admit(self, connection: Connection) -> bool:
        """Count a new connection; at the cap, evict the longest-waiting one, or
        refuse this one when none waits. False: refused (already closed)."""
        self.open += 1
        self.metrics.connection_opened()
        if self.open <= self.cap:
            return True
        victim = next(iter(self.waiting), None)
        self._note_cap("evicted" if victim is not None else "refused")
        (victim or connection).expire(CloseReason.TOO_MANY_CONNECTIONS)
        return victim is not None

    def release(self, connection: Connection, reason: CloseReason | None = None) -> None:
        """The connection is closing (`reason`: trackgate closed it). Call once."""
        self.waiting.pop(connection, None)
        self.open -= 1
        self.metrics.connection_ended(reason)

    def drain(self) -> None:
        """SIGTERM: close idle keep-alive connections now (a FIN, nothing in flight);
        the others get `Connection: close` on their next answer."""
        for connection in [c for c in self.waiting if c.is_idle]:
            connection.expire(CloseReason.IDLE)

    def _note_cap(self, action: str) -> None:
        """Count a cap event; log at most one line per CAP_LOG_SECONDS with the
        counts since the last one (a flood must not become a log flood)."""
        self._cap_events[action] += 1
        now = time.monotonic()
        if now - self._cap_logged_at < CAP_LOG_SECONDS:
            return
        self._cap_logged_at = now
        logs.event(
            "connection_limit_reached",
            logging.WARNING,
            open=self.open,
            max_connections=self.cap,
            **self._cap_events,
        )
        self._cap_events = dict.fromkeys(self._cap_events, 0)
