"""Periodic workers: run ``execute_task()`` on a drift-free schedule.

The loop is written once, in :class:`_PeriodicLoop`, whatever carries it:
:class:`PeriodicWorker` is that loop in a thread, :class:`ProcessPeriodicWorker`
the same loop in a child process. A run is one step (:meth:`_PeriodicLoop._begin_run`
then :meth:`_PeriodicLoop._end_run`); the sync and async loops are thin shells
that differ only in how they wait and await.
"""

from __future__ import annotations

import math
import random
import time
from abc import abstractmethod
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Literal

from spoc.workers import AbstractWorker, ProcessWorker, ThreadWorker
from spoc.workers._deprecation import renamed

from ._support import (
    aemit,
    awaitable,
    check_number,
    emit,
    has_async,
    log_failure,
    new_counters,
    run_on_run_loop,
)

__all__ = ["Overrun", "PeriodicStats", "PeriodicWorker", "ProcessPeriodicWorker"]

Overrun = Literal["skip", "coalesce"]
"""What a periodic worker does with the ticks that pass while a run takes too long."""

_OVERRUNS = ("skip", "coalesce")
_FIELDS = ("runs", "skipped", "failed", "last_duration", "last_lateness", "max_lateness")
_DEFAULT_STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class PeriodicStats:
    """A snapshot of a periodic worker's statistics, over all its runs so far.

    Attributes:
        runs: how many times ``execute_task()`` was called (failed calls included).
        skipped: ticks of the schedule that got no run of their own because a
            run was still going on (see ``overrun``).
        failed: how many calls of ``execute_task()`` raised (``failures``
            before: that spelling is deprecated).
        last_duration: seconds the last call took (None before the first).
        last_lateness: seconds the last call started after its scheduled
            time (jitter included in the schedule).
        max_lateness: the largest lateness seen.
    """

    runs: int
    skipped: int
    failed: int
    last_duration: float | None
    last_lateness: float | None
    max_lateness: float

    @property
    def failures(self) -> int:
        """Deprecated spelling of :attr:`failed` (kept for one release)."""
        renamed("PeriodicStats.failures", "PeriodicStats.failed")
        return self.failed


class _Schedule:
    """Tick ``k`` is due at ``start + k * interval`` (+ a jitter drawn for that tick only)."""

    def __init__(
        self, start: float, interval: float, run_immediately: bool, overrun: str, jitter: float
    ) -> None:
        self.start = start
        self.interval = interval
        self.overrun = overrun
        self.jitter = jitter
        self.rng = random.Random()
        self.tick = 0 if run_immediately else 1
        self.offset = self._draw()

    def _draw(self) -> float:
        return self.rng.uniform(0.0, self.jitter) if self.jitter else 0.0

    @property
    def due(self) -> float:
        """When the next run is due (monotonic clock)."""
        return self.start + self.tick * self.interval + self.offset

    def finished(self, end: float) -> int:
        """Move to the next tick after a run that ended at ``end``; return the ticks skipped."""
        # The last tick whose (unjittered) time has come by the end of this run.
        passed = math.floor((end - self.start) / self.interval)
        current = self.tick
        if passed <= current:
            skipped, self.tick = 0, current + 1
        elif self.overrun == "skip":
            skipped, self.tick = passed - current, passed + 1
        else:  # coalesce: one run now stands for every missed tick, then the grid resumes
            skipped, self.tick = passed - current - 1, passed
        self.offset = self._draw()
        return skipped


