"""The docs can't rot: every YAML and JSON block in README.md, deploy/README.md and
docs/*.md loads, every `trackgate …` line of their shell blocks runs (offline, in a
scratch copy of config/ and deploy/, long-running ones until ready), every
section they point each other to exists, every reason code is documented."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.config import load_rules, parse_yaml
from sidecar.errors import Reason
from sidecar.schema import SCHEMA, structural_errors
from tests.docs import DOCS, ROOT, Block, blocks, commands
from tests.harness import free_port

ENV = {"WEB_JWT_SECRET": "w" * 32, "BACKEND_SECRET_OLD": "an-old-backend-secret"}
# Stream lists (`- name: …`, the identity-provider examples, which need a CA file
# beside them) are loaded by tests/test_doc_stream_examples.py.
YAML_BLOCKS = [b for doc in DOCS for b in blocks(doc, "yaml") if not b.text.startswith("- name:")]
SHELL_BLOCKS = [b for doc in DOCS for b in blocks(doc, "sh") if commands(b, "trackgate")]
LONG_RUNNING = {"serve", "demo"}
MINIMAL_STREAM = {"name": "docs", "id": "docs-1", "type": "public", "template": "public"}


def ids(found: list[Block]) -> list[str]:
    return [b.where for b in found]


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A scratch checkout: config/ and deploy/, a `rules.yaml` (the demo rules on
    free ports) and a `body.json`, as the docs' examples assume."""
    for folder in ("config", "deploy"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    demo = (ROOT / "config/demo.yaml").read_text()
    for port in ("8080", "8081", "9090"):
        demo = demo.replace(f":{port}", f":{free_port()}")
    (tmp_path / "config/demo.yaml").write_text(demo)
    (tmp_path / "rules.yaml").write_text(demo)
    shutil.copy(ROOT / "config/bodies/page_visit.json", tmp_path / "body.json")
    return tmp_path


# -- YAML and JSON --------------------------------------------------------------------------


def as_rules(fragment: dict[str, Any]) -> dict[str, Any]:
    """A whole rules document around a block: top-level keys as they are, a stream's
    keys in a stream, `server` keys in `server`."""
    document: dict[str, Any] = {
        "version": 1,
        "server": {"upstream": {"url": "http://127.0.0.1:1"}},
        "streams": [MINIMAL_STREAM],
    }
    stream_keys = SCHEMA["properties"]["streams"]["items"]["properties"]
    if fragment.keys() <= SCHEMA["properties"].keys():
        return {**document, **fragment}
    if fragment.keys() <= stream_keys.keys():
        return {**document, "streams": [{**MINIMAL_STREAM, **fragment}]}
    if fragment.keys() <= SCHEMA["properties"]["server"]["properties"].keys():
        return {**document, "server": {**document["server"], **fragment}}
    raise AssertionError(f"a YAML block of no known shape: {sorted(fragment)}")


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=ids(YAML_BLOCKS))
def test_yaml_blocks_are_valid_rules(block: Block, sandbox: Path) -> None:
    fragment = parse_yaml(block.text.encode(), block.path)
    assert isinstance(fragment, dict), block.where
    document = as_rules(fragment)
    assert structural_errors(document) == [], block.where
    path = sandbox / "config" / "docs-block.yaml"  # relative key paths as in config/
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    load_rules(path, env=ENV)


JSON_BLOCKS = [b for doc in DOCS for b in blocks(doc, "json")]


@pytest.mark.parametrize("block", JSON_BLOCKS, ids=ids(JSON_BLOCKS))
def test_json_blocks_parse(block: Block) -> None:
    json.loads(block.text)


def test_the_docs_have_blocks_to_check() -> None:
    assert len(YAML_BLOCKS) >= 2 and len(SHELL_BLOCKS) >= 4
    assert sum(len(commands(b, "trackgate")) for b in SHELL_BLOCKS) >= 12


# -- shell -------------------------------------------------------------------------------


def shell(line: str, cwd: Path, **kwargs: Any) -> subprocess.Popen[str]:
    bin_dir = str(Path(sys.executable).parent)
    environment = {k: v for k, v in os.environ.items() if k != "TRACKGATE_CONFIG"}
    environment.update(ENV, PATH=f"{bin_dir}{os.pathsep}{environment.get('PATH', '')}")
    return subprocess.Popen(
        ["bash", "-c", f"exec {line}"], cwd=cwd, env=environment, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, **kwargs,
    )  # fmt: skip


def ready(admin: str, deadline: float) -> Iterator[None]:
    """Polls the admin port until `/readyz` answers 200."""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{admin}/readyz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        yield


def run_long(line: str, words: list[str], cwd: Path) -> tuple[int, str]:
    """Start a serving command, wait until it is ready, stop it as Kubernetes would."""
    config = words[words.index("--config") + 1] if "--config" in words else "config/demo.yaml"
    admin = load_rules(cwd / config, env=ENV).server.admin_listen
    process = shell(line, cwd)
    try:
        for _ in ready(f"http://127.0.0.1:{admin[1]}", time.monotonic() + 30):
            assert process.poll() is None, process.communicate()[1]
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    return process.returncode, err


def lines(block: Block) -> list[str]:
    return [line for line in block.text.splitlines() if line.startswith("trackgate ")]


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=ids(SHELL_BLOCKS))
def test_cli_examples_run(block: Block, sandbox: Path) -> None:
    for line, words in zip(lines(block), commands(block, "trackgate"), strict=True):
        if words[1] in LONG_RUNNING:
            code, err = run_long(line, words, sandbox)
        else:
            process = shell(line, sandbox)
            _, err = process.communicate(timeout=60)
            code = process.returncode
        assert (code, "Traceback" in err) == (0, False), f"{block.where}: {line}\n{err}"


# -- references and codes ------------------------------------------------------------------

_REFERENCE = re.compile(
    r'(deploy/README\.md|docs/configuration\.md|README)(?:,)? (?:§(\w+)|"([^"]+)")'
)
_SOURCES = ["config", "deploy", "docs", "sidecar", "README.md", "Makefile", "Dockerfile"]


def headings(path: Path) -> list[str]:
    return [h.replace("`", "") for h in re.findall(r"^#+ (.+)$", path.read_text(), re.M)]


def text_files() -> Iterator[Path]:
    for name in _SOURCES:
        path = ROOT / name
        found = [path] if path.is_file() else sorted(path.rglob("*"))
        yield from (p for p in found if p.is_file() and p.suffix not in {".pyc", ".so"})


def test_section_references_point_at_sections() -> None:
    found = 0
    for file in text_files():
        for match in _REFERENCE.finditer(file.read_text()):
            target = ROOT / (match[1] if match[1] != "README" else "README.md")
            title = " ".join((match[2] or match[3]).replace("#", " ").split())  # comments wrap
            assert any(h.startswith(title) for h in headings(target)), (file, title)
            found += 1
    assert found >= 10


def test_every_reason_code_is_documented_with_its_status() -> None:
    text = (ROOT / "docs/configuration.md").read_text()
    section = text.split("## Reason codes", 1)[1].split("\n## ", 1)[0]
    documented = {}
    for row in re.findall(r"^\| (`.+?) \| (\d{3}) \|", section, re.M):
        for code in re.findall(r"`(\w+)`", row[0]):
            documented[code] = int(row[1])
    assert documented == {reason.value: reason.status for reason in Reason}
