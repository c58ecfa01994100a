"""``is_running``: True while a run is under way and no stop was requested, False otherwise.

Inside the worker a ``while self.is_running:`` loop runs until the stop; from
outside it answers "is it running now?": False before ``start()`` and after
the run ended, whichever way it ended.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from spoc.workers import AbstractWorker, ThreadWorker, WorkerState
from targets import ProcessRunningProbe, ThreadRunningProbe, marks, wait_for

KINDS = {"thread": ThreadRunningProbe, "process": ProcessRunningProbe}


def _probe(kind: str, directory: Path, end: str = "wait") -> AbstractWorker:
    worker: AbstractWorker = KINDS[kind](f"probe-{kind}", str(directory), end=end)
    return worker


def _noted(worker: AbstractWorker, directory: Path, hook: str) -> str:
    return (directory / f"{worker.name}.{hook}").read_text()


def _wait_for_mark(worker: AbstractWorker, directory: Path, hook: str) -> None:
    wait_for(lambda: f"{worker.name}.{hook}" in marks(directory), timeout=30)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.no_processes
def test_a_worker_never_started_is_not_running(kind: str, tmp_path: Path) -> None:
    worker = _probe(kind, tmp_path)
    assert worker.is_running is False
    worker.stop()  # a stop before start changes nothing
    assert worker.is_running is False
    assert worker.state is WorkerState.NEW


@pytest.mark.parametrize("kind", KINDS)
def test_running_from_setup_until_a_stop_is_requested(kind: str, tmp_path: Path) -> None:
    worker = _probe(kind, tmp_path)
    worker.start()
    try:
        assert worker.is_running  # right after start(), before setup() is even done
        _wait_for_mark(worker, tmp_path, "main")
        assert _noted(worker, tmp_path, "setup") == "True"  # in the thread or the child process
        assert _noted(worker, tmp_path, "main") == "True"
        assert worker.is_running
    finally:
        worker.stop()
    assert worker.is_running is False  # at once, before the run has ended
    assert worker.join(30)
    assert worker.state is WorkerState.STOPPED, worker.exception
    assert _noted(worker, tmp_path, "after") == "False"  # what ended the loop
    assert _noted(worker, tmp_path, "teardown") == "False"
    assert worker.is_running is False


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_that_ended_by_itself_is_not_running(kind: str, tmp_path: Path) -> None:
    worker = _probe(kind, tmp_path, end="return")
    worker.start()
    wait_for(lambda: not worker.is_running, timeout=30)  # turns False on its own: no stop(), no join()
    assert worker.join(30)
    assert worker.state is WorkerState.STOPPED, worker.exception
    # Inside, no stop was requested: still running until the run's very end.
    assert _noted(worker, tmp_path, "after") == "True"
    assert _noted(worker, tmp_path, "teardown") == "True"
    assert worker.is_running is False


@pytest.mark.parametrize("kind", KINDS)
def test_a_failed_run_is_not_running(kind: str, tmp_path: Path) -> None:
    worker = _probe(kind, tmp_path, end="raise")
    worker.start()
    assert worker.join(30)
    assert worker.state is WorkerState.FAILED
    assert _noted(worker, tmp_path, "teardown") == "True"  # teardown of a failed run, no stop requested
    assert worker.is_running is False


@pytest.mark.parametrize("kind", KINDS)
def test_a_restarted_worker_is_running_again(kind: str, tmp_path: Path) -> None:
    worker = _probe(kind, tmp_path)
    for _ in range(2):
        for path in tmp_path.iterdir():
            path.unlink()
        worker.start()
        try:
            _wait_for_mark(worker, tmp_path, "main")
            assert _noted(worker, tmp_path, "setup") == "True"
            assert worker.is_running
        finally:
            worker.stop()
        assert worker.join(30)
        assert worker.is_running is False
    assert worker.state is WorkerState.STOPPED


class SlowSetup(ThreadWorker):
    """Its setup waits for the test, so the test can look from outside while it runs."""

    def __init__(self) -> None:
        super().__init__("slow-setup")
        self.in_setup = threading.Event()
        self.release = threading.Event()

    def setup(self) -> None:
        self.in_setup.set()
        assert self.release.wait(30)

    def main(self) -> None:
        pass


@pytest.mark.no_processes
def test_running_while_setup_runs_seen_from_outside() -> None:
    worker = SlowSetup()
    worker.start()
    try:
        assert worker.in_setup.wait(10)
        assert worker.state is WorkerState.STARTING
        assert worker.is_running
    finally:
        worker.release.set()
    assert worker.join(10)
    assert worker.is_running is False
