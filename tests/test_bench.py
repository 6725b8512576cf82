"""A smoke run of the benchmark's own code (the benchmark itself is `make bench`).

`bench/pipeline_cost.py` drives the real pipeline with the benchmark's rules,
tokens and workloads and asserts every request is answered 200, so this keeps
the benchmark's workloads valid as the rules format and the pipeline change.
No timing is asserted: only that each workload ran and printed a cost.
"""

from __future__ import annotations

import re
import subprocess
import sys

from tests.test_config import ROOT


def test_the_benchmark_workloads_run_through_the_real_pipeline() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pipeline_cost.py"), "--seconds", "0.01"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    costs = dict(re.findall(r"^\s+(\w)\s+([\d.]+) µs", done.stdout, re.MULTILINE))
    assert sorted(costs) == ["a", "b", "c", "d", "e"], done.stdout
    assert all(float(cost) > 0 for cost in costs.values()), done.stdout
