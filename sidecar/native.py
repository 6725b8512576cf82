"""The optional compiled build: which modules mypyc compiles, and whether this process runs them.

`make native` (and the Dockerfile) compile `COMPILED` with mypyc into extension
modules next to their sources (`build_native.py`), and write `RECORD`: the
SHA-256 of every source they were built from. When `sidecar` is imported,
`choose` runs the compiled modules only if that record matches the sources on
disk and `TRACKGATE_PURE_PYTHON` is not set; otherwise a finder makes Python
load every one of them from source. A build that is stale (a source edited
since), partial or absent therefore never runs, and the two never mix in one
process. `STATE` says which it is; `trackgate serve` logs it at start.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

# The per-request path: credentials, stream, body and strict JSON, decoding, judging,
# stripping and encoding every command, the forwarded head, metrics and the access log.
# (handler.py and tokens.py stay Python: tests replace a function each of them calls.)
COMPILED = (
    "sidecar.auth",
    "sidecar.body",
    "sidecar.cookies",
    "sidecar.cors",
    "sidecar.credentials",
    "sidecar.exchange",
    "sidecar.forward",
    "sidecar.logs",
    "sidecar.metrics",
    "sidecar.outcome",
    "sidecar.reply",
    "sidecar.sidechannels",
    "sidecar.streams",
    "sidecar.commands",
    "sidecar.jsoncodec",
    "sidecar.policy",
    "sidecar.spelling",
    "sidecar.dialects.bloomreach",
    "sidecar.dialects.braze_decode",
    "sidecar.dialects.braze",
    "sidecar.dialects.carriers",
    "sidecar.dialects.declared_read",
    "sidecar.dialects.pointers",
    "sidecar.dialects.segment_decode",
    "sidecar.dialects.segment",
)
PACKAGE = Path(__file__).resolve().parent
RECORD = PACKAGE / "native.json"  # written by build_native.py after a successful build
PURE_PYTHON = "TRACKGATE_PURE_PYTHON"  # set (non-empty): run the sources even when built


@dataclass(frozen=True)
class NativeState:
    compiled: bool
    detail: str  # what runs, or why the compiled build does not


def source(module: str) -> Path:
    """The source file of one of `COMPILED`."""
    return PACKAGE.parent.joinpath(*module.split(".")).with_suffix(".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def choose() -> NativeState:
    """Run the compiled build if it is present and current; else every source."""
    problem = "TRACKGATE_PURE_PYTHON is set" if os.environ.get(PURE_PYTHON) else build_problem()
    if problem is None:
        return NativeState(True, f"{len(COMPILED)} modules compiled with mypyc")
    if not any(isinstance(finder, _SourcesOnly) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SourcesOnly())
    return NativeState(False, f"pure Python: {problem}")


def build_problem() -> str | None:
    """Why the compiled build cannot run here, or None when it can."""
    try:
        built = json.loads(RECORD.read_text())["sources"]
    except (OSError, ValueError, KeyError, TypeError):
        return "no compiled build (`make native` makes one)"
    for module in COMPILED:
        path = source(module)
        if built.get(module) != digest(path):
            return f"the compiled build is stale ({path.name} changed since it was built)"
        if not extension(path):
            return f"the compiled build is incomplete ({path.stem} has no extension module)"
    return None


def extension(path: Path) -> bool:
    """True when an extension module was built for the source at `path`."""
    return any(
        path.with_suffix(suffix).exists() for suffix in importlib.machinery.EXTENSION_SUFFIXES
    )


class _SourcesOnly(importlib.abc.MetaPathFinder):
    """Finds `COMPILED` modules as their `.py` sources, past any extension module."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in COMPILED:
            return None
        return importlib.util.spec_from_file_location(fullname, source(fullname))


STATE = choose()
