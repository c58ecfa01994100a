"""Workers and stage functions for ``tests/patterns``, in an importable module.

Process workers (and the functions of process stages) must be importable by
name in ``spawn`` and ``forkserver`` children, so they live here rather than
in test functions (pytest puts ``tests/`` on ``sys.path``; this module is
``patterns_targets``). What a child does reaches the test through
multiprocessing primitives given to the worker before it starts: shared
arrays, values, events and queues. Thread variants share the same code.
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import threading
import time
from typing import Any

from spoc.workers import ProcessWorker, ThreadWorker
from spoc.workers.patterns import (
    JobProcessor,
    PeriodicWorker,
    Pipeline,
    ProcessJobProcessor,
    ProcessPeriodicWorker,
    ProcessStageWorker,
    StageWorker,
)
from targets import wait_for  # noqa: F401 - the suite's one, re-exported: the patterns tests call pt.wait_for


def check_conservation(pipeline: Pipeline) -> None:
    """The pipeline ended and accounts for every item it accepted: emitted, failed or dropped."""
    stats = pipeline.stats
    assert stats.ended
    assert stats.accepted == stats.emitted + stats.failed + stats.dropped, stats
    assert stats.in_flight == 0 and stats.lost == 0, stats
    assert len(pipeline.dead_letters) == stats.failed
    for stage in stats.stages:
        assert stage.in_flight == 0, stage


def first_results_then_stop(pipeline: Pipeline, count: int, timeout: float = 20.0) -> list[Any]:
    """Start ``pipeline``, take its first ``count`` results (fewer if it ends first), then stop it
    (the stop must end within ``timeout``): how a pipeline fed from a source without end is used."""
    results: list[Any] = []
    pipeline.start()
    try:
        for result in pipeline.results():
            results.append(result)
            if len(results) == count:
                break
    finally:
        assert pipeline.stop(timeout)
    return results


def drain(q: Any, timeout: float = 0.5) -> list[Any]:
    """Everything a queue holds now (a multiprocessing queue: until it stays empty ``timeout`` s)."""
    items: list[Any] = []
    while True:
        try:
            items.append(q.get(True, timeout))
        except queue.Empty:
            return items


def events_until_shutdown(q: Any, workers: int = 1, timeout: float = 15.0) -> list[Any]:
    """The lifecycle events a :class:`EventsToQueue` worker sent, up to its "shutdown" event
    (``workers`` of them when several workers share the queue)."""
    events: list[Any] = []
    deadline = time.monotonic() + timeout
    while sum(1 for e in events if e[0] == "shutdown") < workers:
        events.append(q.get(timeout=max(0.0, deadline - time.monotonic())))
    return events


class Printed:
    """Records what this process's threads ``print`` (install with ``monkeypatch``).

    Used instead of pytest's ``capsys`` in tests that start process workers:
    ``capsys`` swaps ``sys.stderr`` for an object without a file descriptor,
    which a forked child inherits (see the note in ``tests/patterns``' report).
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, *args: Any, sep: str = " ", **kwargs: Any) -> None:
        with self._lock:
            self.lines.append(sep.join(map(str, args)))

    def install(self, monkeypatch: Any) -> Printed:
        monkeypatch.setattr("builtins.print", self)
        return self


def close_queue(q: Any) -> None:
    """Close a multiprocessing queue in this process and end its feeder thread (no leaks)."""
    close = getattr(q, "close", None)
    if close is not None:
        close()
        q.join_thread()


# -- periodic ------------------------------------------------------------------------


class _Timed:
    """Records when each run started (``starts[k]``) and how many ticks had been skipped.

    ``starts`` and ``skips`` are ``multiprocessing`` arrays (shared with a
    child), ``work`` the seconds each run lasts (``first_work`` for run 0), and
    the worker stops itself after ``stop_after`` runs. Runs listed in
    ``fail_on`` raise ``ValueError``.
    """

    def _init_timed(
        self,
        *,
        starts: Any,
        skips: Any,
        work: float,
        stop_after: int,
        first_work: float | None,
        fail_on: tuple[int, ...],
    ) -> None:
        self.starts = starts
        self.skips = skips
        self.work = work
        self.first_work = work if first_work is None else first_work
        self.stop_after = stop_after
        self.fail_on = fail_on

    def _begin(self) -> tuple[int, float]:
        stats = self.stats  # type: ignore[attr-defined]
        k = stats.runs
        if k < len(self.starts):
            self.starts[k] = time.monotonic()
            self.skips[k] = stats.skipped
        if k + 1 >= self.stop_after:
            self.stop()  # type: ignore[attr-defined]
        return k, self.first_work if k == 0 else self.work

    def _end(self, k: int) -> None:
        if k in self.fail_on:
            raise ValueError(f"run {k} fails on purpose")


