"""Every example of the "From the Workers guide" page runs as it is shown, and ends by itself.

Each Python block of ``docs/from-the-guide.md`` is a complete script: it runs
here in a subprocess of its own (``tests/support/run_docs_blocks.py``), under this
run's start method, and must end with the exit status its ``docs-test``
comment expects (0 unless it says otherwise). A block that serves until a
signal (``sigterm``) gets SIGTERM once every worker of its server runs, as a
Ctrl+C would. Fragments, which the page marks, are checked to be valid Python.
The guide's examples *as the guide writes them* are tested in
``tests/core/test_guide_core.py``; this module tests their corrected forms.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from docs_blocks import Block, python_blocks
from guide_workers import ScriptRun
from marks import process_free

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "from-the-guide.md"
RUNNER = ROOT / "tests" / "support" / "run_docs_blocks.py"
TIMEOUT = 90.0  # each block needs a second or two; this is for a very slow machine

BLOCKS = python_blocks(PAGE)
PROGRAMS = [block for block in BLOCKS if not block.fragment]


@pytest.mark.no_processes
def test_the_page_has_the_guide_s_examples() -> None:
    assert len(PROGRAMS) >= 25  # one or more per example of the guide
    assert len(BLOCKS) - len(PROGRAMS) <= 3  # fragments are the exception
    codes = "\n".join(block.code for block in PROGRAMS)
    for name in ("LogWatcher", "HashCalculator", "MyWorker", "MonitoredWorker", "GracefulWorker"):
        assert f"class {name}(" in codes
    for name in ("AsyncAPIWorker", "JobProcessor", "DataSyncWorker", "TransformStage", "HealthMonitor"):
        assert f"class {name}(" in codes


@pytest.mark.no_processes
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.fragment], ids=lambda b: b.label)
def test_fragment_is_valid_python(block: Block) -> None:
    compile(block.code, block.label, "exec")


@pytest.mark.parametrize("block", [process_free(b, b.code, b.label) for b in PROGRAMS])
def test_example_runs(block: Block, tmp_path: Path) -> None:
    with ScriptRun(
        [str(RUNNER), str(PAGE), "--blocks", str(block.number)],
        cwd=tmp_path,  # an example that writes files writes them here
        stderr_path=tmp_path / "stderr.txt",
    ) as run:
        output = run.finish(timeout=TIMEOUT)
    assert run.returncode == 0, run.describe()
    assert f"ended with status {block.expected_status}" in output, run.describe()
