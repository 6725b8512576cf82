"""docs/configuration.md's field tables, rendered from the documented schema.

Between `<!-- fields PATH -->` (optionally `depth=N`) and `<!-- /fields -->`
markers, a table of the fields under PATH (`.` for the top level): key, default
and meaning, as `trackgate schema` prints them (`sidecar/schema_docs.py`), so
the docs never say a field means something else. `python -m
sidecar.field_tables docs/configuration.md` rewrites them (`--check`: exit 1
while stale; a test runs the same check).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sidecar.schema_docs import documented_schema, properties

_BLOCK = re.compile(
    r"(?P<open><!-- fields (?P<path>\S+)(?: depth=(?P<depth>\d+))? -->\n)"
    r".*?(?P<close><!-- /fields -->)",
    re.S,
)


def table(schema: Mapping[str, Any], prefix: str, depth: int | None = None) -> str:
    """The Markdown table of the fields under `prefix` (`.` for the top level),
    `depth` levels deep (all without)."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for path, node, required in properties(schema):
        if prefix == ".":
            relative = path
        elif path.startswith(f"{prefix}."):
            relative = path[len(prefix) + 1 :]
        else:
            continue
        if depth is not None and relative.count(".") >= depth:
            continue
        default = f"`{json.dumps(node['default'])}`" if "default" in node else ""
        default = "required" if required else default
        meaning = node.get("description", "").replace("|", "\\|")
        rows.append(f"| `{relative}` | {default} | {meaning} |")
    return "\n".join(rows) + "\n"


def render(text: str, schema: Mapping[str, Any]) -> str:
    """`text` with every generated field table brought up to date."""

    def fill(match: re.Match[str]) -> str:
        depth = int(match["depth"]) if match["depth"] else None
        return match["open"] + table(schema, match["path"], depth) + match["close"]

    return _BLOCK.sub(fill, text)


def main(argv: list[str]) -> int:
    """`python -m sidecar.field_tables [--check] FILE…`: rewrite (or check) the tables."""
    check = "--check" in argv
    stale = []
    for name in (a for a in argv if a != "--check"):
        path = Path(name)
        text = path.read_text()
        fresh = render(text, documented_schema())
        if fresh != text:
            stale.append(name)
            if not check:
                path.write_text(fresh)
    for name in stale:
        print(f"{name}: field tables {'are stale' if check else 'rewritten'}", file=sys.stderr)
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