class TimedPeriodic(_Timed, PeriodicWorker):
    """A thread PeriodicWorker that records its runs (see :class:`_Timed`)."""

    def __init__(
        self,
        name: str,
        interval: float,
        starts: Any,
        skips: Any,
        *,
        work: float = 0.0,
        stop_after: int = 10**9,
        first_work: float | None = None,
        fail_on: tuple[int, ...] = (),
        **options: Any,
    ) -> None:
        super().__init__(name, interval, **options)
        self._init_timed(
            starts=starts,
            skips=skips,
            work=work,
            stop_after=stop_after,
            first_work=first_work,
            fail_on=fail_on,
        )

    def execute_task(self) -> None:
        k, work = self._begin()
        time.sleep(work)
        self._end(k)


class ProcessTimedPeriodic(_Timed, ProcessPeriodicWorker):
    """The process variant of :class:`TimedPeriodic`."""

    def __init__(
        self,
        name: str,
        interval: float,
        starts: Any,
        skips: Any,
        *,
        work: float = 0.0,
        stop_after: int = 10**9,
        first_work: float | None = None,
        fail_on: tuple[int, ...] = (),
        **options: Any,
    ) -> None:
        super().__init__(name, interval, **options)
        self._init_timed(
            starts=starts,
            skips=skips,
            work=work,
            stop_after=stop_after,
            first_work=first_work,
            fail_on=fail_on,
        )

    def execute_task(self) -> None:
        k, work = self._begin()
        time.sleep(work)
        self._end(k)


class AsyncTimedPeriodic(TimedPeriodic):
    """:class:`TimedPeriodic` with an ``async def execute_task``."""

    async def execute_task(self) -> None:  # type: ignore[override]
        k, work = self._begin()
        await asyncio.sleep(work)
        self._end(k)


class ProcessAsyncTimedPeriodic(ProcessTimedPeriodic):
    """:class:`ProcessTimedPeriodic` with an ``async def execute_task``."""

    async def execute_task(self) -> None:  # type: ignore[override]
        k, work = self._begin()
        await asyncio.sleep(work)
        self._end(k)


class BlockingRun(ProcessPeriodicWorker):
    """Signals ``began`` when its run starts, works ``work`` seconds, then signals ``finished``."""

    def __init__(self, name: str, interval: float, began: Any, finished: Any, work: float, **options: Any):
        super().__init__(name, interval, **options)
        self.began = began
        self.finished = finished
        self.work = work

    def execute_task(self) -> None:
        self.began.set()
        time.sleep(self.work)
        self.finished.set()


class EventsToQueue:
    """Mixin: every lifecycle event goes to ``self.events`` (a multiprocessing queue) as
    ``(event_type, phase, repr(exception), job_or_item)``."""

    events: Any

    def lifecycle(self, event_type: str, **data: Any) -> None:
        exc = data.get("exception")
        self.events.put(
            (
                event_type,
                data.get("phase"),
                None if exc is None else repr(exc),
                data.get("job", data.get("item")),
            )
        )


class FailingProcessPeriodic(EventsToQueue, ProcessPeriodicWorker):
    """Fails on runs 1 and 3, stops itself after ``stop_after`` runs; events to a queue."""

    def __init__(self, name: str, interval: float, events: Any, stop_after: int, **options: Any):
        super().__init__(name, interval, **options)
        self.events = events
        self.stop_after = stop_after

    def execute_task(self) -> None:
        k = self.stats.runs
        if k + 1 >= self.stop_after:
            self.stop()
        if k in (1, 3):
            raise ValueError(f"run {k} fails")


# -- jobs ------------------------------------------------------------------------------


class RecordingJobs(EventsToQueue, ProcessJobProcessor):
    """Puts ``(pid, job)`` into ``done`` for each job; raises on jobs in ``bad``."""

    def __init__(
        self, name: str, job_queue: Any, done: Any, events: Any, bad: tuple[Any, ...] = (), **kw: Any
    ):
        super().__init__(name, job_queue, **kw)
        self.done = done
        self.events = events
        self.bad = bad

    def process_job(self, job: Any) -> None:
        if job in self.bad:
            raise ValueError(f"bad job {job!r}")
        self.done.put((os.getpid(), job))


class AsyncRecordingJobs(RecordingJobs):
    """:class:`RecordingJobs` with an ``async def process_job``."""

    async def process_job(self, job: Any) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        if job in self.bad:
            raise ValueError(f"bad job {job!r}")
        self.done.put((os.getpid(), job))


class SlowJob(ProcessJobProcessor):
    """Sets ``began``, works ``work`` seconds, sets ``finished``: one job in hand at a stop."""

    def __init__(self, name: str, job_queue: Any, began: Any, finished: Any, work: float, **kw: Any):
        super().__init__(name, job_queue, **kw)
        self.began = began
        self.finished = finished
        self.work = work

    def process_job(self, job: Any) -> None:
        self.began.set()
        time.sleep(self.work)
        self.finished.set()


