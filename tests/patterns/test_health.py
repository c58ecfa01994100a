"""HealthMonitor: restarts failed workers with backoff, leaves stopped and never-started ones alone.

Tests synchronise on the monitor's own events (recorded by a test subclass's
``lifecycle``): a "canary" worker that fails on purpose proves the monitor
has looked at every worker since, so "was not restarted" is checked after
a restart the test saw, not after a sleep.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import threading
import time
from typing import Any

import pytest

import patterns_targets as pt
from spoc.workers import AbstractWorker, Backoff, ThreadWorker, WorkerHungError, WorkerState
from spoc.workers.patterns import HealthMonitor

JOIN = 15.0
NO_JITTER = Backoff(base=0.1, factor=2.0, cap=1.0, jitter=0.0)


class Recording(HealthMonitor):
    """Puts ``(time, event_type, data)`` into ``self.events`` (a queue.Queue) for each event."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.events: queue.Queue[tuple[float, str, dict[str, Any]]] = queue.Queue()

    def lifecycle(self, event_type: str, **data: Any) -> None:
        self.events.put((time.monotonic(), event_type, data))

    def next_event(self, event_type: str, worker: str) -> tuple[float, dict[str, Any]]:
        """Wait for the next event of that type about that worker (others are skipped)."""
        deadline = time.monotonic() + JOIN
        while True:
            at, kind, data = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            if kind == event_type and data.get("worker") == worker:
                return at, data


class AsyncRecording(Recording):
    """The same, with an ``async def lifecycle`` (the monitor's loop then runs async)."""

    async def lifecycle(self, event_type: str, **data: Any) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        self.events.put((time.monotonic(), event_type, data))


