"""The command line, run as a real process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.harness import ROOT, free_port


def trackgate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        check=False,
    )


def test_serve_with_a_bad_config_exits_non_zero_naming_the_field() -> None:
    result = trackgate("serve", "--config", "tests/fixtures/invalid/bad_alg.yaml")
    assert result.returncode != 0
    assert "streams[0].jwt.keys[0].alg: 'HS1' is not one of" in result.stderr


def test_serve_reads_the_config_path_from_the_environment() -> None:
    result = trackgate(
        "serve", env={"TRACKGATE_CONFIG": "tests/fixtures/invalid/wrong_version.yaml"}
    )
    assert result.returncode != 0
    assert "version: must be 1" in result.stderr


def test_check_prints_lint_warnings_and_exits_zero() -> None:
    result = trackgate("check", "--config", "config/demo.yaml")
    assert result.returncode == 0, result.stderr
    assert "warning: stream 'web': signed_only items act as allow" in result.stdout


def test_demo_curl_commands_produce_the_four_outcomes(tmp_path: Path) -> None:
    config = (ROOT / "config/demo.yaml").read_text()
    for port in ("8080", "8081", "9090"):
        config = config.replace(f":{port}", f":{free_port()}")
    (tmp_path / "demo.yaml").write_text(config)
    demo = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "demo", "--config", str(tmp_path / "demo.yaml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert demo.stdout is not None
    lines = []
    while not any("Ctrl-C" in line for line in lines):
        line = demo.stdout.readline()
        assert line, "".join(lines)
        lines.append(line)
    commands = [line.strip() for line in lines if line.startswith("curl ")]
    assert len(commands) == 5
    time.sleep(0.5)  # the listeners start right after the commands are printed
    statuses = []
    for command in commands:
        out = subprocess.run(
            command, shell=True, capture_output=True, text=True, timeout=30, check=False
        )
        statuses.append(int(re.findall(r"^HTTP/1.1 (\d+)", out.stdout, re.M)[0]))
        assert "X-Request-Id" in out.stdout
        if statuses[-1] >= 400:
            assert re.search(r'"code":"(event_type_denied|secret_missing)"', out.stdout)
    assert statuses == [200, 200, 403, 401, 200]
    demo.send_signal(signal.SIGINT)
    output, _ = demo.communicate(timeout=20)
    assert demo.returncode == 0
    collector_lines = [
        line for line in output.splitlines() if line.startswith("    {")
    ]  # the bodies the demo collector printed
    assert len(collector_lines) == 3
    received = "\n".join(collector_lines)
    assert '"cookie":"c-123"' in received
    assert "+1555" not in received  # the stripped identifier never reached the collector
    assert "internal_debug" not in received
