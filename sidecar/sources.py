"""Secret and key sources: `{env: NAME}` or `{file: PATH}`.

Secrets are never written inline in the rules file. A source is read once per
load; every file read is recorded so the watcher can reload when it changes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from sidecar.errors import ConfigError


class SourceReader:
    """Reads sources relative to the rules file and remembers the files it read."""

    def __init__(self, base_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self._base_dir = base_dir
        self._env = os.environ if env is None else env
        self.files: list[Path] = []

    def read(self, source: Mapping[str, str], path: str) -> bytes:
        """The bytes named by `source`; a `ConfigError` at `path` when missing or unreadable."""
        if "env" in source:
            name = source["env"]
            if name not in self._env:
                raise ConfigError(f"{path}.env: environment variable {name} is not set")
            return self._env[name].encode()
        file = self._base_dir / source["file"]
        self.files.append(file)
        try:
            return file.read_bytes()
        except OSError as error:
            raise ConfigError(f"{path}.file: cannot read {file}: {error.strerror}") from None

    def read_secret(self, source: Mapping[str, str], path: str) -> bytes:
        """Like `read`, without the line ending a file written by `echo` carries."""
        return self.read(source, path).rstrip(b"\r\n")
