"""The results of ``nox -s bench`` as Markdown tables, for ``docs/performance.md``.

    python tests/benchmarks/to_markdown.py [.bench/results.json] > tables.md

The text table that ``run.py`` prints is too wide for a documentation page;
this renders the JSON it writes as one narrow table per figure instead
(stop latency, start latency, pipeline throughput...), each row with ours
(median and range), the baseline, the ratio and the target, and the figure's
notes below its table. Units are in the headings. Paste the output into the
"Latest results" section of the page.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# The figures' names start with one of these (run.py's naming); the rest of the name is the row's label.
GROUPS = [
    ("stop:", "Stop latency"),
    ("SIGTERM->exit:", "Signal to exit"),
    ("start:", "Start latency"),
    ("pipeline ", "Pipeline throughput"),
    ("JobProcessor ", "JobProcessor throughput"),
    ("periodic:", "Periodic accuracy"),
    ("repair:", "Failure repair"),
    ("run_async_safely:", "uvloop"),
    ("memory:", "Memory"),
    ("redis:", "Redis throughput"),
]
UNIT_NAMES = {"ms": "ms", "items/s": "items/s", "MiB": "MiB"}


def value(x: float, unit: str) -> str:
    """One value as the table shows it (times are stored in seconds and shown in ms)."""
    if unit == "ms":
        return f"{x * 1000:,.2f}"
    if unit == "items/s":
        return f"{x:,.0f}"
    return f"{x:.2f}"


def ours(figure: dict[str, Any]) -> str:
    stat = figure["ours"]
    if stat is None:
        return "-"
    unit = figure["unit"]
    return f"{value(stat['median'], unit)} [{value(stat['low'], unit)}-{value(stat['high'], unit)}]"


def baseline(figure: dict[str, Any]) -> str:
    stat = figure["baseline"]
    shown = "-" if stat is None else value(stat["median"], figure["unit"])
    return f"{figure['baseline_name']}: {shown}"


def ratio(figure: dict[str, Any]) -> str:
    if figure["status"] != "ok":
        return figure["status"].upper()
    return "-" if figure["ratio"] is None else f"{figure['ratio']:,.2f}x"


def target(figure: dict[str, Any]) -> str:
    if not figure["target"]:
        return ""
    met = {True: "met", False: "**not met**", None: ""}[figure["met"]]
    return f"{figure['target']}: {met}" if met else figure["target"]


def split(name: str) -> tuple[str, str]:
    """``(group title, row label)`` of a figure's name."""
    for prefix, title in GROUPS:
        if name.startswith(prefix):
            return title, name[len(prefix) :].strip() or name
    return name, name


def escape(text: str) -> str:
    return text.replace("|", "\\|").replace(">", "&gt;").replace("<", "&lt;")


def notes(members: list[dict[str, Any]]) -> list[str]:
    """A figure group's notes, as a list under its table; a note of some rows only names them."""
    lines: list[str] = []
    for note in dict.fromkeys(f["note"] for f in members if f["note"]):
        rows = [f for f in members if f["note"] == note]
        if len(rows) == len(members):
            lines.append(f"- {escape(note)}")
            continue
        more = f" (and the {len(rows) - 1} rows below)" if len(rows) > 1 else ""
        lines.append(f"- {escape(split(rows[0]['name'])[1])}{more}: {escape(note)}")
    return ["", *lines] if lines else []


def tables(figures: list[dict[str, Any]]) -> str:
    """The Markdown: a ``###`` heading and a table per group, in the order of the figures."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for figure in figures:
        groups.setdefault(split(figure["name"])[0], []).append(figure)
    out: list[str] = []
    for title, members in groups.items():
        units = sorted({UNIT_NAMES.get(f["unit"], f["unit"]) for f in members})
        out += [f"### {title} ({', '.join(units)})", ""]
        out += ["| figure | ours: median [min-max] | baseline: median | ratio | target |"]
        out += ["|---|---|---|---|---|"]
        for figure in members:
            cells = [split(figure["name"])[1], ours(figure), baseline(figure), ratio(figure), target(figure)]
            out.append("| " + " | ".join(escape(cell) for cell in cells) + " |")
        out += notes(members)
        out.append("")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else ROOT / ".bench" / "results.json"
    results = json.loads(path.read_text(encoding="utf-8"))
    print(tables(results["figures"]), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
