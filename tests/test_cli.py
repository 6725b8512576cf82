"""The command line, run as a real process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ROOT, WEB_ID, free_port


def trackgate(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "TRACKGATE_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environment, **(env or {})},
        cwd=cwd,
        check=False,
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another process listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


def rules_file(path: Path, *, listen: int, admin: int, upstream: int, workers: int = 1) -> Path:
    path.write_text(
        f"""
version: 1
server:
  workers: {workers}
  listen: "127.0.0.1:{listen}"
  admin_listen: "127.0.0.1:{admin}"
  shutdown_delay_seconds: 0
  upstream: {{url: "http://127.0.0.1:{upstream}"}}
streams:
  - {{name: web, id: {WEB_ID}, type: public, template: public}}
  - name: backend
    id: backend-1
    type: private
    secrets: [{{id: s, sha256: "{"0" * 64}"}}]
"""
    )
    return path


@pytest.mark.parametrize("setting", ["server.listen", "server.admin_listen"])
@pytest.mark.parametrize(("command", "workers"), [("serve", 1), ("serve", 2), ("demo", 1)])
def test_a_taken_port_names_its_setting_and_exits_1(
    tmp_path: Path, busy_port: int, setting: str, command: str, workers: int
) -> None:
    ports = {"server.listen": free_port(), "server.admin_listen": free_port()}
    ports[setting] = busy_port
    config = rules_file(
        tmp_path / "rules.yaml",
        listen=ports["server.listen"],
        admin=ports["server.admin_listen"],
        upstream=free_port(),
        workers=workers,
    )
    result = trackgate(command, "--config", str(config))
    assert result.returncode == 1, result.stderr
    assert f"trackgate: {setting}: cannot listen on 127.0.0.1:{busy_port}: " in result.stderr
    assert "Traceback" not in result.stderr


def test_the_demo_names_its_collectors_port_when_taken(tmp_path: Path, busy_port: int) -> None:
    config = rules_file(
        tmp_path / "rules.yaml", listen=free_port(), admin=free_port(), upstream=busy_port
    )
    result = trackgate("demo", "--config", str(config))
    assert result.returncode == 1
    assert "server.upstream.url (the demo collector): cannot listen on" in result.stderr
    assert "Traceback" not in result.stderr


def no_server_block(tmp_path: Path) -> list[str]:
    config = tmp_path / "rules.yaml"
    config.write_text(f"version: 1\nstreams: [{{name: web, id: {WEB_ID}, type: public}}]\n")
    return ["check", "--config", str(config)]


def existing_key(tmp_path: Path) -> list[str]:
    (tmp_path / "app-1.pem").write_text("in use")
    return ["keygen", "rsa", "--out", str(tmp_path), "--kid", "app-1"]


def existing_secret_file(tmp_path: Path) -> list[str]:
    (tmp_path / "web-1").write_text("in use")
    return ["keygen", "hmac", "--kid", "web-1", "--out", str(tmp_path / "web-1")]


REFUSALS = {
    "no server block": (no_server_block, 1, "server: is required"),
    "rsa key exists": (existing_key, 2, "app-1.pem already exists; refusing to overwrite"),
    "hmac file exists": (existing_secret_file, 2, "web-1 already exists; refusing to overwrite"),
    "short hmac": (
        lambda _: ["token", "--secret-env", "SHORT_SECRET", "--kid", "k", "--ids", "a=b"],
        2,
        "the HS256 secret is 5 bytes; trackgate refuses keys under 32",
    ),
    "lifetime past 90 d": (
        lambda _: [
            "token",
            "--secret-env",
            "LONG_SECRET",
            "--kid",
            "k",
            "--ids",
            "a=b",
            "--ttl",
            "91d",
        ],
        2,
        "--ttl: at most 90d",
    ),
    "missing body file": (
        lambda _: ["explain", "--config", "config/demo.yaml", "--stream", "web", "missing.json"],
        2,
        "missing.json: cannot read the body file (No such file or directory)",
    ),
    "no config at all": (lambda _: ["check"], 2, "give --config PATH or set TRACKGATE_CONFIG"),
    "unreadable config": (lambda p: ["serve", "--config", str(p)], 1, "cannot read the rules file"),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_refusals_are_one_line_without_a_traceback(tmp_path: Path, case: str) -> None:
    make_args, code, message = REFUSALS[case]
    env = {"SHORT_SECRET": "short", "LONG_SECRET": "x" * 32}
    result = trackgate(*make_args(tmp_path), env=env)
    assert (result.returncode, "Traceback" in result.stderr) == (code, False), result.stderr
    assert message in result.stderr
    assert "Warning" not in result.stderr  # PyJWT's InsecureKeyLengthWarning never shows


def test_serve_help_shows_config_as_optional() -> None:
    result = trackgate("serve", "--help")
    assert result.returncode == 0
    assert "[--config CONFIG]" in result.stdout and "TRACKGATE_CONFIG" in result.stdout


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
