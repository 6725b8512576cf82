"""The remote key source as the rules see it: `jwt.jwks.url` or `jwt.jwks.discovery`
(SPEC §2 "Remote keys", §5.2).

- `remote_keys` (load time, off the loop) checks the settings and returns a
  `RemoteKeys`, one per stream and rules version, holding the stream's static
  keys. It fetches nothing: `trackgate check` validates without the network.
- The holder in `reload.py` binds each installed version's `RemoteKeys` to a
  live source (`refresh.RemoteJwks`), the same one while a stream's settings
  stay the same, so a reload keeps the fetched keys.
- `RemoteKeys.current()` (request time) is the static keys plus the live
  source's snapshot, merged once per new snapshot: an identity check per call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sidecar.errors import ConfigError
from sidecar.keys.base import UNAVAILABLE, KeySet
from sidecar.keys.fetch import check_ca, url_problem
from sidecar.keys.refresh import RemoteJwks, RemoteSettings
from sidecar.sources import SourceReader

_REMOTE_ONLY = (
    "ca_file",
    "refresh_seconds",
    "stale_if_error_seconds",
    "unknown_kid_cooldown_seconds",
    "timeout_seconds",
)


def is_remote(raw: Mapping[str, Any]) -> bool:
    """True for a `jwks` block that names a URL or a provider, not a file."""
    return "url" in raw or "discovery" in raw


def remote_keys(
    raw: Mapping[str, Any], path: str, reader: SourceReader, issuer: str | None, static: KeySet
) -> RemoteKeys:
    """A `jwks: {url | discovery, …}` block → the stream's RemoteKeys (nothing fetched)."""
    field = "url" if "url" in raw else "discovery"
    problem = url_problem(raw[field])
    if problem is not None:
        raise ConfigError(f"{path}.{field}: {problem}")
    ca_pem = None
    if "ca_file" in raw:
        ca_pem = reader.read({"file": raw["ca_file"]}, f"{path}.ca_file")
        check_ca(ca_pem, f"{path}.ca_file")
    settings = RemoteSettings(
        url=raw.get("url"),
        discovery=raw["discovery"].rstrip("/") if field == "discovery" else None,
        issuer=issuer,
        ca_pem=ca_pem,
        **{name: raw[name] for name in _REMOTE_ONLY[1:] if name in raw},
        reserved_kids=frozenset(static.by_kid),
    )
    return RemoteKeys(settings, static)


def refuse_remote_only(raw: Mapping[str, Any], path: str) -> None:
    """A `jwks: {file}` block takes none of the remote settings."""
    for name in _REMOTE_ONLY:
        if name in raw:
            raise ConfigError(f"{path}.{name}: only a remote jwks (url or discovery) takes it")


class RemoteKeys:
    """A stream's keys for one rules version: its static keys and what its live
    source fetched. Unbound (as `trackgate check` and `explain` load it) it holds
    the static keys only, and a stream without them has none."""

    __slots__ = ("_merged", "_seen", "live", "settings", "static")

    def __init__(self, settings: RemoteSettings, static: KeySet) -> None:
        self.settings = settings
        self.static = static
        self.live: RemoteJwks | None = None  # bound by the holder at install
        self._seen: KeySet | None = None
        self._merged = static if len(static) else UNAVAILABLE

    @property
    def kind(self) -> str:
        return "jwks_url" if self.settings.url else "jwks_discovery"

    def current(self) -> KeySet:
        live = self.live
        if live is None or live.keys is self._seen:
            return self._merged
        fetched = self._seen = live.keys
        if len(self.static) == 0:
            self._merged = fetched
        else:  # a static key keeps the stream available; kids never collide (checked)
            both = (*self.static.by_kid.values(), *fetched.by_kid.values())
            self._merged = KeySet.of(both)
        return self._merged

    async def refetch(self) -> bool:
        return await self.live.refetch() if self.live is not None else False
