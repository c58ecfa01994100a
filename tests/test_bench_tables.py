"""``tests/benchmarks/to_markdown.py`` renders benchmark results as narrow Markdown tables."""

from __future__ import annotations

import pytest

from benchmarks.to_markdown import tables

pytestmark = pytest.mark.no_processes  # these tests start no process


def figure(name: str, unit: str, ours: float | None, base: float, **extra: object) -> dict[str, object]:
    stat = None if ours is None else {"median": ours, "low": ours * 0.9, "high": ours * 1.1, "n": 5}
    return {
        "name": name,
        "unit": unit,
        "ours": stat,
        "baseline_name": "guide loop",
        "baseline": {"median": base, "low": base, "high": base, "n": 5},
        "ratio": None if ours is None else base / ours,
        "status": "ok" if ours is not None else "n/a",
        "note": "",
        "target": "",
        "met": None,
        **extra,
    }


def test_one_table_per_figure_with_units_targets_and_notes() -> None:
    text = tables(
        [
            figure("stop: thread in self.sleep", "ms", 0.00004, 0.45, target="< 2 ms", met=True),
            figure(
                "stop: process (spawn)", "ms", 0.0188, 0.45, target="< 2 ms", met=False, note="spawn only"
            ),
            figure("pipeline thread>process>thread, batched", "items/s", None, 30_000.0),
        ]
    )
    lines = text.splitlines()
    assert "### Stop latency (ms)" in lines
    assert (
        "| thread in self.sleep | 0.04 [0.04-0.04] | guide loop: 450.00 | 11,250.00x | &lt; 2 ms: met |"
        in lines
    )
    assert any(line.endswith("| &lt; 2 ms: **not met** |") for line in lines)
    assert "- process (spawn): spawn only" in lines  # a note of one row names it
    assert "### Pipeline throughput (items/s)" in lines
    assert "| thread&gt;process&gt;thread, batched | - | guide loop: 30,000 | N/A |  |" in lines
    assert max(len(line) for line in lines) < 120  # narrow enough for a page
