"""The Workers guide's core examples work as written.

Each test runs one example of the guide (the classes are in
``tests/support/guide_workers.py``, copied from the guide) and changes only what makes
it end: a stop once the test has seen progress, a bounded run, a temporary
file for a fixed path. Every test synchronises on what the workers did
(printed lines, recorded events, marker files) rather than on sleeps, and
stops and joins whatever it started.

Process workers honour ``SPOC_WORKERS_START_METHOD``, so the module runs under
each start method of the nox matrix. The guide's patterns section (periodic
workers, pipelines, health monitoring) gets its own tests with its base
classes; only Pattern 1, which needs nothing but the core, is here.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import guide_workers as gw
from guide_workers import (
    RecordingStream,
    ScriptRun,
    child_events,
    child_stdout,
    wait_for,
)
from spoc.workers import (
    AbstractWorker,
    RemoteTraceback,
    Server,
    ThreadWorker,
    WorkerState,
    run_async_safely,
    set_uvloop_if_available,
)
from spoc.workers.aio import use_default_loop, uvloop_enabled
from targets import started

GUIDE_WORKERS = Path(gw.__file__)
JOIN_TIMEOUT = 15.0  # wide: the machine may be slow; a healthy worker ends in well under a second


def record_stdout(monkeypatch: pytest.MonkeyPatch) -> RecordingStream:
    """Record what thread workers print from now on (their ``print`` writes to this ``sys.stdout``).

    Called inside the test, not from a fixture: pytest's output capturing
    installs its own ``sys.stdout`` when the test's call phase begins.
    """
    stream = RecordingStream()
    monkeypatch.setattr(sys, "stdout", stream)
    return stream


def stop_and_join(*workers: AbstractWorker) -> None:
    """Stop every worker and wait for each; fail if one does not end in time."""
    for worker in workers:
        worker.stop()
    for worker in workers:
        assert worker.join(JOIN_TIMEOUT), f"{worker!r} did not end within {JOIN_TIMEOUT}s"


class StopWhen(threading.Thread):
    """Call ``server.stop()`` once ``condition`` holds (or after ``timeout``), from another thread.

    For ``run_forever()``, which blocks the test's (main) thread until stopped.
    ``condition_met`` tells whether the progress was seen before the stop;
    :meth:`cancel` ends the wait early (when ``run_forever()`` returned by itself).
    """

    def __init__(self, server: Server, condition: Callable[[], object], timeout: float = 30.0) -> None:
        super().__init__(name="stop-when", daemon=True)
        self.server = server
        self.condition = condition
        self.timeout = timeout
        self.condition_met = False
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    def run(self) -> None:
        def check() -> bool:
            self.condition_met = bool(self.condition())
            return self.condition_met or self._cancelled.is_set()

        try:
            wait_for(check, self.timeout)
        finally:
            self.server.stop()


def run_forever_until(server: Server, condition: Callable[[], object]) -> tuple[int, StopWhen]:
    """Run ``server.run_forever()`` in this thread until ``condition`` holds, then stop it."""
    stopper = StopWhen(server, condition)
    stopper.start()
    try:
        status = server.run_forever()
    finally:
        stopper.cancel()
        stopper.join(JOIN_TIMEOUT)
        server.stop()
    return status, stopper


@pytest.fixture
def database() -> Iterator[gw._Database]:
    """The stand-in database of best practice 3, reset around the test."""
    gw.DATABASE.reset()
    yield gw.DATABASE
    gw.DATABASE.reset()


# ---------------------------------------------------------------------------
# ThreadWorker — LogWatcher
# ---------------------------------------------------------------------------


@pytest.mark.no_processes
def test_log_watcher_reports_only_new_error_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stdout = record_stdout(monkeypatch)
    log = tmp_path / "app.log"
    log.write_text("ERROR written before the watcher started\n")
    watcher = gw.LogWatcher(name="LogWatcher", log_path=str(log))
    with started(watcher, timeout=JOIN_TIMEOUT):
        assert wait_for(lambda: watcher.state is WorkerState.RUNNING), watcher.state
        with log.open("a") as f:  # whole lines, one write each: the watcher never sees half a line
            f.write("INFO all good\n")
            f.flush()
            f.write("ERROR disk full\n")
        assert stdout.wait_for_text("Error detected: ERROR disk full\n"), stdout.text
    assert stdout.lines() == ["Error detected: ERROR disk full"]  # not INFO, not the line from before
    assert watcher.log_file.closed  # teardown ran
    assert watcher.state is WorkerState.STOPPED
    assert watcher.exception is None


# ---------------------------------------------------------------------------
# ProcessWorker — HashCalculator
# ---------------------------------------------------------------------------


def test_hash_calculator_hashes_files_in_a_child_process(tmp_path: Path, start_method: str) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    paths = []
    for i, size in enumerate([0, 4096, 10_000]):  # empty, exactly one chunk, several chunks
        path = data_dir / f"file{i}.bin"
        path.write_bytes(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
        paths.append(str(path))
    expected = {Path(p).name: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}

    worker = gw.FileListHashCalculator("HashCalculator", paths, record_dir=str(tmp_path))
    assert worker.start_method == start_method
    with started(worker, timeout=JOIN_TIMEOUT):
        assert wait_for(lambda: child_stdout(tmp_path).count("\n") >= 3), child_stdout(tmp_path)
        assert worker.pid is not None and worker.is_alive()

    lines = child_stdout(tmp_path).splitlines()
    assert dict(line.split() for line in lines[:3]) == expected
    assert lines[3:] == ["processed_count=3"]
    assert not hasattr(worker, "processed_count")  # set in the child's setup(): not seen by the parent
    assert worker.state is WorkerState.STOPPED
    assert worker.exitcode == 0
    assert worker.exception is None


# ---------------------------------------------------------------------------
# Creating Custom Workers — MyWorker, MonitoredWorker
# ---------------------------------------------------------------------------


@pytest.mark.no_processes
def test_basic_worker_structure_runs_setup_main_teardown(monkeypatch: pytest.MonkeyPatch) -> None:
    stdout = record_stdout(monkeypatch)
    worker = gw.ConnectedWorker(name="MyWorker")
    with started(worker, timeout=JOIN_TIMEOUT):
        assert wait_for(lambda: getattr(worker, "counter", 0) >= 1)
        connection = worker.context.connection
        assert not connection.closed
    assert connection.closed  # teardown closed what setup opened
    assert stdout.lines() == [f"Processed {worker.counter} items"]
    assert worker.counter >= 1
    assert worker.state is WorkerState.STOPPED


@pytest.mark.no_processes
def test_monitored_worker_reports_startup_then_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    stdout = record_stdout(monkeypatch)
    worker = gw.MonitoredWorker(name="Monitored")
    with started(worker, timeout=JOIN_TIMEOUT):
        assert wait_for(lambda: worker.state is WorkerState.RUNNING)
        assert stdout.lines() == ["Monitored is starting up"]  # "startup" comes before main()
    lines = stdout.lines()
    assert len(lines) == 2, lines
    match = re.fullmatch(r"Monitored ran for (\d+\.\d\d) seconds", lines[1])
    assert match, lines
    assert 0.0 <= float(match[1]) < JOIN_TIMEOUT
    assert worker.state is WorkerState.STOPPED


@pytest.mark.no_processes
def test_monitored_worker_reports_an_error_between_startup_and_shutdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stdout = record_stdout(monkeypatch)
    worker = gw.FailingMonitoredWorker(name="Monitored")
    with started(worker, timeout=JOIN_TIMEOUT):
        assert worker.join(JOIN_TIMEOUT)  # main() fails at once: the worker ends by itself
    assert worker.event_names() == ["startup", "error", "shutdown"]
    _, error = worker.events[1]
    assert isinstance(error["exception"], RuntimeError)
    assert error["phase"] == "main"
    lines = stdout.lines()
    assert lines[:2] == ["Monitored is starting up", "Monitored error: disk full"]
    assert re.fullmatch(r"Monitored ran for \d+\.\d\d seconds", lines[2]), lines
    assert worker.state is WorkerState.FAILED
    assert isinstance(worker.exception, RuntimeError)
    assert str(worker.exception) == "disk full"


# ---------------------------------------------------------------------------
# The Server Class
# ---------------------------------------------------------------------------


def test_basic_server_usage_runs_a_thread_and_a_process_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stdout = record_stdout(monkeypatch)
    # Create server
    server = Server(name="MyAppServer")

    # Add workers
    server.add_worker(gw.Worker1(name="ThreadWorker-1"))
    server.add_worker(gw.RecordedWorker2(name="ProcessWorker-1", record_dir=tmp_path))

    # Start all workers and run until interrupted (here: until the test saw both working)
    status, stopper = run_forever_until(
        server,
        lambda: (
            "ThreadWorker-1 working..." in stdout.text
            and "ProcessWorker-1 processing..." in child_stdout(tmp_path)
        ),
    )

    assert stopper.condition_met, (
        f"thread printed {stdout.text!r}, process printed {child_stdout(tmp_path)!r}"
    )
    assert status == 0
    assert server.join_all(timeout=0) == []
    assert [w.state for w in server.workers] == [WorkerState.STOPPED, WorkerState.STOPPED]
    assert child_events(tmp_path) == ["setup", "startup", "teardown", "shutdown"]
    assert server.workers[1].exitcode == 0


def test_server_methods_start_stop_join_all_then_run_forever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stdout = record_stdout(monkeypatch)
    worker1 = gw.Worker1(name="ThreadWorker-1")
    worker2 = gw.RecordedWorker2(name="ProcessWorker-1", record_dir=tmp_path)
    try:
        # Create a server
        server = Server(name="MyServer")

        # Add workers
        server.add_worker(worker1)
        server.add_worker(worker2)

        # Start all workers
        server.start()
        assert wait_for(lambda: worker1.state is WorkerState.RUNNING and worker2.state is WorkerState.RUNNING)

        # Stop all workers
        server.stop()

        # Wait for all workers to finish
        assert server.join_all(timeout=5.0) == []
        assert [worker1.state, worker2.state] == [WorkerState.STOPPED, WorkerState.STOPPED]
        assert child_events(tmp_path) == ["setup", "startup", "teardown", "shutdown"]
        printed_before = stdout.text.count("ThreadWorker-1 working...")
        assert printed_before >= 1

        # Run until interrupted (combines start, wait, stop, join): the workers run a second time.
        status, stopper = run_forever_until(
            server,
            lambda: child_events(tmp_path).count("startup") == 2 and worker1.state is WorkerState.RUNNING,
        )
    finally:
        stop_and_join(worker1, worker2)
    assert stopper.condition_met, child_events(tmp_path)
    assert status == 0
    assert child_events(tmp_path) == ["setup", "startup", "teardown", "shutdown"] * 2
    assert stdout.text.count("ThreadWorker-1 working...") > printed_before
    assert [worker1.state, worker2.state] == [WorkerState.STOPPED, WorkerState.STOPPED]


class IdleWorker(ThreadWorker):
    """Waits until stopped; stops within milliseconds."""

    def main(self) -> None:
        while self.sleep(60):
            pass


@pytest.mark.no_processes
def test_server_join_all_returns_once_the_workers_have_finished() -> None:
    """``server.stop(); server.join_all(timeout=...)`` returns when the workers end, not at the timeout.

    Repeated, because a thread worker's end races with ``join_all()`` noticing it.
    """
    for attempt in range(500):
        server = Server(name="MyServer")
        worker = server.add_worker(IdleWorker(name="Idle"))
        server.start()
        server.stop()
        began = time.monotonic()
        still_alive = server.join_all(timeout=2.0)
        took = time.monotonic() - began
        assert still_alive == []
        assert worker.state is WorkerState.STOPPED
        assert took < 1.0, f"attempt {attempt}: join_all() took {took:.2f}s; the worker had ended at once"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.no_processes
def test_graceful_worker_run_forever_stops_on_a_signal(tmp_path: Path, signum: signal.Signals) -> None:
    with ScriptRun([str(GUIDE_WORKERS), "graceful"], stderr_path=tmp_path / "stderr.txt") as script:
        script.read_until("Worker-1 is processing\n")
        signalled = time.monotonic()
        script.proc.send_signal(signum)
        output = script.finish()
        took = time.monotonic() - signalled
    assert script.returncode == 0, script.describe()
    match = re.search(r"^Processed (\d+) items before shutdown$", output, re.MULTILINE)
    assert match, script.describe()
    assert int(match[1]) >= 1
    assert "run_forever() returned 0" in output
    # The worker stops within its 0.5 s sleep; the server would give up after shutdown_timeout (10 s).
    assert took < 20.0


def test_basic_server_usage_runs_until_interrupted(tmp_path: Path) -> None:
    with ScriptRun(
        [str(GUIDE_WORKERS), "basic"],
        stderr_path=tmp_path / "stderr.txt",
        env={"PYTHONUNBUFFERED": "1"},  # the guide's print() calls, seen as they happen
    ) as script:
        script.read_until("ThreadWorker-1 working...\n")
        script.read_until("ProcessWorker-1 processing...\n")
        script.proc.send_signal(signal.SIGINT)  # Ctrl+C
        output = script.finish()
    assert script.returncode == 0, script.describe()
    assert "run_forever() returned 0" in output
    assert "Traceback" not in script.stderr, script.describe()


# ---------------------------------------------------------------------------
# Async Support
# ---------------------------------------------------------------------------


@pytest.mark.no_processes
def test_async_api_worker_runs_every_hook_on_one_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    stdout = record_stdout(monkeypatch)
    worker = gw.RecordingAsyncAPIWorker(name="AsyncAPI")
    with started(worker, timeout=JOIN_TIMEOUT):
        assert wait_for(lambda: len(worker.processed) >= 2), stdout.text
    assert worker.state is WorkerState.STOPPED, worker.exception
    assert worker.event_names() == ["startup", "shutdown"]
    assert worker.session.closed  # async teardown ran
    assert len(worker.loops) == 1  # setup, lifecycle, main and teardown shared one loop
    assert worker.session.loop is worker.session.close_loop
    lines = stdout.lines()
    assert lines[0] == "Async event: startup"
    assert lines[-1] == "Async event: shutdown"
    assert lines[1:-1] == ["Processed: {'status': 'ok'}"] * len(worker.processed)


@pytest.mark.no_processes
def test_async_api_worker_as_written_fails_in_teardown(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guide's placeholder session is ``object()``, which has no ``close()``: the error is reported."""

    stdout = record_stdout(monkeypatch)

    class AsWritten(gw.RecordEvents, gw.AsyncAPIWorker):
        pass

    worker = AsWritten(name="AsyncAPI")
    with started(worker, timeout=JOIN_TIMEOUT):
        assert stdout.wait_for_text("Processed: {'status': 'ok'}")
    assert worker.event_names() == ["startup", "error", "shutdown"]  # shutdown still comes
    assert worker.events[1][1]["phase"] == "teardown"
    assert isinstance(worker.exception, AttributeError)
    assert worker.state is WorkerState.FAILED
    assert stdout.lines()[-2:] == ["Async event: error", "Async event: shutdown"]