class _PeriodicLoop(AbstractWorker):
    """The schedule, the loop and the statistics of a periodic worker, whatever carries it.

    Combined with a carrier: :class:`PeriodicWorker` (a thread) and
    :class:`ProcessPeriodicWorker` (a child process).
    """

    interval: float
    run_immediately: bool
    overrun: Overrun
    jitter: float

    def __init__(
        self,
        name: str | None,
        interval_seconds: float,
        *,
        run_immediately: bool = True,
        overrun: Overrun = "skip",
        jitter: float = 0.0,
        daemon: bool = True,
        stop_timeout: float = _DEFAULT_STOP_TIMEOUT,
        **carrier_options: Any,
    ) -> None:
        super().__init__(name, daemon=daemon, stop_timeout=stop_timeout, **carrier_options)
        owner = f"{type(self).__name__} {self.name!r}"
        self.interval = check_number(owner, "interval_seconds", interval_seconds, strict=True)
        if overrun not in _OVERRUNS:
            raise ValueError(f"{owner}: overrun must be 'skip' or 'coalesce', got {overrun!r}")
        self.jitter = check_number(owner, "jitter", jitter)
        self.run_immediately = bool(run_immediately)
        self.overrun = overrun
        self._counters = new_counters(self, _FIELDS)

    @abstractmethod
    def execute_task(self) -> Awaitable[None] | None:
        """Do one run of the periodic task; override it, as ``def`` or ``async def``.

        An exception is reported as a lifecycle ``"error"`` event with
        ``phase="execute_task"`` and counted in ``stats.failed``; the
        schedule goes on.
        """

    @property
    def stats(self) -> PeriodicStats:
        """A snapshot of the statistics, readable from any thread (and, for a process, from the parent)."""
        values = self._counters.snapshot()
        runs = int(values["runs"])
        return PeriodicStats(
            runs=runs,
            skipped=int(values["skipped"]),
            failed=int(values["failed"]),
            last_duration=values["last_duration"] if runs else None,
            last_lateness=values["last_lateness"] if runs else None,
            max_lateness=values["max_lateness"],
        )

    def main(self) -> Awaitable[None] | None:
        """Run ``execute_task()`` on the schedule until stopped (async when it is ``async def``)."""
        if has_async(self.execute_task, self.lifecycle):
            return self._amain()
        schedule = self._new_schedule()
        while self.is_running:
            delay = schedule.due - time.monotonic()
            if delay > 0:
                self.sleep(delay)  # a stop ends it at once
                continue
            began, pending, error = self._begin_run()
            if pending is not None:
                try:
                    run_on_run_loop(self, pending)  # a def that returned an awaitable: the run's loop
                except Exception as exc:
                    error = exc
            if self._end_run(schedule, began, error):
                emit(self, "error", exception=error, phase="execute_task")
        return None

    async def _amain(self) -> None:
        schedule = self._new_schedule()
        while self.is_running:
            delay = schedule.due - time.monotonic()
            if delay > 0:
                await self.asleep(delay)
                continue
            began, pending, error = self._begin_run()
            if pending is not None:
                try:
                    await pending
                except Exception as exc:
                    error = exc
            if self._end_run(schedule, began, error):
                await aemit(self, "error", exception=error, phase="execute_task")

    # -- one run: the step both loops share --------------------------------------------------

    def _begin_run(self) -> tuple[float, Awaitable[Any] | None, Exception | None]:
        """Call ``execute_task()``: when it began, the awaitable it returned (to await), its error."""
        began = time.monotonic()
        try:
            result = self.execute_task()
        except Exception as exc:
            return began, None, exc
        return began, (result if awaitable(result) else None), None

    def _end_run(self, schedule: _Schedule, began: float, error: Exception | None) -> bool:
        """Count the run that began at ``began`` and move the schedule on; True when it failed."""
        ended = time.monotonic()
        lateness = max(0.0, began - schedule.due)
        skipped = schedule.finished(ended)
        self._counters.update(
            add={"runs": 1, "skipped": skipped, "failed": 1 if error is not None else 0},
            set_={"last_duration": ended - began, "last_lateness": lateness},
            maximum={"max_lateness": lateness},
        )
        if error is None:
            return False
        log_failure(self, "execute_task()", error)
        return True

    def _new_schedule(self) -> _Schedule:
        return _Schedule(time.monotonic(), self.interval, self.run_immediately, self.overrun, self.jitter)


class PeriodicWorker(_PeriodicLoop, ThreadWorker):
    """A thread worker that calls :meth:`execute_task` every ``interval_seconds``.

    The schedule is anchored to the monotonic clock: run ``k`` is due at
    ``start + k * interval_seconds``, so neither the task's duration nor a
    late wake-up ever shifts the runs that follow (no drift). Between runs
    the worker sleeps with :meth:`~spoc.workers.AbstractWorker.sleep`, so
    ``stop()`` ends the wait at once, even with an interval of hours; a run
    in progress finishes first.

    Override :meth:`execute_task` with ``def`` or ``async def``; an async
    task (or an ``async def lifecycle``) makes the whole loop async, on the
    run's event loop. An awaitable returned by a ``def`` runs on that loop too.

    Examples:
        >>> class Heartbeat(PeriodicWorker):
        ...     def execute_task(self):
        ...         print("alive")
        >>> worker = Heartbeat("heartbeat", interval_seconds=30)

    Args:
        name: the worker's name (defaults to the class name).
        interval_seconds: the period, in seconds (> 0); kept as :attr:`interval`.
        run_immediately: run at once when started (default); when False, the
            first run is one interval after the start.
        overrun: when a run takes longer than the interval, ``"skip"``
            (default) drops the ticks that passed meanwhile and counts them in
            ``stats.skipped``, resuming at the next tick to come;
            ``"coalesce"`` makes one immediate run standing for them (the
            others are counted as skipped), then resumes the grid.
        jitter: seconds; each tick is delayed by its own random amount in
            ``[0, jitter)``, which never accumulates (default 0). A tick
            counts as missed when a run ends after the tick's unjittered time.
        daemon: see :class:`~spoc.workers.AbstractWorker`.
        stop_timeout: see :class:`~spoc.workers.AbstractWorker`.

    Raises:
        TypeError: a number is not a number.
        ValueError: ``interval_seconds`` is not > 0, ``jitter`` is negative, or
            ``overrun`` is unknown.
    """


class ProcessPeriodicWorker(_PeriodicLoop, ProcessWorker):
    """:class:`PeriodicWorker` in a child process, for CPU-bound periodic tasks.

    Same schedule, options and ``execute_task`` contract, and one more
    keyword, ``start_method`` (see :class:`~spoc.workers.ProcessWorker`).
    The statistics live in shared memory created with the worker, so
    ``stats`` read in the parent shows what the child did. Under ``spawn``
    and ``forkserver`` the worker is pickled to the child: define the
    subclass in an importable module.

    Args:
        name: see :class:`PeriodicWorker`.
        interval_seconds: see :class:`PeriodicWorker`.
        run_immediately: see :class:`PeriodicWorker`.
        overrun: see :class:`PeriodicWorker`.
        jitter: see :class:`PeriodicWorker`.
        daemon: see :class:`~spoc.workers.ProcessWorker`.
        stop_timeout: see :class:`~spoc.workers.ProcessWorker`.
        **carrier_options: ``start_method``, see :class:`~spoc.workers.ProcessWorker`.

    Raises:
        TypeError: a number is not a number.
        ValueError: as for :class:`PeriodicWorker`, or an unknown ``start_method``.
    """
