"""The optional compiled build: which modules mypyc compiles, and whether this process runs them.

`make native` (and the Dockerfile) compile `COMPILED` with mypyc into extension
modules next to their sources (`build_native.py`), and write `RECORD`: the
modules it compiled and the SHA-256 of every source of the package as it was
when compiled (the compiled code also carries types and constants of the
modules it imports). When `sidecar` is imported, `choose` runs the compiled
modules only if that record names exactly `COMPILED`, matches every source on
disk, every one of them has its extension module and no other extension
module is in the package, and `TRACKGATE_PURE_PYTHON` is not set; otherwise a
finder makes Python load every module of the package from source. A build
that is stale (any source edited since), partial or absent therefore never
runs, and the two never mix in one process. `STATE` says which it is;
`trackgate serve` logs it at start.
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
    "sidecar.principal",
    "sidecar.reply",
    "sidecar.sidechannels",
    "sidecar.streams",
    "sidecar.commands",
    "sidecar.jsoncodec",
    "sidecar.policy",
    "sidecar.spelling",
    "sidecar.dialects.base",
    "sidecar.dialects.bloomreach",
    "sidecar.dialects.braze_decode",
    "sidecar.dialects.braze",
    "sidecar.dialects.carriers",
    "sidecar.dialects.declared",
    "sidecar.dialects.declared_read",
    "sidecar.dialects.declared_write",
    "sidecar.dialects.pointers",
    "sidecar.dialects.spelling_tree",
    "sidecar.dialects.segment_decode",
    "sidecar.dialects.segment",
)
PACKAGE = Path(__file__).resolve().parent
RECORD = PACKAGE / "native.json"  # written by build_native.py after a successful build
SHARED_LIBRARY = "_native__mypyc."  # the code of every compiled module (build_native.GROUP)
PURE_PYTHON = "TRACKGATE_PURE_PYTHON"  # set (non-empty): run the sources even when built


@dataclass(frozen=True)
class NativeState:
    compiled: bool
    detail: str  # what runs, or why the compiled build does not


def source(module: str) -> Path:
    """The source file of a module of the package."""
    return PACKAGE.parent.joinpath(*module.split(".")).with_suffix(".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digests() -> dict[str, str]:
    """SHA-256 of every source of the package, by path inside it."""
    return {
        path.relative_to(PACKAGE).as_posix(): digest(path) for path in sorted(PACKAGE.rglob("*.py"))
    }


def extensions() -> set[Path]:
    """Every extension module in the package (a build's, current or not)."""
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    return {path for suffix in suffixes for path in PACKAGE.rglob(f"*{suffix}")}


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
    return _record_problem() or _files_problem()


def _record_problem() -> str | None:
    try:
        record = json.loads(RECORD.read_text())
        modules, built = record["modules"], record["sources"]
    except (OSError, ValueError, KeyError, TypeError):
        return "no compiled build (`make native` makes one)"
    if modules != list(COMPILED):
        return "the compiled build is stale (it compiled other modules)"
    now = digests()
    if built != now:
        changed = sorted(set(built.items()) ^ set(now.items()))[0][0]
        return f"the compiled build is stale ({changed} changed since it was built)"
    return None


def _files_problem() -> str | None:
    for module in COMPILED:
        if not extension(source(module)):
            stem = source(module).stem
            return f"the compiled build is incomplete ({stem} has no extension module)"
    found = extensions()
    if not any(path.name.startswith(SHARED_LIBRARY) for path in found):
        return "the compiled build is incomplete (no shared library)"
    stray = sorted(
        path
        for path in found
        if not path.name.startswith(SHARED_LIBRARY) and _module_of(path) not in COMPILED
    )
    if stray:
        return f"the compiled build is stale ({stray[0].relative_to(PACKAGE)} is not part of it)"
    return None


def _module_of(extension_path: Path) -> str:
    """`sidecar/dialects/braze.cpython-311-….so` → `sidecar.dialects.braze`."""
    relative = extension_path.relative_to(PACKAGE.parent)
    return ".".join([*relative.parent.parts, extension_path.name.split(".")[0]])


def extension(path: Path) -> bool:
    """True when an extension module was built for the source at `path`."""
    return any(
        path.with_suffix(suffix).exists() for suffix in importlib.machinery.EXTENSION_SUFFIXES
    )


class _SourcesOnly(importlib.abc.MetaPathFinder):
    """Finds every module of the package as its `.py` source, past any extension module."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("sidecar.") or not source(fullname).is_file():
            return None  # packages and other code: the usual finders
        return importlib.util.spec_from_file_location(fullname, source(fullname))


STATE = choose()
