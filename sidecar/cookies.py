"""The `Cookie` request header, read strictly (RFC 6265 §4.2.1, §5.4).

Two uses: `auth` reads a token cookie (`jwt.token_from: [{cookie: …}]`), and
`forward` passes on only the cookies a stream names in `forward_cookies`.

A pair is kept only when its name is a token and its value is cookie-octets
(optionally in double quotes): no spaces, commas, semicolons, backslashes or
control characters. Collectors split cookie headers differently (Go and
browsers on `;`, some PHP and Java stacks on `,` too, CGI folds spaces), so a
pair like `allowed=1, rl_trait=…` — one allowed cookie to trackgate, two to
such a collector — is dropped rather than forwarded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

_PAIR = re.compile(
    r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+)=(\"?)([\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*)\2",
    re.ASCII,
)
ALL = "*"  # in `forward_cookies`: every cookie (except token cookies) is forwarded


@dataclass(frozen=True, slots=True)
class CookieRule:
    """Which cookies the collector gets."""

    keep: frozenset[str]  # names forwarded; `ALL` in it: every well-formed cookie
    consumed: frozenset[str] = frozenset()  # token cookies: never forwarded


NO_COOKIES = CookieRule(frozenset())


def pairs(values: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(name, whole pair) of each well-formed cookie in the `Cookie` header values."""
    for value in values:
        for part in value.split(";"):
            found = _PAIR.fullmatch(part.strip(" \t"))
            if found is not None:
                yield found[1], found[0]


def values_of(values: Iterable[str], name: str) -> Iterator[str]:
    """The values of every well-formed cookie called `name` (quotes removed)."""
    for found_name, pair in pairs(values):
        if found_name == name:
            yield pair[len(name) + 1 :].strip('"')


def kept(values: Iterable[str], rule: CookieRule) -> str | None:
    """The `Cookie` header the collector gets, or None when no cookie is left."""
    every = ALL in rule.keep
    chosen = [
        pair
        for name, pair in pairs(values)
        if (every or name in rule.keep) and name not in rule.consumed
    ]
    return "; ".join(chosen) if chosen else None
