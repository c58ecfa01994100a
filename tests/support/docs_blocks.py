"""The Python code blocks of a Markdown page, for the tests that run the documentation.

A block is a fenced code block whose info string is ``python`` (or ``py``).
An HTML comment on the line right before its opening fence (invisible on
the rendered page) tells the tests how to treat it::

    <!-- docs-test: fragment -->     not a program: only checked to be valid Python
    <!-- docs-test: sigterm -->      runs until a signal (a service): the runner sends
                                     SIGTERM once every worker of its Server is running
    <!-- docs-test: exit 1 -->       ends with this exit status on purpose
    <!-- docs-test: redis -->        needs a Redis server (the tests give it one)

Options combine with commas: ``<!-- docs-test: sigterm, redis -->``. Every
other block must run as it is and end by itself, successfully.
``tests/support/run_docs_blocks.py`` runs blocks; the tests call it in a subprocess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Block", "python_blocks"]

_FENCE = re.compile(r"^(?P<indent>[ ]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<options>.*?)\s*-->\s*$")
_KNOWN = re.compile(r"^(fragment|sigterm|redis|exit \d+)$")


@dataclass(frozen=True)
class Block:
    """One Python code block of a page."""

    path: Path
    number: int
    """1-based, counting the page's Python blocks only."""
    line: int
    """The line of the page where the block's code starts (1-based)."""
    code: str
    options: frozenset[str]
    """What its ``<!-- docs-test: ... -->`` comment says (empty without one)."""

    @property
    def fragment(self) -> bool:
        """Only checked to be valid Python, never run."""
        return "fragment" in self.options

    @property
    def expected_status(self) -> int:
        """The exit status the block ends with (0 unless an ``exit N`` option says otherwise)."""
        for option in self.options:
            if option.startswith("exit "):
                return int(option.split()[1])
        return 0

    @property
    def label(self) -> str:
        """``page.md:LINE``, for test ids and messages."""
        return f"{self.path.name}:{self.line}"


def python_blocks(path: str | Path) -> list[Block]:
    """Every Python block of the Markdown file ``path``, in page order.

    Raises:
        ValueError: an unknown ``docs-test`` option, or a comment that is not
            followed by a Python block.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    pending: tuple[int, frozenset[str]] | None = None
    i = 0
    while i < len(lines):
        marker = _MARKER.match(lines[i])
        if marker:
            options = frozenset(o.strip() for o in marker["options"].split(",") if o.strip())
            unknown = sorted(o for o in options if not _KNOWN.match(o))
            if unknown:
                raise ValueError(f"{path}:{i + 1}: unknown docs-test option(s) {unknown}")
            pending = (i + 1, options)
            i += 1
            continue
        fence = _FENCE.match(lines[i])
        if not fence:
            if lines[i].strip() and pending is not None:
                raise ValueError(f"{path}:{pending[0]}: a docs-test comment must come right before a block")
            i += 1
            continue
        indent, mark, info = len(fence["indent"]), fence["fence"], fence["info"]
        start = i + 1
        i = start
        while i < len(lines) and not (
            lines[i].strip().startswith(mark) and lines[i].strip().strip(mark[0]) == ""
        ):
            i += 1
        body = [line[indent:] if line[:indent].strip() == "" else line for line in lines[start:i]]
        i += 1  # past the closing fence
        if info in ("python", "py"):
            options = pending[1] if pending is not None else frozenset()
            code = "\n".join(body) + "\n"
            blocks.append(Block(path, len(blocks) + 1, start + 1, code, options))
        elif pending is not None:
            raise ValueError(f"{path}:{pending[0]}: a docs-test comment must precede a python block")
        pending = None
    return blocks
