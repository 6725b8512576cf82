"""A real case-folding decoder for the key-spelling tests: tests/gocollector/main.go,
a stdlib-only Go collector built with Debian's `golang-go` (`make tools` installs it).

The binary is built once per source version into the system temp folder (with
GOCACHE and GOPATH beside it, offline, no modules) and started per test module
on a free loopback port. Without a Go toolchain the tests skip, except in CI,
where they fail: CI must not skip the parser-differential tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SOURCE = Path(__file__).resolve().parent / "gocollector" / "main.go"


def go_tool() -> str:
    """The `go` command; a failure in CI, a skip elsewhere, when it is missing."""
    found = shutil.which("go")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("go is not installed; `make test` installs golang-go (CI must not skip)")
    pytest.skip("go is not installed (run `make test`, which installs golang-go)")


def build() -> Path:
    """The collector's binary, built unless this source version was built before."""
    source = SOURCE.read_bytes()
    home = Path(tempfile.gettempdir()) / "trackgate-gocollector"
    binary = home / f"collector-{hashlib.sha256(source).hexdigest()[:12]}"
    if binary.exists():
        return binary
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "GOCACHE": str(home / "cache"),
        "GOPATH": str(home / "gopath"),
        "GO111MODULE": "off",  # one stdlib-only file: no module, nothing downloaded
        "GOPROXY": "off",
        "GOFLAGS": "",
    }
    partial = home / f"{binary.name}.{os.getpid()}"
    command = [go_tool(), "build", "-o", str(partial), str(SOURCE)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:  # no C toolchain: the pure-Go network stack instead
        done = subprocess.run(
            command, env={**env, "CGO_ENABLED": "0"}, capture_output=True, text=True, check=False
        )
    assert done.returncode == 0, done.stderr
    partial.replace(binary)  # atomic: a concurrent build never leaves half a binary
    return binary


@dataclass
class GoCollector:
    """A running Go collector and the records it has handed out so far."""

    process: subprocess.Popen[str]
    url: str
    seen: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)

    def new_records(self) -> list[dict[str, Any]]:
        """What the collector decoded since the last call (it answers before it is
        asked again, so every request the sidecar forwarded is in it)."""
        with urllib.request.urlopen(f"{self.url}/_decoded?since={self.seen}") as answer:
            fresh: list[dict[str, Any]] = json.load(answer)
        self.seen += len(fresh)
        self.records.extend(fresh)
        return fresh


def start() -> GoCollector:
    """Starts the collector on a free loopback port."""
    process = subprocess.Popen(
        [str(build())], stdout=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL
    )
    assert process.stdout is not None
    address = process.stdout.readline().strip()
    assert address.startswith("127.0.0.1:"), address
    return GoCollector(process, f"http://{address}")


def stop(collector: GoCollector) -> None:
    collector.process.terminate()
    collector.process.wait(timeout=10)
    if collector.process.stdout is not None:
        collector.process.stdout.close()