async def my_coroutine():
    """Example async function."""
    await asyncio.sleep(1)
    return "Done"


@pytest.mark.no_processes
def test_run_async_safely_without_a_running_loop() -> None:
    # Safely run coroutine (creates event loop if needed)
    assert run_async_safely(my_coroutine()) == "Done"


@pytest.mark.no_processes
def test_run_async_safely_inside_a_running_loop_returns_a_task() -> None:
    async def quick() -> str:
        await asyncio.sleep(0.01)
        return "Done"

    async def caller() -> str:
        task = run_async_safely(quick())  # "If event loop is running: Creates task in existing loop"
        assert isinstance(task, asyncio.Task)
        assert task.get_loop() is asyncio.get_running_loop()
        return await task

    assert asyncio.run(caller()) == "Done"


@pytest.mark.no_processes
def test_set_uvloop_if_available_makes_async_workers_use_uvloop() -> None:
    was_enabled = uvloop_enabled()
    installed = importlib.util.find_spec("uvloop") is not None
    try:
        # Enable uvloop for all async operations
        assert set_uvloop_if_available() is installed

        # Now create async workers - they'll use uvloop automatically
        worker = gw.RecordingAsyncAPIWorker(name="FastWorker")
        with started(worker, timeout=JOIN_TIMEOUT):
            assert wait_for(lambda: len(worker.processed) >= 1)
    finally:
        if not was_enabled:
            use_default_loop()
    assert worker.state is WorkerState.STOPPED, worker.exception
    (loop,) = worker.loops
    if installed:
        import uvloop

        assert isinstance(loop, uvloop.Loop)
    else:
        assert type(loop).__module__.startswith("asyncio")


