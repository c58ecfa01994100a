"""The examples of the "Scaling out with Redis" page run against a real Redis server.

Each Python block of ``docs/guide/redis.md`` runs in a subprocess of its own
(``tests/support/run_docs_blocks.py``), its ``redis://localhost:6379/0`` pointed at
the suite's throwaway ``redis-server`` (skipped without one, as every Redis
test is). A block must end by itself, with exit status 0; the worker server,
which runs until a signal, gets SIGTERM once its workers run. So no block
uses a placeholder host or an undefined helper (which would fail every job).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from docs_blocks import Block, python_blocks
from guide_workers import ScriptRun
from marks import process_free

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "guide" / "redis.md"
RUNNER = ROOT / "tests" / "support" / "run_docs_blocks.py"
LOCAL_URL = "redis://localhost:6379/0"
TIMEOUT = 90.0

PROGRAMS = [block for block in python_blocks(PAGE) if not block.fragment]


@pytest.mark.no_processes
def test_the_page_runs_what_it_shows() -> None:
    assert len(PROGRAMS) >= 5
    for block in PROGRAMS:
        assert "redis.internal" not in block.code, block.label  # no placeholder host


@pytest.mark.parametrize("block", [process_free(b, b.code, b.label) for b in PROGRAMS])
def test_example_runs(block: Block, redis_url: str, tmp_path: Path) -> None:
    with ScriptRun(
        [str(RUNNER), str(PAGE), "--blocks", str(block.number), "--replace", f"{LOCAL_URL}={redis_url}"],
        cwd=tmp_path,
        stderr_path=tmp_path / "stderr.txt",
    ) as run:
        output = run.finish(timeout=TIMEOUT)
    assert run.returncode == 0, run.describe()
    assert f"ended with status {block.expected_status}" in output, run.describe()
    assert "Traceback" not in run.stderr, run.describe()  # no job failed, nothing was logged as an error
