"""Server supervision: restart policies and strategies, backoff, intensity, liveness, events."""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from spoc.workers import Backoff, Server, ThreadWorker, WorkerHungError, WorkerState
from targets import (
    CrashesOnStart,
    Events,
    HangsFirstTime,
    HoldsGilFirstTime,
    MarkingSleeper,
    Recorder,
    marks,
    wait_for,
)

NO_JITTER = Backoff(base=0.1, factor=2.0, cap=1.0, jitter=0.0)


class CrashingSetup(ThreadWorker):
    """Records when each setup ran, then fails."""

    def __init__(self, name: str = "crasher") -> None:
        super().__init__(name)
        self.started: list[float] = []

    def setup(self) -> None:
        self.started.append(time.monotonic())
        raise RuntimeError("cannot start")

    def main(self) -> None:
        pass


class Counted(ThreadWorker):
    """Counts its starts; fails in main on the runs listed in ``fail_on``."""

    def __init__(self, name: str, fail_on: tuple[int, ...] = ()) -> None:
        super().__init__(name)
        self.starts = 0
        self.fail_on = fail_on

    def setup(self) -> None:
        self.starts += 1

    def main(self) -> None:
        if self.starts in self.fail_on:
            raise RuntimeError(f"{self.name} fails on run {self.starts}")
        while self.sleep(3600):
            pass


@pytest.mark.no_processes
def test_backoff_then_give_up_after_the_restart_intensity() -> None:
    events = Events()
    server = Server("crashy", backoff=NO_JITTER, max_restarts=4, restart_window=60, on_event=events)
    worker = server.add_worker(CrashingSetup(), restart="always")
    assert isinstance(worker, CrashingSetup)
    assert server.run_forever() == 1
    assert server.gave_up
    starts = worker.started
    assert len(starts) == 5  # the first run and 4 restarts; the 5th failure exceeds the intensity
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    for gap, nominal in zip(gaps, [0.1, 0.2, 0.4, 0.8], strict=True):
        assert nominal * 0.9 <= gap <= nominal + 0.25, (gaps, nominal)  # never early; late only by load
    assert len(events.of("gave_up")) == 1
    assert [e.delay for e in events.of("restart")] == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert all(isinstance(e.exception, RuntimeError) for e in events.of("restart"))


def test_a_process_crashing_on_start_is_restarted_then_given_up() -> None:
    events = Events()
    server = Server("crashy", backoff=NO_JITTER, max_restarts=2, on_event=events)
    server.add_worker(CrashesOnStart("crash-process"), restart="on-failure")
    assert server.run_forever() == 1
    assert server.status()[0]["restarts"] == 2
    assert len(events.of("gave_up")) == 1
    assert "cannot start" in str(server.status()[0]["last_error"])


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("one_for_one", {"a": 1, "b": 2, "c": 1}),
        ("one_for_all", {"a": 2, "b": 2, "c": 2}),
        ("rest_for_one", {"a": 1, "b": 2, "c": 2}),
    ],
)
@pytest.mark.no_processes
def test_strategies_restart_exactly_the_right_workers(strategy: Any, expected: dict[str, int]) -> None:
    server = Server("strategic", strategy=strategy, backoff=NO_JITTER)
    workers = {
        name: server.add_worker(Counted(name, fail_on=(1,) if name == "b" else ()), restart="always")
        for name in "abc"
    }
    server.start()
    try:

        def settled() -> bool:
            status = server.status()
            return (
                all(entry["state"] == "running" for entry in status)
                and status[1]["restarts"] == 1
                and all(isinstance(w, Counted) and w.starts == expected[n] for n, w in workers.items())
            )

        wait_for(settled, timeout=10)
    finally:
        server.stop()
        assert server.join_all(5) == []
    assert {n: w.starts for n, w in workers.items() if isinstance(w, Counted)} == expected


