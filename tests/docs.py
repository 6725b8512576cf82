"""The fenced code blocks of the project's Markdown, for tests that run them."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "deploy/README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(
    r"^(?P<indent> *)```(?P<lang>[\w-]*)\n(?P<body>.*?)^(?P=indent)```$", re.M | re.S
)


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, text (indentation removed) and where it starts."""

    path: Path
    line: int
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path, *langs: str) -> list[Block]:
    """The fenced blocks of `path` in one of `langs`, in order."""
    text = path.read_text()
    found = []
    for match in _FENCE.finditer(text):
        if match["lang"] not in langs:
            continue
        indent = len(match["indent"])
        body = "\n".join(line[indent:] for line in match["body"].splitlines())
        found.append(Block(path, text.count("\n", 0, match.start()) + 1, match["lang"], body))
    return found


def commands(block: Block, program: str) -> list[list[str]]:
    """The lines of a shell block that run `program`, as argument lists (comments
    dropped; a line with a pipe or redirection keeps only what precedes it)."""
    found = []
    for line in block.text.splitlines():
        if not line.startswith(f"{program} "):
            continue
        words = shlex.split(line, comments=True)
        if words[0] == program:
            cut = next((i for i, w in enumerate(words) if w in {"|", ">", "<", "&&"}), None)
            found.append(words[:cut])
    return found
