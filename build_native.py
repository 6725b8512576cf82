"""`make native`: compile the per-request modules with mypyc, in place (README "Performance").

    python build_native.py

Builds an extension module next to each source of `sidecar.native.COMPILED`
(and one shared library, `sidecar/_native__mypyc…`), then records the
sources' SHA-256 in `sidecar/native.json`, which `sidecar.native` checks
before running them. Needs mypy (mypyc) and a C compiler. Without either, or
when the build fails, it removes any partial build, prints one line saying
trackgate runs as pure Python, and exits 0: the compiled build is optional.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent
os.environ["TRACKGATE_PURE_PYTHON"] = "1"  # this process imports sidecar's sources only
sys.path.insert(0, str(ROOT))

from sidecar.native import COMPILED, RECORD, build_problem, digests, extensions, source  # noqa: E402

GROUP = "sidecar._native"  # the shared library lands inside the package


def main() -> int:
    if build_problem() is None:
        print(f"native build: up to date ({len(COMPILED)} modules)")
        return 0
    remove_build()
    sources = digests()  # before compiling: what the build is made from
    problem = missing_tool()
    if problem is None:
        problem = compile_modules()
    if problem is None and digests() != sources:
        problem = "a source changed while it was being compiled; run it again"
    if problem is not None:
        remove_build()
        print(f"native build skipped ({problem}); trackgate runs as pure Python")
        return 0
    record = {"modules": list(COMPILED), "sources": sources}
    written = RECORD.with_suffix(".tmp")
    written.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(written, RECORD)  # whole or not at all
    print(f"native build: {len(COMPILED)} modules compiled with mypyc")
    return 0


def missing_tool() -> str | None:
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler})"
    try:
        import mypyc.build  # noqa: F401, PLC0415
    except ImportError:
        return "mypyc is not installed"
    return None


def compile_modules() -> str | None:
    """Runs mypyc + setuptools in a child process (their output goes to build/native.log)."""
    paths = [str(source(module).relative_to(ROOT)) for module in COMPILED]
    script = (
        "import sys\n"
        "from mypyc.build import mypycify\n"
        "from setuptools import setup\n"
        f"modules = mypycify({paths!r}, opt_level='3', group_name={GROUP!r})\n"
        "setup(name='trackgate-native', ext_modules=modules,\n"
        "      script_args=['build_ext', '--inplace', '--parallel', '2'])\n"
    )
    log = ROOT / "build" / "native.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("w") as output:
        done = subprocess.run(  # noqa: S603 (our own interpreter and script)
            [sys.executable, "-c", script], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
            check=False,
        )  # fmt: skip
    if done.returncode != 0:
        return f"mypyc failed, see {log.relative_to(ROOT)}"
    return None


def remove_build() -> None:
    """Every extension module, the record, and setuptools' build/lib* (which a later
    `pip install .` would pack): a partial or old build must not linger."""
    RECORD.unlink(missing_ok=True)
    for path in extensions():
        path.unlink()
    for directory in (ROOT / "build").glob("lib*"):
        shutil.rmtree(directory)


if __name__ == "__main__":
    raise SystemExit(main())