@pytest.mark.no_processes
def test_a_never_worker_is_stopped_with_its_group_but_not_restarted() -> None:
    server = Server("mixed", strategy="one_for_all", backoff=NO_JITTER)
    temporary = server.add_worker(Counted("temporary"), restart="never")
    failing = server.add_worker(Counted("failing", fail_on=(1,)), restart="on-failure")
    server.start()
    try:
        assert isinstance(temporary, Counted) and isinstance(failing, Counted)
        wait_for(lambda: failing.starts == 2 and failing.state is WorkerState.RUNNING)
        wait_for(lambda: temporary.state is WorkerState.STOPPED)
        assert temporary.starts == 1
    finally:
        server.stop()
        server.join_all(5)


def test_a_killed_process_is_restarted_and_the_event_names_the_signal(tmp_path: Path) -> None:
    events = Events()
    server = Server("killable", backoff=NO_JITTER, on_event=events)
    worker = server.add_worker(MarkingSleeper("victim", str(tmp_path)), restart="always")
    server.start()
    try:
        wait_for(lambda: worker.state is WorkerState.RUNNING, 30)
        first_pid = worker.pid
        assert first_pid is not None
        killed_at = time.monotonic()
        os.kill(first_pid, signal.SIGKILL)
        wait_for(lambda: worker.pid != first_pid, 30)  # a new process was started
        restarted_in = time.monotonic() - killed_at
        wait_for(lambda: worker.state is WorkerState.RUNNING, 30)
        ended = [e for e in events.of("state", "victim") if e.state is WorkerState.FAILED]
        assert len(ended) == 1 and ended[0].signal == "SIGKILL" and ended[0].exitcode == -9
        restart = events.of("restart", "victim")
        assert len(restart) == 1 and restart[0].signal == "SIGKILL"
    finally:
        server.stop()
        assert server.join_all(10) == []
    assert restarted_in < 1.0


def test_a_hung_process_is_replaced_and_its_stack_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events = Events()
    server = Server("watchful", backoff=NO_JITTER, on_event=events)
    server.add_worker(HangsFirstTime("sleepy", str(tmp_path)), heartbeat_timeout=0.5)
    with caplog.at_level(logging.INFO, logger="spoc.workers"):
        server.start()
        try:
            wait_for(lambda: "sleepy.hung" in marks(tmp_path), 30)
            hung_at = time.monotonic()
            wait_for(lambda: len([m for m in marks(tmp_path) if m.startswith("sleepy.main.")]) == 2, 10)
            replaced_in = time.monotonic() - hung_at
            wait_for(lambda: any("its threads' stacks" in r.getMessage() for r in caplog.records), 5)
        finally:
            server.stop()
            assert server.join_all(10) == []
    assert replaced_in < 2.0
    stacks = next(r.getMessage() for r in caplog.records if "its threads' stacks" in r.getMessage())
    assert "time.sleep(10**6)" in stacks
    hung = events.of("hung", "sleepy")
    assert len(hung) == 1 and isinstance(hung[0].exception, WorkerHungError)
    assert server.status()[0]["restarts"] == 1


def test_a_hung_process_holding_the_gil_is_killed_on_schedule_with_nothing_else_happening(
    tmp_path: Path,
) -> None:
    # It cannot answer terminate(): the SIGKILL one second after must come from the
    # supervisor's own deadline, as no other event wakes it.
    events = Events()
    server = Server("watchful", backoff=NO_JITTER, on_event=events)
    server.add_worker(HoldsGilFirstTime("regex", str(tmp_path)), heartbeat_timeout=0.5)
    server.start()
    try:
        wait_for(lambda: events.of("hung", "regex"), 30)
        hung_at = time.monotonic()
        killed = wait_for(
            lambda: [e for e in events.of("state", "regex") if e.state is WorkerState.FAILED], 10
        )
        killed_in = time.monotonic() - hung_at
        wait_for(lambda: len([m for m in marks(tmp_path) if m.startswith("regex.main.")]) == 2, 10)
    finally:
        server.stop()
        assert server.join_all(10) == []
    assert killed[0].signal == "SIGKILL"
    assert 0.5 < killed_in < 3.0  # the docs: SIGKILL one second after the terminate
    assert server.status()[0]["restarts"] == 1


