"""The optional compiled build (`make native`, sidecar/native.py, build_native.py).

`make test` builds it before the suite, so here it is present: every test file
runs on it, and `make unit-pure` runs the tests of the compiled code again from
the sources. These tests pin down the switch between the two: a current build
runs, a stale one never does, `TRACKGATE_PURE_PYTHON` forces the sources, a
missing compiler leaves pure Python with one line, and `serve` logs which.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

import sidecar
from sidecar.native import COMPILED, PURE_PYTHON, RECORD, build_problem
from tests.harness import ROOT, Collector, serve_process
from tests.http import event, events_url, post

_CURRENT = build_problem() is None and not os.environ.get(PURE_PYTHON)
needs_build = pytest.mark.skipif(
    not _CURRENT and not os.environ.get("CI"),
    reason="no current compiled build here (`make native`); CI always has one",
)
_PROBE = (
    "import json, sys, sidecar\n"
    "from sidecar.native import COMPILED\n"
    "__import__('sidecar.handler')\n"  # the whole request path, as `serve` imports it
    "files = {m: sys.modules[m].__file__ for m in COMPILED}\n"
    "print(json.dumps({'compiled': sidecar.NATIVE.compiled, 'detail': sidecar.NATIVE.detail,"
    " 'files': files}))\n"
)


def probe(root: Path, **env: str) -> dict[str, object]:
    """What a fresh interpreter importing trackgate from `root` runs."""
    clean = {k: v for k, v in os.environ.items() if k != PURE_PYTHON}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=root, env={**clean, "PYTHONPATH": str(root), **env},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _kinds(files: object) -> set[str]:
    assert isinstance(files, dict) and set(files) == set(COMPILED)
    extension = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return {"extension" if str(f).endswith(extension) else Path(f).suffix for f in files.values()}


@needs_build
def test_a_current_build_runs_every_compiled_module() -> None:
    found = probe(ROOT)
    assert found["compiled"] is True, found["detail"]
    assert _kinds(found["files"]) == {"extension"}
    if not os.environ.get(PURE_PYTHON):  # `make unit-pure` runs this file too
        assert sidecar.NATIVE.compiled  # and so does this suite


def test_trackgate_pure_python_runs_the_sources() -> None:
    found = probe(ROOT, **{PURE_PYTHON: "1"})
    assert found["compiled"] is False
    assert "TRACKGATE_PURE_PYTHON" in str(found["detail"])
    assert _kinds(found["files"]) == {".py"}


@needs_build
def test_a_stale_build_never_runs(tmp_path: Path) -> None:
    shutil.copytree(
        ROOT / "sidecar", tmp_path / "sidecar", ignore=shutil.ignore_patterns("__pycache__")
    )
    policy = tmp_path / "sidecar" / "policy.py"
    policy.write_text(policy.read_text() + "\n# edited after the build\n")
    found = probe(tmp_path)
    assert found["compiled"] is False
    assert "stale (policy.py changed" in str(found["detail"])
    assert _kinds(found["files"]) == {".py"}  # all sources: the two never mix


@needs_build
def test_an_edit_to_a_module_that_is_not_compiled_makes_the_build_stale(tmp_path: Path) -> None:
    shutil.copytree(
        ROOT / "sidecar", tmp_path / "sidecar", ignore=shutil.ignore_patterns("__pycache__")
    )
    rules = tmp_path / "sidecar" / "rules.py"  # compiled code carries its types and constants
    rules.write_text(rules.read_text() + "\n# edited after the build\n")
    found = probe(tmp_path)
    assert found["compiled"] is False
    assert "stale (rules.py changed" in str(found["detail"])
    assert _kinds(found["files"]) == {".py"}


@needs_build
def test_an_extension_module_the_build_did_not_make_never_runs(tmp_path: Path) -> None:
    shutil.copytree(
        ROOT / "sidecar", tmp_path / "sidecar", ignore=shutil.ignore_patterns("__pycache__")
    )
    [built] = (tmp_path / "sidecar").glob("policy.*.so")
    stray = built.with_name(built.name.replace("policy", "rules"))  # as an older build left it
    shutil.copy(built, stray)
    for env in ({}, {PURE_PYTHON: "1"}):
        found = probe(tmp_path, **env)
        assert found["compiled"] is False
        assert _kinds(found["files"]) == {".py"}
    assert f"stale ({stray.name} is not part of it)" in str(probe(tmp_path)["detail"])
    pure_rules = subprocess.run(
        [sys.executable, "-c", "import sidecar.rules as r; print(r.__file__)"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path), PURE_PYTHON: "1"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert pure_rules.stdout.strip().endswith("rules.py")


@needs_build
def test_a_partial_build_never_runs(tmp_path: Path) -> None:
    shutil.copytree(
        ROOT / "sidecar", tmp_path / "sidecar", ignore=shutil.ignore_patterns("__pycache__")
    )
    for built in (tmp_path / "sidecar" / "dialects").glob("segment.*"):
        if built.suffix != ".py":
            built.unlink()
    found = probe(tmp_path)
    assert found["compiled"] is False
    assert "incomplete (segment has no extension module)" in str(found["detail"])
    assert _kinds(found["files"]) == {".py"}


def test_without_a_compiler_the_build_says_so_and_leaves_pure_python(tmp_path: Path) -> None:
    fresh = shutil.ignore_patterns("__pycache__", "*.so", "native.json")  # as in a clean checkout
    shutil.copytree(ROOT / "sidecar", tmp_path / "sidecar", ignore=fresh)
    shutil.copy(ROOT / "build_native.py", tmp_path)
    done = subprocess.run(
        [sys.executable, "build_native.py"], cwd=tmp_path,
        env={**os.environ, "CC": str(tmp_path / "no-such-cc")},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"native build skipped (no C compiler ({tmp_path / 'no-such-cc'})); "
        "trackgate runs as pure Python"
    ]
    assert not (tmp_path / "sidecar" / RECORD.name).exists()
    assert not [p for p in (tmp_path / "sidecar").rglob("*") if p.suffix == ".so"]
    assert probe(tmp_path)["compiled"] is False


@pytest.mark.parametrize("pure", [False, True])
async def test_serve_logs_which_build_it_runs(
    tmp_path: Path,
    collector: Collector,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    pure: bool,
) -> None:
    monkeypatch.delenv(PURE_PYTHON, raising=False)
    if pure:
        monkeypatch.setenv(PURE_PYTHON, "1")
    served = await serve_process(tmp_path, collector.url, "", capture=True)
    try:
        assert (await post(http, events_url(served.base), event())).status == 200
    finally:
        served.process.send_signal(signal.SIGTERM)
        assert await served.process.wait() == 0
    assert served.process.stdout is not None
    lines = [json.loads(line) for line in (await served.process.stdout.read()).splitlines()]
    [build] = [line for line in lines if line["event"] == "build"]
    assert build["compiled"] is (build_problem() is None and not pure)
    expected = f"{len(COMPILED)} modules compiled" if build["compiled"] else "pure Python: "
    assert build["detail"].startswith(expected)