# ---------------------------------------------------------------------------
# Pattern 1: Background Job Processor
# ---------------------------------------------------------------------------


@pytest.mark.no_processes
def test_job_processor_pattern_processes_every_job_once(monkeypatch: pytest.MonkeyPatch) -> None:
    stdout = record_stdout(monkeypatch)
    server, job_queue = gw.make_job_server()
    try:
        # Process jobs
        server.start()
        # job_queue.join() has no timeout: wait, bounded, until it is sure to return at once.
        assert wait_for(lambda: job_queue.unfinished_tasks == 0), stdout.text
        job_queue.join()  # Wait for all jobs to complete
        server.stop()
        assert server.join_all() == []
    finally:
        server.stop()
        server.join_all(JOIN_TIMEOUT)
    lines = stdout.lines()
    jobs = sorted(re.fullmatch(r"Worker-[12] processing: (Job-\d)", line)[1] for line in lines)
    assert jobs == [f"Job-{i}" for i in range(10)]  # each job exactly once
    assert [w.state for w in server.workers] == [WorkerState.STOPPED, WorkerState.STOPPED]


# ---------------------------------------------------------------------------
# Best Practices
# ---------------------------------------------------------------------------


@pytest.mark.no_processes
def test_good_loop_checks_is_running_and_stops() -> None:
    worker = gw.GoodLoopWorker(name="Good")
    with started(worker, timeout=JOIN_TIMEOUT):
        assert wait_for(lambda: worker.work_done >= 1)
        worker.stop()
        assert worker.join(5.0)  # within the 1 s sleep of the loop, plus slack
    assert worker.state is WorkerState.STOPPED


