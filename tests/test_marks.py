"""The marks that let a test run under one start method only hold it to its word."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from marks import PROCESS_FREE_SITE, uses_processes

STARTS_A_PROCESS = "import multiprocessing as mp\np = mp.Process(target=print)\np.start()\np.join()\n"


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", code]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.no_processes
def test_a_script_that_names_a_process_is_taken_to_start_one() -> None:
    assert uses_processes("class Hasher(ProcessWorker): ...")
    assert uses_processes('pipeline.add_stage(f, kind="process")')
    assert uses_processes("import multiprocessing")
    assert not uses_processes("class Poller(ThreadWorker): ...")
    assert not uses_processes('class Worker(JobProcessor):\n    """Process jobs from a queue."""')
    assert uses_processes("server.add_worker(ProcessJobProcessor('p', q))")
    assert uses_processes("p = ctx.Process(target=f)")


@pytest.mark.no_processes
def test_a_subprocess_of_a_no_processes_test_cannot_start_a_process() -> None:
    # This test is marked: its subprocesses get the refusing sitecustomize.
    assert os.environ["PYTHONPATH"].split(os.pathsep)[0] == str(PROCESS_FREE_SITE)
    done = run_python(STARTS_A_PROCESS)
    assert done.returncode != 0
    assert "test marked no_processes" in done.stderr


def test_a_subprocess_of_any_other_test_can() -> None:
    done = run_python(STARTS_A_PROCESS)
    assert done.returncode == 0, done.stderr
