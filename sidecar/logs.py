"""Structured logs: one JSON object per line on stdout (SPEC §6.4).

`access` writes the request log from an `Exchange`, which holds no secret,
token, customer id value or payload (names, counts and codes only). Other
events (loads, reload failures, errors) go through `event` and `logging`.
Every other logger (aiohttp's, asyncio's, warnings) is written as JSON too,
with its logger name and exception class only: their messages and tracebacks
quote raw request lines and headers (finding 5).
"""

from __future__ import annotations

import io
import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import orjson

from sidecar.errors import Reason
from sidecar.exchange import Exchange
from sidecar.rules import SetName

EVENTS = logging.getLogger("trackgate")


class JsonLines(logging.Formatter):
    """Formats `extra={"fields": {...}}` records as one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = record.exc_info[0].__name__  # the type only: messages may hold data
        return json.dumps(line, separators=(",", ":"))


class LibraryLines(logging.Formatter):
    """A record of another library as one JSON object, without its text.

    aiohttp's parser errors quote the request line and headers (a secret, a
    bearer token, a body fragment), asyncio's may quote transport data, so only
    the logger, the level and the exception's class are kept.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": "library_log",
            "logger": record.name,
        }
        if record.exc_info and record.exc_info[0] is not None:
            line["reason"] = record.exc_info[0].__name__
        return json.dumps(line, separators=(",", ":"))


def configure(level: int = logging.INFO) -> None:
    """Send every logger to stdout as JSON lines, one write per line (so the lines
    of several worker processes sharing stdout never interleave): trackgate's
    with their fields, the others' (root: aiohttp, asyncio, warnings) stripped
    of their text, from WARNING up."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonLines())
    own = logging.getLogger("trackgate")
    own.handlers[:] = [handler]
    own.setLevel(level)
    own.propagate = False
    library = logging.StreamHandler(sys.stdout)
    library.setFormatter(LibraryLines())
    root = logging.getLogger()
    root.handlers[:] = [library]
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)
    sys.unraisablehook = _unraisable
    ACCESS_LOG.stream = sys.stdout


def _unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    """An exception Python could not raise (e.g. in a finaliser): logged by class only."""
    logging.getLogger("unraisable").error("", exc_info=unraisable.exc_value)


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log a named event with fields."""
    EVENTS.log(level, name, extra={"fields": fields})


class AccessLog:
    """Writes the access-log line of each finished request (one JSON object a line).

    Written straight to the stream rather than through `logging`: it is on every
    request's path, and a log record plus a formatter cost more than the line.
    One write per line, so the lines of several workers sharing stdout never
    interleave. (Writing a loop turn's lines together was measured and saved
    nothing, README "Performance".)
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream  # None: off (until `configure`)

    def write(self, exchange: Exchange) -> None:
        if self.stream is not None:
            self.stream.write(_line(exchange))


def _line(exchange: Exchange) -> str:
    """The access-log line: names, counts and codes only. (Reasons and set names are
    StrEnums: orjson writes their values.)"""
    reason = exchange.reason
    line = {
        "time": _now(),
        "level": "info",
        "event": "request",
        "request_id": exchange.request_id,
        "stream": exchange.stream_name,
        "dialect": exchange.dialect,
        "endpoint": exchange.endpoint,
        "status": exchange.status,
        "outcome": exchange.outcome,
        "reason": reason,
        "commands_forwarded": exchange.commands_forwarded,
        "commands_rejected": exchange.commands_rejected,
        # as counted in trackgate_rejections_total: the request's reason when it was
        # rejected whole, else each rejected command's (answered 200 or not)
        "rejections": (
            {_CODES[reason]: 1}
            if reason is not None
            else _per_reason(exchange.command_reasons)
            if exchange.command_reasons
            else {}
        ),
        "stripped": _per_set(exchange.stripped) if exchange.stripped else {},
        "would_reject": _per_reason(exchange.would_reject) if exchange.would_reject else {},
        "would_strip": _per_set(exchange.would_strip) if exchange.would_strip else {},
        # µs rounded, in ms: `round(x, 3)` formats its way there and costs ten times more
        "duration_ms": round((time.monotonic() - exchange.started) * 1_000_000) / 1000,
        "upstream_status": exchange.upstream_status,
    }
    return orjson.dumps(line).decode() + "\n"


# Plain str keys for orjson (it writes StrEnum values, but takes only str as keys).
_CODES = {reason: reason.value for reason in Reason}
_SETS = {set_name: set_name.value for set_name in SetName}


def _per_reason(reasons: Sequence[Reason]) -> dict[str, int]:
    """Reason codes with how often each came up."""
    counts: dict[str, int] = {}
    for reason in reasons:
        code = _CODES[reason]
        counts[code] = counts.get(code, 0) + 1
    return counts


def _per_set(names: Mapping[tuple[SetName, str], int]) -> dict[str, int]:
    """Stripped (or would-be stripped) names counted per set: counts, never names."""
    counts: dict[str, int] = {}
    for (set_name, _), count in names.items():
        key = _SETS[set_name]
        counts[key] = counts.get(key, 0) + count
    return counts


ACCESS_LOG = AccessLog()


def access(exchange: Exchange) -> None:
    """The access-log line of one finished request."""
    ACCESS_LOG.write(exchange)


_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))
_second: list[Any] = [-1, ""]  # the last whole second formatted, and its text


def _now() -> str:
    """ISO 8601 UTC with milliseconds; the seconds part is formatted once a second."""
    whole, millis = divmod(int(time.time() * 1000), 1000)
    if whole != _second[0]:
        _second[:] = [whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))]
    return _second[1] + _MILLIS[millis]  # type: ignore[no-any-return]