class ReturnsAtOnce(ThreadWorker):
    """Ends STOPPED by itself (main returns), counting its starts."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.starts = 0

    def main(self) -> None:
        self.starts += 1


def shut(*workers: AbstractWorker) -> None:
    for worker in workers:
        worker.stop()
    for worker in workers:
        worker.join(JOIN)


def flaky(kind: str, name: str, fail_times: int, start_method: str) -> tuple[Any, Any]:
    """A worker failing its first ``fail_times`` starts, and a way to read its start count."""
    if kind == "thread":
        worker: Any = pt.FlakyThread(name, fail_times)
        return worker, lambda: len(worker.started)
    starts = multiprocessing.get_context(start_method).Value("i", 0)
    return pt.FlakyProcess(name, starts, fail_times), lambda: starts.value


@pytest.mark.parametrize(
    ("kind", "monitor_cls"),
    [("thread", Recording), ("process", Recording), ("thread", AsyncRecording)],
    ids=["thread", "process", "thread-async-monitor"],
)
def test_a_failing_worker_is_restarted_with_backoff(
    kind: str, monitor_cls: type[Recording], start_method: str
) -> None:
    worker, starts = flaky(kind, f"flaky-{kind}", 2, start_method)
    monitor = monitor_cls("monitor", [worker], interval=0.02, backoff=NO_JITTER)
    monitor.start()
    worker.start()
    try:
        for attempt, delay in ((1, 0.1), (2, 0.2)):
            failed_at, error = monitor.next_event("error", worker.name)
            assert isinstance(error["exception"], RuntimeError), error
            assert str(error["exception"]) == f"start {attempt} fails"
            restarted_at, restart = monitor.next_event("restart", worker.name)
            assert (restart["attempt"], restart["delay"]) == (attempt, delay)
            # The error event is recorded just after the look that scheduled the restart, so on a
            # loaded machine it may come late by a scheduling delay: half the backoff is the bound
            # that still tells a backoff from none (and the delay itself is checked above).
            assert delay / 2 <= restarted_at - failed_at < delay + 1.0
        # RUNNING comes just before main() counts the start: wait for the count itself.
        pt.wait_for(lambda: starts() == 3, JOIN)  # by the test once, by the monitor twice: the same object
        assert worker.state is WorkerState.RUNNING
        assert monitor.restarts == {worker.name: 2}
    finally:
        shut(monitor, worker)
    assert monitor.state is WorkerState.STOPPED


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_workers_stopped_on_purpose_or_never_started_are_left_alone(kind: str, start_method: str) -> None:
    stopped, stopped_starts = flaky(kind, "stopped", 0, start_method)
    never, _ = flaky(kind, "never-started", 0, start_method)
    canary, _ = flaky("thread", "canary", 1, start_method)
    monitor = Recording("monitor", [stopped, never, canary], interval=0.02, backoff=NO_JITTER)
    stopped.start()
    monitor.start()
    try:
        pt.wait_for(lambda: stopped.state is WorkerState.RUNNING, JOIN)
        stopped.stop()
        assert stopped.join(JOIN)
        canary.start()  # fails once, after `stopped` ended: the monitor looks at everyone again
        monitor.next_event("restart", "canary")
        pt.wait_for(lambda: canary.state is WorkerState.RUNNING, JOIN)
        assert stopped.state is WorkerState.STOPPED and stopped_starts() == 1
        assert never.state is WorkerState.NEW
        assert monitor.restarts == {"canary": 1}
    finally:
        shut(monitor, stopped, canary)


@pytest.mark.parametrize("policy", ["on-failure", "always"])
def test_a_worker_that_returns_by_itself_is_restarted_only_with_always(policy: str) -> None:
    quitter = ReturnsAtOnce("quitter")
    canary, _ = flaky("thread", "canary", 1, "fork")
    monitor = Recording("monitor", [quitter, canary], interval=0.02, backoff=NO_JITTER, restart=policy)  # type: ignore[arg-type]
    monitor.start()
    try:
        quitter.start()
        assert quitter.join(JOIN)
        if policy == "always":
            _, restart = monitor.next_event("restart", "quitter")
            assert restart["attempt"] == 1
            pt.wait_for(lambda: quitter.starts >= 2, JOIN)
        else:
            canary.start()
            monitor.next_event("restart", "canary")
            assert quitter.starts == 1 and quitter.state is WorkerState.STOPPED
            assert "quitter" not in monitor.restarts
    finally:
        shut(monitor, quitter, canary)


def test_max_restarts_gives_up_with_an_error_event() -> None:
    hopeless = pt.FlakyThread("hopeless", fail_times=100)
    monitor = Recording(
        "monitor", [hopeless], interval=0.02, backoff=Backoff(0.01, 1.0, 0.01, 0.0), max_restarts=2
    )
    monitor.start()
    hopeless.start()
    try:
        monitor.next_event("restart", "hopeless")
        monitor.next_event("restart", "hopeless")
        deadline = time.monotonic() + JOIN
        while True:
            _, kind, data = monitor.events.get(timeout=max(0.0, deadline - time.monotonic()))
            if kind == "error" and data["phase"] == "restart":
                break
        assert "gave up" in str(data["exception"])
        assert monitor.restarts == {"hopeless": 2}
        assert len(hopeless.started) == 3
    finally:
        shut(monitor, hopeless)


def test_the_guides_pattern_4_made_real(monkeypatch: pytest.MonkeyPatch, start_method: str) -> None:
    """Pattern 4 of the Workers guide: the monitor with the guide's own ``lifecycle``.

    The guide's monitor polled a private attribute and "restarted" by
    building a new worker of the same type; the real one restarts the same
    object. Adapted to end: stop everything once the worker was restarted.
    """
    restarted = queue.Queue[str]()
    printed = pt.Printed().install(monkeypatch)

    class GuideHealthMonitor(HealthMonitor):
        """Monitor and restart failed workers."""

        def lifecycle(self, event_type, **data):  # type: ignore[no-untyped-def]
            """Handle lifecycle events."""
            if event_type == "error":
                print(f"Health monitor detected error: {data.get('exception')}")
            if event_type == "restart":  # added: so that the test knows when to end
                restarted.put(data["worker"])

    worker, starts = flaky("process", "Worker-1", 1, start_method)
    monitor = GuideHealthMonitor("HealthMonitor", [worker], interval=0.05)
    monitor.start()
    worker.start()
    try:
        assert restarted.get(timeout=JOIN) == "Worker-1"
        pt.wait_for(lambda: worker.state is WorkerState.RUNNING, JOIN)
    finally:
        shut(monitor, worker)
    assert "Health monitor detected error: start 1 fails" in printed.lines
    assert starts() == 2


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(TypeError, match="not a worker"):
        HealthMonitor("m", ["not a worker"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="restart"):
        HealthMonitor("m", [], restart="never")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="interval"):
        HealthMonitor("m", [], interval=0)
    with pytest.raises(ValueError, match="max_restarts"):
        HealthMonitor("m", [], max_restarts=-1)
    assert HealthMonitor("m", []).restart_policy == "on-failure"


# -- the Server's restart semantics, through the Server's own Supervisor ------------------------


def test_max_restarts_counts_within_restart_window_not_in_a_row() -> None:
    """Restarts further apart than ``restart_window`` never add up to giving up (the
    monitor used to count consecutive restarts and gave up after ``max_restarts``)."""
    hopeless = pt.FlakyThread("spaced-out", fail_times=100)
    spaced = Backoff(base=0.3, factor=1.0, cap=0.3, jitter=0.0)
    monitor = Recording(
        "monitor", [hopeless], interval=0.02, backoff=spaced, max_restarts=1, restart_window=0.1
    )
    monitor.start()
    hopeless.start()
    try:
        for attempt in (1, 2, 3):
            _, restart = monitor.next_event("restart", "spaced-out")
            assert restart["attempt"] == attempt
        assert not monitor.gave_up and monitor.state is WorkerState.RUNNING
    finally:
        shut(monitor, hopeless)
    assert monitor.state is WorkerState.STOPPED


def test_giving_up_ends_the_monitor_failed_and_leaves_the_workers_alone() -> None:
    hopeless = pt.FlakyThread("hopeless", fail_times=100)
    healthy = pt.FlakyThread("healthy", fail_times=0)
    monitor = Recording(
        "monitor", [hopeless, healthy], interval=0.02, backoff=Backoff(0.01, 1.0, 0.01, 0.0), max_restarts=0
    )
    healthy.start()
    monitor.start()
    hopeless.start()
    try:
        _, error = monitor.next_event("error", "hopeless")
        assert error["phase"] == "worker"
        assert monitor.join(JOIN)
        assert monitor.state is WorkerState.FAILED and monitor.gave_up
        assert isinstance(monitor.exception, RuntimeError)
        assert "HealthMonitor 'monitor' gave up: more than 0 restarts within 60s" in str(monitor.exception)
        assert healthy.state is WorkerState.RUNNING and hopeless.state is WorkerState.FAILED
        assert monitor.restarts == {}
    finally:
        shut(monitor, hopeless, healthy)


def test_stable_after_starts_the_backoff_over() -> None:
    """A worker that ran for ``stable_after`` seconds before failing is restarted after the
    first delay again, with attempt 1."""
    release = threading.Event()

    class FailsTwice(ThreadWorker):
        """Fails at once on its first run; runs until released, then fails, on the second."""

        def __init__(self) -> None:
            super().__init__("fails-twice")
            self.runs = 0

        def main(self) -> None:
            self.runs += 1
            if self.runs == 2:
                release.wait(JOIN)
            if self.runs <= 2:
                raise RuntimeError(f"run {self.runs} fails")
            while self.sleep(60):
                pass

    worker = FailsTwice()
    monitor = Recording("monitor", [worker], interval=0.02, backoff=NO_JITTER, stable_after=0.2)
    monitor.start()
    worker.start()
    try:
        _, first = monitor.next_event("restart", worker.name)
        assert (first["attempt"], first["delay"]) == (1, 0.1)
        pt.wait_for(lambda: worker.runs == 2, JOIN)
        time.sleep(0.3)  # the second run lasts longer than stable_after (measuring, not synchronising)
        release.set()
        _, second = monitor.next_event("restart", worker.name)
        assert (second["attempt"], second["delay"]) == (1, 0.1)  # not (2, 0.2)
    finally:
        release.set()
        shut(monitor, worker)


def test_a_worker_restarted_by_someone_else_meanwhile_is_not_restarted_again() -> None:
    worker = pt.FlakyThread("by-hand", fail_times=1)
    canary, _ = flaky("thread", "canary", 1, "fork")
    slow = Backoff(base=0.3, factor=1.0, cap=0.3, jitter=0.0)
    monitor = Recording("monitor", [worker, canary], interval=0.02, backoff=slow)
    monitor.start()
    worker.start()
    try:
        monitor.next_event("error", "by-hand")  # its restart is due in 0.3 s...
        worker.start()  # ...but we restart it first
        canary.start()  # fails once: restarted 0.3 s later, after the restart of by-hand was due
        monitor.next_event("restart", "canary")
        assert monitor.restarts == {"canary": 1}
        assert len(worker.started) == 2 and worker.state is WorkerState.RUNNING
    finally:
        shut(monitor, worker, canary)


def test_a_hung_worker_is_abandoned_and_restarted_as_under_a_server() -> None:
    release = threading.Event()

    class Stuck(ThreadWorker):
        heartbeat_timeout = 0.3  # read by the monitor, as by a Server

        def __init__(self) -> None:
            super().__init__("stuck")
            self.runs = 0

        def main(self) -> None:
            self.runs += 1
            if self.runs == 1:
                release.wait(JOIN)  # not a framework wait, no heartbeat
                return
            while self.sleep(60):
                pass

    worker = Stuck()
    monitor = Recording("monitor", [worker], interval=0.02, backoff=NO_JITTER)
    monitor.start()
    worker.start()
    first_thread = worker.thread
    try:
        _, error = monitor.next_event("error", "stuck")
        assert isinstance(error["exception"], WorkerHungError)
        monitor.next_event("restart", "stuck")
        pt.wait_for(lambda: worker.runs == 2 and worker.state is WorkerState.RUNNING, JOIN)
    finally:
        shut(monitor, worker)
        release.set()
        if first_thread is not None:
            first_thread.join(JOIN)


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_without_a_delay_every_failure_is_still_reported(kind: str, start_method: str) -> None:
    """With a zero backoff the end is dealt with and the worker restarted in one look:
    the failure event must still come, with the exception of the run that ended."""
    worker, starts = flaky(kind, f"no-delay-{kind}", 2, start_method)
    monitor = Recording("monitor", [worker], interval=0.02, backoff=Backoff(0.0, 1.0, 0.0, 0.0))
    monitor.start()
    worker.start()
    try:
        for attempt in (1, 2):
            _, error = monitor.next_event("error", worker.name)
            assert str(error["exception"]) == f"start {attempt} fails"
            _, restart = monitor.next_event("restart", worker.name)
            assert (restart["attempt"], restart["delay"]) == (attempt, 0.0)
        pt.wait_for(lambda: starts() == 3, JOIN)
    finally:
        shut(monitor, worker)


def test_reset_after_is_the_deprecated_spelling_of_stable_after() -> None:
    with pytest.warns(DeprecationWarning, match=r"HealthMonitor\(reset_after=\.\.\.\) is deprecated"):
        monitor = HealthMonitor("m", [], reset_after=3.0)
    assert monitor.stable_after == 3.0
    with pytest.warns(DeprecationWarning, match=r"HealthMonitor\.reset_after is deprecated.*stable_after"):
        assert monitor.reset_after == 3.0


def test_the_servers_parameters_are_checked_as_the_server_checks_them() -> None:
    with pytest.raises(ValueError, match="restart_window"):
        HealthMonitor("m", [], restart_window=-1)
    with pytest.raises(ValueError, match="stable_after"):
        HealthMonitor("m", [], stable_after=-1)
    with pytest.raises(TypeError, match="backoff must be a Backoff"):
        HealthMonitor("m", [], backoff=0.1)  # type: ignore[arg-type]
    defaults = HealthMonitor("m", [])
    assert (defaults.max_restarts, defaults.restart_window, defaults.stable_after) == (None, 60.0, 10.0)
    assert defaults.backoff == Backoff()