def test_bad_loop_never_stops_gracefully_so_its_process_is_ended(tmp_path: Path) -> None:
    worker = gw.BadLoopWorker(name="Bad", record_dir=tmp_path, stop_timeout=0.5)
    worker.start()
    try:
        assert wait_for(lambda: "working" in child_stdout(tmp_path))
        worker.stop()
        assert worker.join(JOIN_TIMEOUT)
    finally:
        worker.stop()
        if not worker.join(JOIN_TIMEOUT):
            worker.kill()
            worker.join(JOIN_TIMEOUT)
    assert worker.exitcode == 124  # ended after ignoring the stop for stop_timeout
    assert worker.state is WorkerState.FAILED
    assert isinstance(worker.exception, TimeoutError)
    assert "teardown" not in child_events(tmp_path)


@pytest.mark.no_processes
def test_clean_up_resources_in_teardown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database) -> None:
    monkeypatch.chdir(tmp_path)  # the guide opens "data.txt" in the current directory
    worker = gw.ResourceWorker(name="Resources")
    with started(worker, timeout=JOIN_TIMEOUT):
        assert wait_for(lambda: worker.state is WorkerState.RUNNING)
    (connection,) = database.connections
    assert connection.closed
    assert worker.file_handle.closed
    assert (tmp_path / "data.txt").read_text() == "row\n"  # closed, so flushed
    assert worker.event_names() == ["startup", "shutdown"]
    assert worker.state is WorkerState.STOPPED


