"""The documentation's examples stay true: every stream example (a YAML block
starting `- name:`) in README.md and docs/configuration.md loads as written."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from sidecar.config import load_rules
from tests.harness import ROOT, rules_text
from tests.idp import make_tls
from tests.jwt_keys import Keys, public_pem

YAML_BLOCK = re.compile(r"```yaml\n(.*?)```", re.DOTALL)
DOCUMENTS = ("README.md", "docs/configuration.md")
EXAMPLES = [
    (document, block)
    for document in DOCUMENTS
    for block in YAML_BLOCK.findall((ROOT / document).read_text())
    if block.startswith("- name:")
]


def test_the_docs_hold_stream_examples() -> None:
    assert len(EXAMPLES) >= 2  # the identity-provider examples: discovery and a URL


@pytest.mark.parametrize(("document", "block"), EXAMPLES, ids=[d for d, _ in EXAMPLES])
def test_every_stream_example_in_the_docs_loads(tmp_path: Path, document: str, block: str) -> None:
    make_tls(tmp_path)
    shutil.copy(tmp_path / "ca.pem", tmp_path / "idp-ca.pem")  # the examples' ca_file
    (tmp_path / "braze-1.pem").write_bytes(public_pem(Keys.create(tmp_path).rsa))  # the braze one
    path = tmp_path / "rules.yaml"
    path.write_text(rules_text("http://127.0.0.1:1", block))
    assert load_rules(path, {}).streams