class ListJobs(JobProcessor):
    """A thread JobProcessor that appends each job to ``seen`` (a list, under a lock)."""

    def __init__(self, name: str, job_queue: Any, seen: list[Any], **kw: Any) -> None:
        super().__init__(name, job_queue, **kw)
        self.seen = seen
        self.lock = threading.Lock()

    def process_job(self, job: Any) -> None:
        with self.lock:
            self.seen.append(job)


class _FailsOnMultiples:
    """Jobs and items that are multiples of ``every`` fail; a stage also drops those one above."""

    every = 4

    def process_job(self, job: int) -> None:
        if job % self.every == 0:
            raise ValueError(f"job {job} is a multiple of {self.every}")

    def process_item(self, item: int) -> int | None:
        if item % self.every == 0:
            raise ValueError(f"item {item} is a multiple of {self.every}")
        return None if item % self.every == 1 else item


class MeteredJobs(_FailsOnMultiples, JobProcessor):
    """A thread JobProcessor whose jobs that are multiples of 4 fail."""


class ProcessMeteredJobs(_FailsOnMultiples, ProcessJobProcessor):
    """:class:`MeteredJobs` in a process."""


class MeteredStage(_FailsOnMultiples, StageWorker):
    """A thread stage: multiples of 4 fail, those one above are dropped, the rest pass on."""


class ProcessMeteredStage(_FailsOnMultiples, ProcessStageWorker):
    """:class:`MeteredStage` in a process."""


# -- pipelines ---------------------------------------------------------------------


def increment(x: int) -> int:
    """A thread stage: x + 1."""
    return x + 1


def square(x: int) -> int:
    """A CPU stage: x * x."""
    return x * x


def tag(x: int) -> tuple[str, int]:
    """A final stage: ("r", x)."""
    return ("r", x)


async def async_negate(x: int) -> int:
    """An async stage: -x."""
    await asyncio.sleep(0)
    return -x


def fail_on_sevens(x: int) -> int:
    """Raises on multiples of 7; else x."""
    if x % 7 == 0:
        raise ValueError(f"{x} is a multiple of 7")
    return x


def drop_odd(x: int) -> int | None:
    """Drops odd items (returns None)."""
    return None if x % 2 else x


def exit_on_five(x: int) -> int:
    """A process stage that dies (exit code 3, no clean-up) on item 5: a poison item."""
    if x == 5:
        os._exit(3)
    return x


def unpicklable_on_five(x: int) -> Any:
    """Returns something a multiprocessing queue cannot carry when x == 5."""
    if x == 5:
        return threading.Lock()
    return x


class Square(ProcessStageWorker):
    """A process stage class: item * item."""

    def process_item(self, item: int) -> int:
        return item * item


class AsyncSquare(ProcessStageWorker):
    """A process stage class with ``async def process_item``."""

    async def process_item(self, item: int) -> int:
        await asyncio.sleep(0)
        return item * item


class SlowStage(ProcessStageWorker):
    """Sleeps ``delay`` seconds per item (to hold items when the pipeline is stopped)."""

    def __init__(self, name: str, input_queue: Any, output_queue: Any, *, delay: float, **kw: Any) -> None:
        super().__init__(name, input_queue, output_queue, **kw)
        self.delay = delay

    def process_item(self, item: Any) -> Any:
        time.sleep(self.delay)
        return item


class FailingSetup(ProcessStageWorker):
    """A process stage whose setup fails: the pipeline must stop and account for its items."""

    def setup(self) -> None:
        raise RuntimeError("cannot connect")

    def process_item(self, item: Any) -> Any:
        return item


class EventRecordingStage(EventsToQueue, ProcessStageWorker):
    """Fails on multiples of 7 and sends its lifecycle events to ``events``."""

    def __init__(self, name: str, input_queue: Any, output_queue: Any, *, events: Any, **kw: Any) -> None:
        super().__init__(name, input_queue, output_queue, **kw)
        self.events = events

    def process_item(self, item: int) -> int:
        return fail_on_sevens(item)