@pytest.mark.no_processes
def test_clean_up_after_setup_failed_before_any_resource(tmp_path: Path, monkeypatch, database) -> None:
    monkeypatch.chdir(tmp_path)
    database.fail_next = True
    worker = gw.ResourceWorker(name="Resources")
    with started(worker, timeout=JOIN_TIMEOUT):
        assert worker.join(JOIN_TIMEOUT)
    # teardown() ran and its hasattr() checks kept it from failing: one error, from setup.
    assert worker.event_names() == ["error", "shutdown"]
    assert worker.events[0][1]["phase"] == "setup"
    assert isinstance(worker.exception, ConnectionError)
    assert worker.state is WorkerState.FAILED
    assert not (tmp_path / "data.txt").exists()


@pytest.mark.no_processes
def test_clean_up_after_setup_failed_half_way(tmp_path: Path, monkeypatch, database) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.txt").mkdir()  # open("data.txt", "w") fails after the connection was made
    worker = gw.ResourceWorker(name="Resources")
    with started(worker, timeout=JOIN_TIMEOUT):
        assert worker.join(JOIN_TIMEOUT)
    (connection,) = database.connections
    assert connection.closed  # teardown released what setup had acquired
    assert worker.event_names() == ["error", "shutdown"]
    assert worker.events[0][1]["phase"] == "setup"
    assert isinstance(worker.exception, IsADirectoryError)
    assert worker.state is WorkerState.FAILED