@pytest.mark.no_processes
def test_a_hung_thread_is_abandoned_and_replaced(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()

    class Stuck(ThreadWorker):
        def __init__(self) -> None:
            super().__init__("stuck")
            self.runs = 0

        def main(self) -> None:
            self.runs += 1
            if self.runs == 1:
                release.wait(30)  # not a framework wait, no heartbeat
                return
            while self.sleep(3600):
                pass

    server = Server("watchful", backoff=NO_JITTER)
    worker = server.add_worker(Stuck(), restart="on-failure", heartbeat_timeout=0.3)
    assert isinstance(worker, Stuck)
    first_thread = None
    with caplog.at_level(logging.ERROR, logger="spoc.workers.server"):
        server.start()
        try:
            first_thread = worker.thread
            wait_for(lambda: worker.runs == 2 and worker.state is WorkerState.RUNNING, 10)
            assert worker.thread is not first_thread
            assert first_thread is not None and first_thread.is_alive()  # abandoned, still stuck
            assert isinstance(worker.exception, type(None))  # the new run is healthy
        finally:
            server.stop()
            assert server.join_all(5) == []
            release.set()
            if first_thread is not None:
                first_thread.join(5)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "'stuck' is hung" in logged and "release.wait(30)" in logged
    assert worker.state is WorkerState.STOPPED  # the abandoned run's late report was ignored


@pytest.mark.no_processes
def test_heartbeats_keep_a_busy_worker_alive() -> None:
    class Busy(ThreadWorker):
        def main(self) -> None:
            deadline = time.monotonic() + 0.6
            while self.is_running and time.monotonic() < deadline:
                time.sleep(0.02)  # busy, outside the framework's waits...
                self.heartbeat()  # ...but saying so

    events = Events()
    server = Server("busy", on_event=events)
    server.add_worker(Busy(), heartbeat_timeout=0.2)
    assert server.run_forever() == 0
    assert events.of("hung") == []


@pytest.mark.no_processes
def test_a_restart_made_moot_by_an_outside_start_is_dropped_without_spinning() -> None:
    """A worker the user starts again while its restart is pending is not restarted once more,
    and the supervisor does not spin on the stale restart time (it used to look in a busy loop
    for as long as the worker ran)."""
    events = Events()
    server = Server("moot", backoff=Backoff(base=0.2, jitter=0.0), on_event=events)
    worker = server.add_worker(Counted("restarted-by-hand", fail_on=(1,)), restart="on-failure")
    looks = itertools.count()
    original = worker.supervision.waitables

    def counted() -> list[Any]:
        next(looks)
        return original()

    worker.supervision.waitables = counted  # type: ignore[method-assign]
    server.start()
    try:
        assert wait_for(lambda: events.of("restart"), 10.0)  # the restart is scheduled in 0.2 s...
        worker.start()  # ...but someone else starts it first
        assert wait_for(lambda: worker.state is WorkerState.RUNNING, 10.0)
        time.sleep(0.4)  # the scheduled time passes (measuring, not synchronising)
        before = next(looks)
        time.sleep(0.3)
        assert next(looks) - before < 20  # a handful of looks at most, not a busy loop
        assert server.status()[0]["restarts"] == 0 and worker.starts == 2
        assert worker.state is WorkerState.RUNNING
    finally:
        server.stop()
        assert server.join_all(10.0) == []


@pytest.mark.no_processes
def test_a_never_worker_that_fails_ends_run_forever_with_1() -> None:
    server = Server()
    server.add_worker(Counted("fails", fail_on=(1,)))  # restart="never" by default
    assert server.run_forever() == 1
    assert server.status()[0]["restarts"] == 0


@pytest.mark.no_processes
def test_the_restart_policy_can_come_from_the_class() -> None:
    class Permanent(Counted):
        restart = "always"

    server = Server(backoff=NO_JITTER)
    worker = server.add_worker(Permanent("permanent", fail_on=(1, 2)))
    assert isinstance(worker, Permanent)
    server.start()
    try:
        wait_for(lambda: worker.starts == 3 and worker.state is WorkerState.RUNNING)
    finally:
        server.stop()
        server.join_all(5)


@pytest.mark.parametrize(
    "bad", [{"restart": "sometimes"}, {"heartbeat_timeout": 0}, {"heartbeat_timeout": -1}]
)
@pytest.mark.no_processes
def test_add_worker_checks_supervision_options(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Server().add_worker(Counted("x"), **bad)


@pytest.mark.no_processes
def test_server_checks_supervision_options() -> None:
    with pytest.raises(ValueError, match="strategy"):
        Server(strategy="all_for_one")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_restarts"):
        Server(max_restarts=-1)
    with pytest.raises(TypeError, match="backoff"):
        Server(backoff=0.1)  # type: ignore[arg-type]


def test_every_state_change_of_a_process_reaches_the_listeners(tmp_path: Path) -> None:
    events = Events()
    server = Server("observed", on_event=events)
    worker = server.add_worker(MarkingSleeper("observed", str(tmp_path)))
    server.start()
    wait_for(lambda: worker.state is WorkerState.RUNNING, 30)
    server.stop()
    assert server.join_all(10) == []
    changes = [(e.previous, e.state) for e in events.of("state", "observed")]
    assert changes == [
        (WorkerState.NEW, WorkerState.STARTING),
        (WorkerState.STARTING, WorkerState.RUNNING),
        (WorkerState.RUNNING, WorkerState.STOPPING),
        (WorkerState.STOPPING, WorkerState.STOPPED),
    ]


def test_status_is_a_json_snapshot(tmp_path: Path) -> None:
    server = Server("status")
    thread = server.add_worker(Recorder("thread"), heartbeat_timeout=5)
    server.add_worker(MarkingSleeper("process", str(tmp_path)), restart="always")
    server.start()
    try:
        assert isinstance(thread, Recorder) and thread.in_main.wait(5)
        # Running, then idle in the framework's wait, where the heartbeat reads 0.
        wait_for(lambda: all(e["last_heartbeat"] == 0 for e in server.status()), 30)
        status = json.loads(json.dumps(server.status()))
    finally:
        server.stop()
        server.join_all(10)
    assert [e["name"] for e in status] == ["thread", "process"]
    thread_entry, process_entry = status
    assert thread_entry["kind"] == "thread" and thread_entry["pid"] is None
    assert process_entry["kind"] == "process" and isinstance(process_entry["pid"], int)
    assert process_entry["restart"] == "always" and process_entry["restarts"] == 0
    for entry in status:
        assert entry["state"] == "running" and entry["uptime"] >= 0
        expected = {"name", "kind", "state", "pid", "restarts", "last_error", "uptime", "last_heartbeat"}
        assert set(entry) >= expected


@pytest.mark.no_processes
def test_status_of_many_workers_is_quick() -> None:
    server = Server("many")
    for i in range(100):
        server.add_worker(Recorder(f"w{i}"))
    server.start()
    try:
        wait_for(lambda: all(e["state"] == "running" for e in server.status()), 30)
        begun = time.perf_counter()
        for _ in range(10):
            server.status()
        per_call = (time.perf_counter() - begun) / 10
    finally:
        server.stop()
        server.join_all(10)
    assert per_call < 0.1  # about 1 ms here; the benchmark reports the real figure


@pytest.mark.no_processes
def test_sigusr1_logs_status_and_stacks_without_stopping(caplog: pytest.LogCaptureFixture) -> None:
    class Pinger(ThreadWorker):
        def main(self) -> None:
            os.kill(os.getpid(), signal.SIGUSR1)
            self.sleep(0.3)  # time for the status to be logged before the stop below
            os.kill(os.getpid(), signal.SIGTERM)
            while self.sleep(3600):
                pass

    server = Server("pinged")
    server.add_worker(Pinger())
    with caplog.at_level(logging.INFO, logger="spoc.workers.server"):
        assert server.run_forever() == 0
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "server 'pinged' status:" in logged and "thread 'Pinger'" in logged
    assert logged.index("status:") < logged.index("received SIGTERM")
