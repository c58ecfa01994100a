"""PeriodicWorker and ProcessPeriodicWorker: a drift-free schedule, overrun policies, stops, stats.

Every test runs for threads and for processes (the process variant under
this run's start method), most also with an ``async def execute_task``.
The workers record each run's start time in a shared array and stop
themselves after a given number of runs, so the tests wait on ``join`` and
then check the recorded times against the schedule's arithmetic.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import statistics
import threading
import time
from typing import Any

import pytest

import patterns_targets as pt
from spoc.workers import WorkerState
from spoc.workers.patterns import PeriodicStats, PeriodicWorker, ProcessPeriodicWorker

JOIN = 15.0  # wide: a healthy worker ends in milliseconds

VARIANTS = {
    "thread": pt.TimedPeriodic,
    "process": pt.ProcessTimedPeriodic,
    "thread-async": pt.AsyncTimedPeriodic,
    "process-async": pt.ProcessAsyncTimedPeriodic,
}


def arrays(start_method: str, n: int) -> tuple[Any, Any]:
    context = multiprocessing.get_context(start_method)
    return context.Array("d", n), context.Array("i", n)


def lateness(starts: Any, ticks: list[int], interval: float) -> list[float]:
    """How late each run started against its tick, on the grid the runs themselves imply.

    The worker's own start time is not visible here, but every run starts at
    or after ``origin + tick * interval``: the origin is at most the smallest
    ``start - tick * interval``. Anchored there, the earliest run is 0 late,
    and a schedule that drifts makes the later runs late by the drift.
    """
    implied = [starts[j] - tick * interval for j, tick in enumerate(ticks)]
    origin = min(implied)
    return [x - origin for x in implied]


def run_to_end(worker: Any) -> None:
    worker.start()
    try:
        assert worker.join(JOIN), "the worker did not stop itself"
    finally:
        worker.stop()
        worker.join(JOIN)
    assert worker.state is WorkerState.STOPPED, worker.exception


def run_all_to_end(workers: dict[str, Any]) -> None:
    """Start the workers together (they mostly sleep, so they don't compete), wait for each to stop itself."""
    try:
        for worker in workers.values():
            worker.start()
        for variant, worker in workers.items():
            assert worker.join(JOIN), f"{variant}: the worker did not stop itself"
    finally:
        for worker in workers.values():
            worker.stop()
        for worker in workers.values():
            worker.join(JOIN)
    for variant, worker in workers.items():
        assert worker.state is WorkerState.STOPPED, (variant, worker.exception)


def test_no_drift_the_last_run_starts_on_its_tick(start_method: str) -> None:
    """200 runs at 20 ms with 5 ms of work: the last runs start on their ticks, within 20 ms.

    Run k is due at start + tick_k * 20 ms, tick_k being k plus the ticks
    skipped before it (normally none). A naive ``sleep(interval)`` after
    each run would be 199 * 5 ms late by the last run (500 ms for the async
    ones); single runs may be up to 100 ms late on a busy machine. The four
    variants (thread, process, each sync and async; the async ones 100 runs)
    run at the same time.
    """
    noise = 0.1
    interval, work = 0.02, 0.005
    plan = {"thread": 200, "process": 200, "thread-async": 100, "process-async": 100}
    recorded = {variant: arrays(start_method, runs) for variant, runs in plan.items()}
    workers = {
        variant: VARIANTS[variant](
            f"drift-{variant}", interval, *recorded[variant], work=work, stop_after=runs
        )
        for variant, runs in plan.items()
    }
    run_all_to_end(workers)
    for variant, runs in plan.items():
        starts, skips = recorded[variant]
        stats = workers[variant].stats
        assert stats.runs == runs, variant
        late = lateness(starts, [j + skips[j] for j in range(runs)], interval)
        # Drift makes every late run late; noise delays a run here and there. So the last
        # ten runs, taken together, must be on their ticks within 20 ms, and none far off.
        assert statistics.median(late[-10:]) <= 0.02, f"{variant}: last runs late {late[-10:]} ({stats})"
        assert late[-1] <= noise, f"{variant}: last run {late[-1] * 1000:.1f} ms late ({stats})"
        assert stats.last_lateness is not None and stats.last_lateness < noise, (variant, stats)
        # (an event loop timer may fire up to a millisecond early)
        assert stats.last_duration is not None and work - 0.002 <= stats.last_duration < work + 0.05, (
            variant,
            stats,
        )


def test_skip_counts_the_ticks_each_overrun_spans(start_method: str) -> None:
    """Work of 500 ms on a 200 ms grid: a run started on tick k ends between ticks k+2 and k+3.

    So each run skips exactly ticks k+1 and k+2 and the next starts on tick
    k+3: skipped == 2 * runs, and run j starts at 3 * j * 200 ms. The work
    ends 500 ms after its start, 100 ms from either tick: the count is exact
    unless noise passes 100 ms. All four variants at once.
    """
    interval, work, runs = 0.2, 0.5, 4
    recorded = {variant: arrays(start_method, runs) for variant in VARIANTS}
    workers = {
        variant: cls(f"skip-{variant}", interval, *recorded[variant], work=work, stop_after=runs)
        for variant, cls in VARIANTS.items()
    }
    run_all_to_end(workers)
    for variant, worker in workers.items():
        starts, skips = recorded[variant]
        stats = worker.stats
        assert stats.runs == runs, variant
        assert stats.skipped == 2 * runs, (variant, stats)
        assert list(skips) == [2 * j for j in range(runs)], variant
        late = lateness(starts, [3 * j for j in range(runs)], interval)  # run j on tick 3j
        assert max(late) <= 0.15, (variant, late)


def test_one_long_run_skip_versus_coalesce(start_method: str) -> None:
    """Run 0 takes 500 ms on a 200 ms grid (ticks 1 and 2 pass); the next runs take 5 ms.

    ``skip``: ticks 1 and 2 are skipped, run 1 starts on tick 3 (600 ms).
    ``coalesce``: tick 1 is skipped, run 1 starts at once (~500 ms) for tick
    2, and run 2 is back on the grid at tick 3. Threads and processes, both
    policies, at once; 100 ms between the two outcomes, noise allowed 50 ms.
    """
    interval = 0.2
    cases = [(kind, overrun) for kind in ("thread", "process") for overrun in ("skip", "coalesce")]
    recorded = {case: arrays(start_method, 4) for case in cases}
    workers = {
        case: VARIANTS[case[0]](
            f"overrun-{case[0]}-{case[1]}",
            interval,
            *recorded[case],
            work=0.005,
            first_work=0.5,
            stop_after=4,
            overrun=case[1],
        )
        for case in cases
    }
    run_all_to_end(workers)  # type: ignore[arg-type]
    for (kind, overrun), worker in workers.items():
        starts, _ = recorded[(kind, overrun)]
        stats = worker.stats
        if overrun == "skip":
            assert stats.skipped == 2, (kind, stats)
            assert max(lateness(starts, [0, 3, 4, 5], interval)) <= 0.15, kind
        else:
            assert stats.skipped == 1, (kind, stats)
            assert 0.5 <= starts[1] - starts[0] < 0.55, kind  # at once after the long run
            on_grid = lateness([starts[0], starts[2], starts[3]], [0, 3, 4], interval)
            assert max(on_grid) <= 0.05, (kind, on_grid)
            assert stats.max_lateness >= 0.08, (kind, stats)  # run 1 was due at 400 ms


def test_run_immediately_false_waits_one_interval(start_method: str) -> None:
    recorded = {variant: arrays(start_method, 1) for variant in ("thread", "process")}
    workers = {
        variant: VARIANTS[variant](
            f"later-{variant}", 0.2, *recorded[variant], stop_after=1, run_immediately=False
        )
        for variant in recorded
    }
    began = time.monotonic()
    run_all_to_end(workers)
    for variant, worker in workers.items():
        assert recorded[variant][0][0] - began >= 0.2, variant
        assert worker.stats.runs == 1, variant


def test_jitter_delays_each_tick_without_accumulating(start_method: str) -> None:
    runs, interval, jitter = 30, 0.02, 0.01
    recorded = {variant: arrays(start_method, runs) for variant in ("thread", "process")}
    workers = {
        variant: VARIANTS[variant](
            f"jittery-{variant}", interval, *recorded[variant], stop_after=runs, jitter=jitter
        )
        for variant in recorded
    }
    run_all_to_end(workers)
    for variant, (starts, skips) in recorded.items():
        late = lateness(starts, [j + skips[j] for j in range(runs)], interval)
        # Each start lies in [tick, tick + jitter) (+ noise): relative to the earliest, in [0, jitter).
        # Jitter that accumulated (5 ms a tick on average) would make the last runs ~100 ms late.
        assert statistics.median(late) <= jitter + 0.01, (variant, late)
        assert statistics.median(late[-10:]) <= jitter + 0.03, (variant, late)
        assert len({round(x, 4) for x in late}) > 5, variant  # the delays do vary


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_stop_ends_an_hour_long_wait_at_once(kind: str, start_method: str) -> None:
    starts, skips = arrays(start_method, 1)
    cls = pt.TimedPeriodic if kind == "thread" else pt.ProcessTimedPeriodic
    worker = cls("hourly", 3600, starts, skips, run_immediately=False)
    worker.start()
    try:
        pt.wait_for(lambda: worker.state is WorkerState.RUNNING, JOIN)
        time.sleep(0.05)  # let it settle into its wait
        asked = time.monotonic()
        worker.stop()
        assert worker.join(JOIN)
        took = time.monotonic() - asked
    finally:
        worker.stop()
        worker.join(JOIN)
    assert worker.state is WorkerState.STOPPED
    assert worker.stats.runs == 0
    assert took < 1.0, f"stop took {took:.3f}s"


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_a_run_in_progress_finishes_on_stop(kind: str, start_method: str) -> None:
    context = multiprocessing.get_context(start_method)
    began, finished = context.Event(), context.Event()
    if kind == "process":
        worker: Any = pt.BlockingRun("busy", 10, began, finished, work=0.15)
    else:

        class Busy(PeriodicWorker):
            def execute_task(self) -> None:
                began.set()
                time.sleep(0.15)
                finished.set()

        worker = Busy("busy", 10)
    worker.start()
    try:
        assert began.wait(JOIN)
        worker.stop()
        assert worker.join(JOIN)
    finally:
        worker.stop()
        worker.join(JOIN)
    assert finished.is_set()
    assert worker.stats.runs == 1
    assert worker.state is WorkerState.STOPPED


def test_a_failing_task_emits_an_error_event_and_the_schedule_goes_on() -> None:
    events: list[tuple[str, dict[str, Any]]] = []

    class Failing(pt.TimedPeriodic):
        def lifecycle(self, event_type: str, **data: Any) -> None:
            events.append((event_type, data))

    starts, skips = [0.0] * 6, [0] * 6
    worker = Failing("failing", 0.01, starts, skips, stop_after=6, fail_on=(1, 3))
    run_to_end(worker)
    stats = worker.stats
    assert (stats.runs, stats.failed) == (6, 2)
    errors = [data for event, data in events if event == "error"]
    assert [str(e["exception"]) for e in errors] == ["run 1 fails on purpose", "run 3 fails on purpose"]
    assert {e["phase"] for e in errors} == {"execute_task"}
    assert [event for event, _ in events] == ["startup", "error", "error", "shutdown"]


def test_a_failing_task_in_a_process_is_counted_and_reported(start_method: str) -> None:
    context = multiprocessing.get_context(start_method)
    events = context.Queue()
    worker = pt.FailingProcessPeriodic("failing", 0.01, events, stop_after=6)
    try:
        run_to_end(worker)
        received = pt.events_until_shutdown(events)
    finally:
        pt.close_queue(events)
    assert (worker.stats.runs, worker.stats.failed) == (6, 2)
    errors = [e for e in received if e[0] == "error"]
    assert [(e[1], e[2]) for e in errors] == [
        ("execute_task", "ValueError('run 1 fails')"),
        ("execute_task", "ValueError('run 3 fails')"),
    ]


def test_an_async_lifecycle_is_awaited_for_task_errors() -> None:
    seen: list[tuple[str, str]] = []

    class AsyncHooks(PeriodicWorker):
        def execute_task(self) -> None:
            if self.stats.runs == 1:
                self.stop()
            raise ValueError("boom")

        async def lifecycle(self, event_type: str, **data: Any) -> None:
            await asyncio.sleep(0)
            seen.append((event_type, str(data.get("exception", ""))))

    worker = AsyncHooks("async-hooks", 0.01)
    run_to_end(worker)
    assert seen == [("startup", ""), ("error", "boom"), ("error", "boom"), ("shutdown", "")]
    assert worker.stats.failed == 2


def test_failures_is_the_deprecated_spelling_of_failed() -> None:
    stats = PeriodicStats(runs=3, skipped=0, failed=2, last_duration=0.1, last_lateness=0.0, max_lateness=0.0)
    expected = r"PeriodicStats\.failures is deprecated.*use PeriodicStats\.failed"
    with pytest.warns(DeprecationWarning, match=expected):
        assert stats.failures == 2


def test_an_awaitable_returned_by_a_def_task_runs_on_the_runs_own_loop() -> None:
    """A ``def execute_task`` that returns a coroutine: it runs on the loop of the run's
    async hooks (here ``setup``), each time, not on a loop made and thrown away per run."""
    loops: list[asyncio.AbstractEventLoop] = []

    class Hybrid(PeriodicWorker):
        async def setup(self) -> None:
            loops.append(asyncio.get_running_loop())

        def execute_task(self) -> Any:
            if len(loops) == 3:
                self.stop()
            return self.note_loop()

        async def note_loop(self) -> None:
            loops.append(asyncio.get_running_loop())

    worker = Hybrid("hybrid", 0.01)
    run_to_end(worker)
    assert len(loops) == 4 and worker.stats.failed == 0
    assert all(loop is loops[0] for loop in loops), loops


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_stats_are_a_frozen_snapshot_readable_while_it_runs(kind: str, start_method: str) -> None:
    starts, skips = arrays(start_method, 1)
    cls = pt.TimedPeriodic if kind == "thread" else pt.ProcessTimedPeriodic
    worker = cls("watched", 0.01, starts, skips)
    assert worker.stats == PeriodicStats(0, 0, 0, None, None, 0.0)
    worker.start()
    try:
        pt.wait_for(lambda: worker.stats.runs >= 5, JOIN)
        snapshot = worker.stats
        with pytest.raises(AttributeError):
            snapshot.runs = 0  # type: ignore[misc]
    finally:
        worker.stop()
        worker.join(JOIN)
    assert worker.stats.runs >= snapshot.runs >= 5


def test_the_guides_data_sync_worker_runs_on_its_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guide's DataSyncWorker (pattern 2), subclassing the real PeriodicWorker.

    Adapted only to end: its 300 s interval becomes 50 ms, and the test
    stops the server once three syncs have been printed.
    """
    printed: queue.Queue[str] = queue.Queue()
    monkeypatch.setattr("builtins.print", lambda *a, **k: printed.put(" ".join(map(str, a))))
    from datetime import datetime

    from spoc.workers import Server

    class DataSyncWorker(PeriodicWorker):
        """Sync data every 5 minutes."""

        def __init__(self, name):  # type: ignore[no-untyped-def]
            super().__init__(name, interval_seconds=0.05)  # the guide: 300

        def execute_task(self):  # type: ignore[no-untyped-def]
            """Sync data from remote source."""
            print(f"Syncing data at {datetime.now()}")
            # Perform sync logic here

    worker = DataSyncWorker(name="DataSync")
    server = Server()
    server.add_worker(worker)
    runner = threading.Thread(target=server.run_forever)
    runner.start()
    try:
        lines = [printed.get(timeout=JOIN) for _ in range(3)]
    finally:
        server.stop()
        runner.join(JOIN)
    assert all(line.startswith("Syncing data at ") for line in lines)
    assert worker.state is WorkerState.STOPPED
    assert worker.stats.runs >= 3


def test_bad_arguments_are_rejected() -> None:
    class Task(PeriodicWorker):
        def execute_task(self) -> None:
            pass

    with pytest.raises(ValueError, match="interval_seconds"):
        Task("x", 0)
    with pytest.raises(TypeError, match="interval_seconds"):
        Task("x", "1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="overrun"):
        Task("x", 1, overrun="queue")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="jitter"):
        Task("x", 1, jitter=-1)
    with pytest.raises(TypeError, match="execute_task"):
        PeriodicWorker("x", 1)  # type: ignore[abstract]
    with pytest.raises(TypeError, match="execute_task"):
        ProcessPeriodicWorker("x", 1)  # type: ignore[abstract]