@pytest.mark.no_processes
def test_errors_propagate_to_the_lifecycle_handler_in_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    stdout = record_stdout(monkeypatch)
    worker = gw.RiskyThreadWorker(name="Risky")
    with started(worker, timeout=JOIN_TIMEOUT):
        assert worker.join(JOIN_TIMEOUT)
    assert stdout.lines() == ["Connection failed: connection refused, retrying..."]  # handled, retried
    assert worker.attempts == 2
    assert worker.event_names() == ["startup", "error", "shutdown"]
    _, error = worker.events[1]
    assert error["phase"] == "main"
    assert isinstance(error["exception"], ValueError)
    assert worker.exception is error["exception"]
    assert worker.state is WorkerState.FAILED


def test_errors_propagate_to_the_lifecycle_handler_in_a_process(tmp_path: Path) -> None:
    worker = gw.RiskyProcessWorker(name="Risky", record_dir=tmp_path)
    with started(worker, timeout=JOIN_TIMEOUT):
        assert worker.join(JOIN_TIMEOUT)
    assert child_stdout(tmp_path) == "Connection failed: connection refused, retrying...\n"
    assert child_events(tmp_path) == [
        "setup",
        "startup",
        "error main ValueError: bad record",
        "teardown",
        "shutdown",
    ]
    assert worker.state is WorkerState.FAILED
    assert worker.exitcode == 1
    exc = worker.exception
    assert isinstance(exc, ValueError)  # the child's exception, pickled back to the parent
    assert str(exc) == "bad record"
    assert isinstance(exc.__cause__, RemoteTraceback)
    assert "do_risky_operation" in str(exc.__cause__)  # where in the child it was raised


@pytest.mark.no_processes
def test_lifecycle_events_for_monitoring(caplog: pytest.LogCaptureFixture) -> None:
    gw.metrics.counts.clear()
    caplog.set_level(logging.ERROR, logger="guide_workers")
    good = gw.MonitoringWorker(name="Good")
    bad = gw.MonitoringWorker(name="Bad", fail_with=ConnectionError("lost the broker"))
    good.start()
    bad.start()
    try:
        assert bad.join(JOIN_TIMEOUT)
        assert wait_for(lambda: good.state is WorkerState.RUNNING)
    finally:
        stop_and_join(good, bad)
    assert gw.metrics.counts == {"worker.started": 2, "worker.stopped": 2, "worker.errors": 1}
    messages = [r.getMessage() for r in caplog.records if r.name == "guide_workers"]
    assert messages == ["Worker error: lost the broker"]
    assert (good.state, bad.state) == (WorkerState.STOPPED, WorkerState.FAILED)


@pytest.mark.no_processes
def test_context_for_shared_state_in_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    stdout = record_stdout(monkeypatch)
    worker = gw.ContextThreadWorker(name="Context")
    with started(worker, timeout=JOIN_TIMEOUT):
        assert wait_for(lambda: getattr(worker.context, "processed_count", 0) >= 3)
    (line,) = stdout.lines()
    match = re.fullmatch(r"Processed (\d+) items at (\d+\.\d\d)/sec", line)
    assert match, line
    assert int(match[1]) == worker.context.processed_count >= 3
    assert float(match[2]) > 0
    assert worker.state is WorkerState.STOPPED


def test_context_of_a_process_worker_lives_in_the_child(tmp_path: Path) -> None:
    worker = gw.ContextProcessWorker(name="Context", record_dir=tmp_path)
    with started(worker, timeout=JOIN_TIMEOUT):
        assert wait_for(lambda: worker.state is WorkerState.RUNNING)
    assert re.fullmatch(r"Processed \d+ items at \d+\.\d\d/sec\n", child_stdout(tmp_path)), child_stdout(
        tmp_path
    )
    assert vars(worker.context) == {}  # the child's changes to its context never reach the parent
    assert worker.state is WorkerState.STOPPED


def test_process_data():
    assert gw.DataWorker.process_data("hello") == "HELLO"


@pytest.mark.no_processes
def test_data_worker_runs_its_tested_logic() -> None:
    worker = gw.ListDataWorker(name="Data", items=["a", "bc"])
    with started(worker, timeout=JOIN_TIMEOUT):
        assert worker.join(JOIN_TIMEOUT)  # it stops itself when the list is empty
    assert worker.saved == ["A", "BC"]
    assert worker.state is WorkerState.STOPPED
