"""Fail when a built API page shows a private name in a signature, a "Bases:" line or a default.

    python tests/support/check_api_pages.py [SITE_DIR]      # default: site/

``nox -s docs`` runs it after ``mkdocs build``. It reads every HTML page under
``SITE_DIR/api/`` and looks at what mkdocstrings renders for each object:
its signature (parameters, their defaults and annotations, an attribute's
value), its "Bases:" line and the "Default" column of its parameter tables.
A name starting with an underscore there (``_JobMixin``,
``_DEFAULT_STOP_TIMEOUT``, ``_EndOfStream()``) is something a reader can
neither import nor look up; each one is reported as
``page: kind: text``, and the exit status is then 1. It is also 1 when no
signature was found at all (the pages were not built as expected).
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

PRIVATE = re.compile(r"(?<![\w.])_[A-Za-z]\w*")
WATCHED = {"doc-signature": "signature", "doc-class-bases": "bases"}


class _Table:
    """A parameter table being read: the current column, and the one headed "Default"."""

    def __init__(self) -> None:
        self.column = -1
        self.default: int | None = None


class _Collector(HTMLParser):
    """Collects the text of every signature, "Bases:" line and "Default" cell of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []
        self._open: list[tuple[str, int, list[str]]] = []  # (kind, depth, text parts)
        self._depth = 0
        self._tables: list[_Table] = []  # the open tables, innermost last

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._depth += 1
        classes = (dict(attrs).get("class") or "").split()
        for css, kind in WATCHED.items():
            if css in classes:
                self._open.append((kind, self._depth, []))
        if tag == "table":
            self._tables.append(_Table())
        elif self._tables and tag == "tr":
            self._tables[-1].column = -1
        elif self._tables and tag in ("th", "td"):
            table = self._tables[-1]
            table.column += 1
            if tag == "th":
                self._open.append(("header", self._depth, []))
            elif table.column == table.default:
                self._open.append(("default", self._depth, []))

    def handle_endtag(self, tag: str) -> None:
        while self._open and self._open[-1][1] == self._depth:
            kind, _, parts = self._open.pop()
            text = " ".join("".join(parts).split())
            if kind == "header":
                if text == "Default" and self._tables:
                    self._tables[-1].default = self._tables[-1].column
            else:
                self.found.append((kind, text))
        if tag == "table" and self._tables:
            self._tables.pop()
        self._depth -= 1

    def handle_data(self, data: str) -> None:
        for _, _, parts in self._open:
            parts.append(data)


def private_names(html: str) -> list[tuple[str, str]]:
    """``(kind, text)`` of every signature, "Bases:" line or default of ``html`` that shows a private name."""
    return [(kind, text) for kind, text in shown(html) if PRIVATE.search(text)]


def shown(html: str) -> list[tuple[str, str]]:
    """``(kind, text)`` of what ``html`` shows of each object.

    Its signature (``"signature"``), its "Bases:" line (``"bases"``), and the
    cells of the "Default" column of its parameter tables (``"default"``).
    """
    collector = _Collector()
    collector.feed(html)
    collector.close()
    return collector.found


def main(argv: list[str]) -> int:
    """Check the API pages of the site in ``argv[0]`` (default ``site``); return the exit status."""
    site = Path(argv[0] if argv else "site")
    pages = sorted((site / "api").rglob("*.html"))
    if not pages:
        print(f"check_api_pages: no API pages under {site / 'api'}", file=sys.stderr)
        return 1
    problems = 0
    signatures = 0
    for page in pages:
        html = page.read_text(encoding="utf-8")
        signatures += sum(1 for kind, _ in shown(html) if kind == "signature")
        for kind, text in private_names(html):
            problems += 1
            names = ", ".join(sorted(set(PRIVATE.findall(text))))
            print(f"{page.relative_to(site)}: {kind} shows {names}: {text}", file=sys.stderr)
    if not signatures:
        print("check_api_pages: no signature found on any API page", file=sys.stderr)
        return 1
    if problems:
        print(f"check_api_pages: {problems} private name(s) shown on the API pages", file=sys.stderr)
        return 1
    print(f"check_api_pages: {len(pages)} API page(s), {signatures} signatures, no private names")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
