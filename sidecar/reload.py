"""The rules holder, the key-source holder and the watcher that swaps new versions in
(SPEC §6.1, §5.2).

A request reads `holder.current` once and uses that `Rules` object from start
to end, so it never mixes two versions. The watcher checks the rules file and
every file it references through their *resolved* paths every
`reload_interval_seconds` (Kubernetes swaps a ConfigMap's `..data` symlink, so
the resolved path and inode change) and on demand (SIGHUP). A new version is
parsed and compiled in a worker thread, then swapped in with one assignment;
an invalid one changes nothing but the failure metric, the log and `/readyz`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sidecar import logs
from sidecar.config import load_rules
from sidecar.errors import ConfigError
from sidecar.keys.refresh import FetchObserver, RemoteJwks, RemoteSettings
from sidecar.keys.remote import RemoteKeys
from sidecar.metrics import Metrics
from sidecar.rules import Rules, Server, Stream

Signature = tuple[tuple[str, str, int, int, int], ...]
RESTART_ONLY = ("listen", "admin_listen", "workers")  # `server` settings read only at start


@dataclass(slots=True)
class RulesHolder:
    """The active rules (None until the first successful load) and the process state."""

    current: Rules | None = None
    loaded_at: float | None = None  # wall-clock time of the active version's load
    last_error: str | None = None  # the newest refused version's problems, if any
    draining: bool = False  # set on SIGTERM: /readyz turns 503
    # The first version's server settings: the listeners and workers were set up from
    # them, and RESTART_ONLY settings of later versions wait for a restart.
    started: Server | None = None

    @property
    def ready(self) -> bool:
        return self.current is not None and not self.draining


class KeySources:
    """The live remote key sources, beside the rules holder (SPEC §5.2).

    Each rules version compiles its own `RemoteKeys`; `adopt` binds them, when the
    version is installed, to the live source of the same stream and settings, so
    a reload that keeps a stream's `jwks` settings keeps its fetched keys (no
    refetch storm). New settings start a new source; sources no version uses any
    more are stopped. Every source's task is kept here and cancelled by `close`.
    """

    def __init__(self, observer: FetchObserver) -> None:
        self.observer = observer
        self._live: dict[tuple[str, RemoteSettings], RemoteJwks] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    def adopt(self, rules: Rules) -> None:
        """Bind `rules`' remote key sources to live ones (on the loop, at install)."""
        live: dict[tuple[str, RemoteSettings], RemoteJwks] = {}
        for stream, remote in _remote_sources(rules):
            key = (stream.name, remote.settings)
            source = self._live.pop(key, None)
            remote.live = live[key] = source if source is not None else self._started(key)
        kept = {name for name, _ in live}
        for (name, _), gone in self._live.items():
            self._stop(gone)
            if name not in kept:
                self.observer.jwks_forget(name)  # the stream has no remote keys any more
        self._live = live

    def _started(self, key: tuple[str, RemoteSettings]) -> RemoteJwks:
        source = RemoteJwks(*key, self.observer)
        self.observer.jwks_keys(key[0], 0)
        source.start()
        return source

    def _stop(self, source: RemoteJwks) -> None:
        task = asyncio.get_running_loop().create_task(source.stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def close(self) -> None:
        """Stop every source (shutdown)."""
        sources, self._live = list(self._live.values()), {}
        await asyncio.gather(*(source.stop() for source in sources), *self._stopping)
        logs.event("key_sources_stopped", sources=len(sources))


def _remote_sources(rules: Rules) -> Iterator[tuple[Stream, RemoteKeys]]:
    for stream in rules.streams:
        if stream.jwt is not None and isinstance(stream.jwt.keys, RemoteKeys):
            yield stream, stream.jwt.keys


def signature(paths: Sequence[Path]) -> Signature:
    """What the watcher compares: each file's resolved path and its stat identity."""
    entries = []
    for path in paths:
        resolved = os.path.realpath(path)
        try:
            st = os.stat(resolved)
        except OSError:
            entries.append((str(path), resolved, -1, -1, -1))
            continue
        entries.append((str(path), resolved, st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(entries)


class Reloader:
    """Loads the rules file into a holder, now and whenever its files change."""

    def __init__(
        self,
        path: Path,
        holder: RulesHolder,
        metrics: Metrics,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path
        self.holder = holder
        self.metrics = metrics
        self.env = env
        self.key_sources = KeySources(metrics)  # closed by whoever runs the app
        self._watched: Sequence[Path] = [path]
        self._seen: Signature = ()
        self._lock = asyncio.Lock()

    def install(self, rules: Rules) -> None:
        """Make `rules` the active version (first load and every successful reload)."""
        previous = self.holder.current
        if previous is None:
            self.holder.started = rules.server
        self.key_sources.adopt(rules)  # before the swap: requests see bound sources only
        self.holder.current = rules
        self.holder.loaded_at = time.time()
        self.holder.last_error = None
        self._watched = rules.sources
        self._seen = signature(self._watched)
        self.metrics.rules_loaded(rules, previous)
        logs.event("rules_loaded", version=rules.version, streams=len(rules.streams))
        for warning in rules.warnings:
            logs.event("rules_warning", logging.WARNING, warning=warning)

    async def reload(self) -> bool:
        """Load the file now, off the event loop; True when it loaded and was swapped in."""
        async with self._lock:
            seen = signature(self._watched)
            try:
                rules = await asyncio.to_thread(load_rules, self.path, self.env)
            except ConfigError as error:
                self._refused(error, seen)
                return False
            self._warn_about_restart_only_settings(rules)
            self.install(rules)
            return True

    async def watch(self) -> None:
        """Poll the watched files until cancelled."""
        while True:
            rules = self.holder.current
            await asyncio.sleep(rules.server.reload_interval_seconds if rules else 1)
            if signature(self._watched) != self._seen:
                await self.reload()

    def _refused(self, error: ConfigError, seen: Signature) -> None:
        self.metrics.reload_failed()
        self.holder.last_error = str(error)
        self._watched = [self.path, *error.sources] if error.sources else self._watched
        self._seen = signature(self._watched) if error.sources else seen
        logs.event(
            "rules_reload_failed",
            logging.ERROR,
            path=str(self.path),
            problems=list(error.problems),
            active_version=self.holder.current.version if self.holder.current else None,
        )

    def _warn_about_restart_only_settings(self, rules: Rules) -> None:
        """The listeners and the worker count are set up once, at start; everything
        else (the collector, its pool, limits, streams) takes effect with the swap."""
        current = self.holder.current
        if current is None:
            return
        old, new = current.server, rules.server
        for name in RESTART_ONLY:
            if getattr(old, name) != getattr(new, name):
                logs.event("restart_required", logging.WARNING, setting=f"server.{name}")