class _FailsOnCue:
    """A stage that fails once ``gate`` (a multiprocessing Event) is set, and says when.

    ``how``: ``"setup"`` (setup waits for the gate, then raises), ``"main"``
    (the first item taken after the gate opened ends main(): SystemExit(3),
    which process_item's ``except Exception`` does not catch) or ``"kill"``
    (that item's process SIGKILLs itself). Until then items pass unchanged.
    ``failed_at`` (a shared double) gets ``time.monotonic()`` just before the failure.
    """

    def __init__(
        self,
        name: str,
        input_queue: Any,
        output_queue: Any,
        *,
        how: str,
        gate: Any,
        failed_at: Any,
        **kw: Any,
    ) -> None:
        super().__init__(name, input_queue, output_queue, **kw)  # type: ignore[call-arg]
        self.how = how
        self.gate = gate
        self.failed_at = failed_at

    def setup(self) -> None:
        if self.how == "setup":
            while not self.gate.wait(0.05):
                if not self.is_running:  # type: ignore[attr-defined]
                    return
            self._fail()

    def process_item(self, item: Any) -> Any:
        if self.how != "setup" and self.gate.is_set():
            self._fail()
        return item

    def _fail(self) -> None:
        self.failed_at.value = time.monotonic()
        if self.how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.how == "setup":
            raise RuntimeError("cannot connect")
        raise SystemExit(3)


class FailingThreadStage(_FailsOnCue, StageWorker):
    """:class:`_FailsOnCue` in a thread."""


class FailingProcessStage(_FailsOnCue, ProcessStageWorker):
    """:class:`_FailsOnCue` in a child process."""


# -- the Workers guide's pattern 3 (a ProcessStageWorker where the guide had a ProcessWorker) --


class FetchStage(StageWorker):
    """Stage 1: Fetch raw data."""

    def process_item(self, item):  # type: ignore[no-untyped-def]
        """Fetch data."""
        return {"id": item, "raw_data": f"data-{item}"}


class TransformStage(ProcessStageWorker):
    """Stage 2: Transform data (CPU-intensive)."""

    def process_item(self, item):  # type: ignore[no-untyped-def]
        """CPU-intensive transformation."""
        # Simulate heavy processing
        return {**item, "transformed": True}


class SaveStage(StageWorker):
    """Stage 3: Save results."""

    def process_item(self, item):  # type: ignore[no-untyped-def]
        """Save to database."""
        print(f"Saved: {item}")
        return None  # End of pipeline  # noqa: PLR1711 (the guide's code)


# -- health monitoring -------------------------------------------------------------------


class FlakyProcess(ProcessWorker):
    """Counts its starts in ``starts`` (a shared int); fails while ``starts <= fail_times``,
    then runs until stopped."""

    def __init__(self, name: str, starts: Any, fail_times: int, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.starts = starts
        self.fail_times = fail_times

    def main(self) -> None:
        with self.starts.get_lock():
            self.starts.value += 1
            n = self.starts.value
        if n <= self.fail_times:
            raise RuntimeError(f"start {n} fails")
        while self.sleep(60):
            pass


class FlakyThread(ThreadWorker):
    """The thread variant of :class:`FlakyProcess`; ``started`` holds each start's time."""

    def __init__(self, name: str, fail_times: int, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.fail_times = fail_times
        self.started: list[float] = []

    def main(self) -> None:
        self.started.append(time.monotonic())
        if len(self.started) <= self.fail_times:
            raise RuntimeError(f"start {len(self.started)} fails")
        while self.sleep(60):
            pass


class _BatchSquares:
    """``process_batch``: each item squared, with the size of its batch; drops x13s, raises on a negative."""

    def process_batch(self, items: list[int]) -> list[Any]:
        if min(items) < 0:
            raise ValueError("a batch with a negative number")
        return [None if x % 100 == 13 else (x * x, len(items)) for x in items]


class BatchSquares(_BatchSquares, StageWorker):
    """A thread stage that squares a batch at a time (it defines no process_item)."""


class ProcessBatchSquares(_BatchSquares, ProcessStageWorker):
    """A process stage that squares a batch at a time (it defines no process_item)."""


class AsyncProcessBatchSquares(ProcessStageWorker):
    """A process stage whose ``process_batch`` is ``async def``."""

    async def process_batch(self, items: list[int]) -> list[Any]:
        await asyncio.sleep(0)
        return [(x * x, len(items)) for x in items]


class WrongLengthBatch(StageWorker):
    """``process_batch`` that returns one result too few."""

    def process_batch(self, items: list[int]) -> list[int]:
        return items[:-1]


class _KilledWhileWriting(dict):  # type: ignore[type-arg]
    """What a counters' write adds: reading it SIGKILLs the writing process, mid-write."""

    def items(self) -> Any:
        os.kill(os.getpid(), signal.SIGKILL)
        return super().items()


def write_counters_then_die(counters: Any) -> None:
    """A process target: add 3 to ``done``, then be killed in the middle of the next write."""
    counters.add("done", 3)
    counters.update(add=_KilledWhileWriting(done=1))


def write_counters(counters: Any) -> None:
    """A process target: add 2 to ``done`` (the counters' next writer, a worker's next run)."""
    counters.add("done", 2)


def take_read_lock_then_die(q: Any) -> None:
    """A process target: take ``q``'s read lock and be killed holding it (as a reader can be)."""
    q._rlock.acquire()
    os.kill(os.getpid(), signal.SIGKILL)
