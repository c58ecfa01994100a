"""ProcessWorker under the start method of this nox cell."""

from __future__ import annotations

import os
import signal
import threading
import time
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import pytest

from spoc.workers import (
    ProcessWorker,
    RemoteTraceback,
    WorkerExitedError,
    WorkerNotPicklableError,
    WorkerRemoteError,
    WorkerState,
)
from targets import (
    UVLOOP_INSTALLED,
    AsyncMarkingSleeper,
    AsyncProcessOrder,
    ExitsWith,
    HoldsLock,
    IgnoresStop,
    MarkingSleeper,
    Raiser,
    RaisesUnpicklable,
    SelfStopper,
    SignalsItself,
    marks,
    wait_for,
)


def _running(worker: ProcessWorker, directory: Path) -> None:
    wait_for(lambda: f"{worker.name}.main" in marks(directory), timeout=30)


@pytest.mark.no_processes
def test_start_method_comes_from_the_environment(start_method: str) -> None:
    assert MarkingSleeper("w", "/nonexistent").start_method == start_method
    assert MarkingSleeper("w", "/x", start_method="spawn").start_method == "spawn"


@pytest.mark.no_processes
def test_unknown_start_method_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown start method 'thread'"):
        MarkingSleeper("w", "/x", start_method="thread")


@pytest.mark.parametrize("kind", [MarkingSleeper, AsyncMarkingSleeper])
def test_lifecycle_runs_in_the_child_and_stop_is_fast(tmp_path: Path, kind: type[MarkingSleeper]) -> None:
    worker = kind("sleeper", str(tmp_path))
    worker.start()
    _running(worker, tmp_path)
    assert worker.state is WorkerState.RUNNING
    assert worker.is_alive() and worker.pid != os.getpid()
    assert (tmp_path / "sleeper.setup").read_text() == str(worker.pid)
    begun = time.perf_counter()
    worker.stop()
    assert worker.join(10)
    assert time.perf_counter() - begun < 0.25
    assert worker.state is WorkerState.STOPPED
    assert worker.exitcode == 0
    assert marks(tmp_path) >= {
        "sleeper.setup",
        "sleeper.startup",
        "sleeper.main",
        "sleeper.teardown",
        "sleeper.shutdown",
    }


def test_async_hooks_in_a_child_share_one_loop(tmp_path: Path) -> None:
    worker = AsyncProcessOrder("async-order", str(tmp_path))
    worker.start()
    assert worker.join(30)
    assert worker.state is WorkerState.STOPPED, worker.exception
    got, loop_module = (tmp_path / "async-order.main").read_text().rsplit(" ", 1)
    assert got == "[0, 1, 2]"
    assert loop_module.startswith("uvloop") is UVLOOP_INSTALLED  # uvloop by default when installed


def test_the_process_carries_the_worker_name(tmp_path: Path) -> None:
    worker = MarkingSleeper("hasher-12345678901", str(tmp_path))
    worker.start()
    try:
        _running(worker, tmp_path)
        comm = Path(f"/proc/{worker.pid}/comm").read_text().strip()
        assert comm == "hasher-12345678"  # Linux keeps 15 bytes
        assert worker.process is not None and worker.process.name == "hasher-12345678901"
    finally:
        worker.stop()
        worker.join(10)


@pytest.mark.parametrize("phase", ["setup", "main", "teardown"])
def test_an_exception_in_the_child_reaches_the_parent(phase: str) -> None:
    worker = Raiser(phase=phase)
    worker.start()
    assert worker.join(30)
    assert worker.state is WorkerState.FAILED
    assert worker.exitcode == 1
    exc = worker.exception
    assert isinstance(exc, ValueError) and str(exc) == f"{phase} failed"
    assert isinstance(exc.__cause__, RemoteTraceback)
    assert f'raise ValueError("{phase} failed")' in exc.__cause__.tb


def test_an_exception_that_cannot_travel_back_is_described() -> None:
    worker = RaisesUnpicklable()
    worker.start()
    assert worker.join(30)
    assert worker.state is WorkerState.FAILED
    exc = worker.exception
    assert isinstance(exc, WorkerRemoteError)
    assert exc.type_name == "targets.UnpicklableError"
    assert exc.message == "odd"
    assert "raise UnpicklableError" in exc.traceback


def test_a_child_that_exits_on_its_own_is_failed_with_its_code() -> None:
    worker = ExitsWith(code=3)
    worker.start()
    assert worker.join(30)
    assert worker.state is WorkerState.FAILED
    assert worker.exitcode == 3
    assert isinstance(worker.exception, WorkerExitedError)
    assert "exited with code 3" in str(worker.exception)


def test_what_a_join_waits_on_is_read_whole_while_another_thread_reaps_the_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # CI, forkserver: join_all()'s join() collected a child's sentinel while the
    # supervisor thread reaped and closed that child: "process object is closed".
    worker = ExitsWith(code=0)
    worker.start()
    process = worker._process
    assert process is not None
    assert wait([process.sentinel], 30)  # the child is gone; nobody has reaped it yet
    inside, reaped = threading.Event(), threading.Event()
    original = worker._fork_server_lost

    def reaped_meanwhile(process: Any) -> bool:
        if threading.current_thread() is threading.main_thread():  # the joiner
            inside.set()
            reaped.wait(0.5)  # the reaper cannot get in while the waitables are read
        return original(process)

    monkeypatch.setattr(worker, "_fork_server_lost", reaped_meanwhile)

    def reap() -> None:
        assert inside.wait(10)
        worker._refresh()
        reaped.set()

    reaper = threading.Thread(target=reap)
    reaper.start()
    try:
        waitables = worker._waitables()
    finally:
        reaper.join(10)
    assert len(waitables) == 2  # the status pipe and the sentinel, both still open
    assert worker.join(10)
    assert worker.exitcode == 0


def test_a_killed_child_is_failed_and_names_the_signal(tmp_path: Path) -> None:
    worker = MarkingSleeper("victim", str(tmp_path))
    worker.start()
    _running(worker, tmp_path)
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGKILL)
    assert worker.join(10)
    assert worker.state is WorkerState.FAILED
    assert worker.exitcode == -signal.SIGKILL
    assert "killed by SIGKILL" in str(worker.exception)


def test_sigterm_to_the_child_is_a_stop_request(tmp_path: Path) -> None:
    worker = SignalsItself("term", str(tmp_path), signal.SIGTERM)
    worker.start()
    assert worker.join(30)
    assert worker.state is WorkerState.STOPPED
    assert marks(tmp_path) == {"term.stopped-by-signal", "term.teardown"}


def test_sigint_is_ignored_by_the_child(tmp_path: Path) -> None:
    worker = SignalsItself("int", str(tmp_path), signal.SIGINT)
    worker.start()
    assert worker.join(30)
    assert worker.state is WorkerState.STOPPED
    assert marks(tmp_path) == {"int.survived", "int.teardown"}


def test_stop_from_inside_the_child(tmp_path: Path) -> None:
    worker = SelfStopper("self-stopper", str(tmp_path), n=5)
    worker.start()
    assert worker.join(30)
    assert worker.state is WorkerState.STOPPED
    assert (tmp_path / "self-stopper.count").read_text() == "5"


def test_a_child_ignoring_stop_is_gone_after_stop_timeout(tmp_path: Path) -> None:
    worker = IgnoresStop("stubborn", str(tmp_path), stop_timeout=0.5)
    worker.start()
    _running(worker, tmp_path)
    begun = time.perf_counter()
    worker.stop()
    assert worker.join(10)
    assert 0.4 < time.perf_counter() - begun < 3.0
    assert worker.exitcode == 124
    assert worker.state is WorkerState.FAILED
    assert isinstance(worker.exception, TimeoutError)


def test_terminate_ends_the_child_at_once(tmp_path: Path) -> None:
    worker = IgnoresStop("terminated", str(tmp_path))
    worker.start()
    _running(worker, tmp_path)
    worker.terminate()
    assert worker.join(5)
    assert worker.exitcode == 125
    assert worker.state is WorkerState.FAILED


def test_kill_ends_the_child(tmp_path: Path) -> None:
    worker = IgnoresStop("killed", str(tmp_path))
    worker.start()
    _running(worker, tmp_path)
    worker.kill()
    assert worker.join(5)
    assert worker.exitcode == -signal.SIGKILL


def test_terminate_and_kill_after_the_child_ended_do_nothing(tmp_path: Path) -> None:
    # A server's escalation may terminate a worker that ended (and was reaped) a moment before;
    # the closed Process must not turn that into a ValueError that aborts the shutdown.
    worker = MarkingSleeper("ended", str(tmp_path))
    worker.start()
    worker.stop()
    assert worker.join(10)
    pid = worker.pid
    worker.terminate()
    worker.kill()
    assert worker.state is WorkerState.STOPPED and worker.exitcode == 0 and worker.pid == pid


def test_unpicklable_attributes_fail_at_start_unless_forking(start_method: str) -> None:
    worker = HoldsLock()
    if start_method == "fork":
        worker.start()  # nothing is pickled under fork
        assert worker.join(30)
        assert worker.state is WorkerState.STOPPED
        return
    with pytest.raises(WorkerNotPicklableError) as caught:
        worker.start()
    assert isinstance(caught.value, TypeError)
    assert caught.value.attribute_path == "context.client._lock"
    message = str(caught.value)
    assert "'HoldsLock'" in message and "context.client._lock" in message and "setup()" in message
    assert worker.state is WorkerState.NEW and worker.pid is None


def test_restart_gives_a_fresh_process(tmp_path: Path) -> None:
    worker = MarkingSleeper("again", str(tmp_path))
    pids = []
    for _ in range(2):
        worker.start()
        wait_for((tmp_path / "again.setup").exists, timeout=30)
        pids.append(int((tmp_path / "again.setup").read_text()))
        worker.stop()
        assert worker.join(10)
        assert worker.state is WorkerState.STOPPED
        (tmp_path / "again.setup").unlink()
    assert pids[0] != pids[1]


def test_start_on_a_live_process_worker_raises(tmp_path: Path) -> None:
    worker = MarkingSleeper("live", str(tmp_path))
    worker.start()
    try:
        with pytest.raises(RuntimeError, match="already"):
            worker.start()
    finally:
        worker.stop()
        worker.join(10)


def test_stop_right_after_start_is_not_lost(tmp_path: Path) -> None:
    worker = MarkingSleeper("hasty", str(tmp_path))
    worker.start()
    worker.stop()
    assert worker.join(30)
    assert worker.state is WorkerState.STOPPED


@pytest.mark.no_processes
def test_join_and_stop_before_start() -> None:
    worker = MarkingSleeper("never", "/nonexistent")
    worker.stop()
    assert worker.join(0) is True
    assert worker.pid is None and worker.exitcode is None and not worker.is_alive()
