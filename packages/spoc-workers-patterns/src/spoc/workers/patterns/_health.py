"""``HealthMonitor``: a Server's supervision for workers that run without a Server.

The restart decisions are the Server's own (:class:`spoc.workers._supervisor.Supervisor`):
restart policies, :class:`~spoc.workers.Backoff`, ``max_restarts`` within
``restart_window``, ``stable_after``, heartbeats. The monitor only drives it
from its own thread, one look at a time (:meth:`Supervisor.look`), and turns
what it decides into ``lifecycle`` events. It knows the workers through their
public API and ``worker.supervision``, whatever carries them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from spoc.workers import AbstractWorker, Backoff, ThreadWorker, WorkerEvent, WorkerState
from spoc.workers._checks import check_count, check_number
from spoc.workers._deprecation import renamed
from spoc.workers._supervised import Supervised
from spoc.workers._supervisor import Supervisor

from ._support import aemit, emit, has_async

__all__ = ["HealthMonitor"]

_POLICIES = ("on-failure", "always")
_DEFAULT_STOP_TIMEOUT = 5.0

_Event = tuple[str, dict[str, Any]]


class HealthMonitor(ThreadWorker):
    """A thread worker that watches other workers and restarts those that failed, as a Server would.

    It makes the restart decisions of a :class:`~spoc.workers.Server`, with
    its parameters and their meaning, for workers you start yourself. A
    worker is restarted by calling ``start()`` again on the same object
    (workers are restartable), never by building a new one. The monitor
    leaves alone a worker that was never started (state ``NEW``), one that
    is running, and one whose ``stop()`` was called for its last run (stopped
    on purpose). By default it restarts only workers that ended ``FAILED``;
    ``restart="always"`` also restarts those whose ``main`` returned by itself.

    Restarts wait ``backoff.delay(attempt)`` seconds, ``attempt`` counting
    the consecutive restarts of that worker; it starts over once the worker
    has run for ``stable_after`` seconds. More than ``max_restarts``
    restarts, all workers together, within ``restart_window`` seconds, or a
    restart whose ``start()`` raises, and the monitor gives up: it sends one
    ``"error"`` event with ``phase="restart"`` and ends ``FAILED`` with that
    error (:attr:`gave_up` is then True), leaving the workers as they are. A
    worker whose class sets ``heartbeat_timeout`` is declared hung when silent
    for longer, as under a Server, and restarted.

    For each failure it emits ``lifecycle("error", exception=<the worker's
    exception>, phase="worker", worker=<name>)``, and for each restart
    ``lifecycle("restart", worker=<name>, attempt=<1, 2, ...>, delay=<seconds
    waited>)``.

    Process workers are watched through their pipes and sentinels, so their
    end is seen at once; thread workers are looked at every ``interval``
    seconds. Use it when you run workers without a Server; don't let two
    supervisors restart the same worker.

    There is no process variant: a worker can only be started again by the
    process holding its object, so the monitor runs beside it, as a thread;
    ``lifecycle`` may be ``async def`` (the loop then runs async).

    Examples:
        >>> monitor = HealthMonitor("monitor", [worker_a, worker_b], interval=1.0)  # doctest: +SKIP
        >>> monitor.start()  # doctest: +SKIP

    Args:
        name: the monitor's name (defaults to the class name).
        workers_to_monitor: the workers; kept as the list :attr:`workers`,
            which may be changed while the monitor runs.
        interval: seconds between two looks at thread workers (default 5, as
            in the Workers guide); process workers are noticed at once.
        restart: ``"on-failure"`` (default) or ``"always"``; kept as
            :attr:`restart_policy` (``restart`` is the class attribute a
            :class:`~spoc.workers.Server` reads for the monitor itself).
        backoff: the delays before restarts (default ``Backoff()``, the Server's).
        max_restarts: more restarts than this within ``restart_window`` and
            the monitor gives up; None (default) never gives up.
        restart_window: see ``max_restarts``, in seconds (default 60).
        stable_after: seconds a restarted worker must run before its backoff
            starts over at the first delay (default 10, the Server's).
        daemon: see :class:`~spoc.workers.AbstractWorker`.
        stop_timeout: see :class:`~spoc.workers.AbstractWorker`.
        reset_after: the deprecated spelling of ``stable_after``.

    Raises:
        TypeError: a monitored object is not a worker, ``backoff`` is not a
            Backoff, or a number is not a number.
        ValueError: a bad ``interval``, ``restart``, ``max_restarts``,
            ``restart_window`` or ``stable_after``.
    """

    def __init__(
        self,
        name: str | None,
        workers_to_monitor: Iterable[AbstractWorker],
        *,
        interval: float = 5.0,
        restart: Literal["on-failure", "always"] = "on-failure",
        backoff: Backoff | None = None,
        max_restarts: int | None = None,
        restart_window: float = 60.0,
        stable_after: float = 10.0,
        daemon: bool = True,
        stop_timeout: float = _DEFAULT_STOP_TIMEOUT,
        reset_after: float | None = None,
    ) -> None:
        super().__init__(name, daemon=daemon, stop_timeout=stop_timeout)
        owner = f"HealthMonitor {self.name!r}"
        self.workers: list[AbstractWorker] = list(workers_to_monitor)
        for worker in self.workers:
            if not isinstance(worker, AbstractWorker):
                raise TypeError(f"{owner}: cannot monitor {worker!r}: not a worker")
        self.interval = check_number(owner, "interval", interval, strict=True)
        if restart not in _POLICIES:
            raise ValueError(f"{owner}: restart must be 'on-failure' or 'always', got {restart!r}")
        self.restart_policy: Literal["on-failure", "always"] = restart
        if backoff is not None and not isinstance(backoff, Backoff):
            raise TypeError(f"{owner}: backoff must be a Backoff, got {type(backoff).__name__}")
        self.backoff = backoff if backoff is not None else Backoff()
        self.max_restarts = (
            None if max_restarts is None else check_count(owner, "max_restarts", max_restarts, minimum=0)
        )
        self.restart_window = check_number(owner, "restart_window", restart_window)
        if reset_after is not None:
            renamed("HealthMonitor(reset_after=...)", "HealthMonitor(stable_after=...)")
            stable_after = reset_after
        self.stable_after = check_number(owner, "stable_after", stable_after)
        self._restart_counts: dict[str, int] = {}
        self._counts_lock = threading.Lock()
        self._gave_up = False

    @property
    def restarts(self) -> dict[str, int]:
        """How many times each worker (by name) was restarted; a snapshot, readable from any thread."""
        with self._counts_lock:
            return dict(self._restart_counts)

    @property
    def gave_up(self) -> bool:
        """True once the monitor gave up (its last run then ended ``FAILED``), until it is started again."""
        return self._gave_up

    @property
    def reset_after(self) -> float:
        """The deprecated spelling of :attr:`stable_after`."""
        renamed("HealthMonitor.reset_after", "HealthMonitor.stable_after")
        return self.stable_after

    def main(self) -> Awaitable[None] | None:
        """Watch and restart until stopped (async when ``lifecycle`` is ``async def``).

        Raises:
            RuntimeError: the monitor gave up (see the class docstring).
        """
        if has_async(self.lifecycle):
            return self._amain()
        watch = self._new_watch()
        while self.is_running:
            events, timeout = self._look(watch)
            for event_type, data in events:
                emit(self, event_type, **data)
            self._raise_if_gave_up(watch)
            watch.wait(timeout)
        return None

    async def _amain(self) -> None:
        watch = self._new_watch()
        loop = asyncio.get_running_loop()
        while self.is_running:
            events, timeout = self._look(watch)
            for event_type, data in events:
                await aemit(self, event_type, **data)
            self._raise_if_gave_up(watch)
            await loop.run_in_executor(None, watch.wait, timeout)

    # -- the step both loops share -----------------------------------------------------------

    def _new_watch(self) -> _Watch:
        self._gave_up = False
        return _Watch(self)

    def _look(self, watch: _Watch) -> tuple[list[_Event], float]:
        events, timeout = watch.look()
        for event_type, data in events:
            if event_type == "restart":
                with self._counts_lock:
                    self._restart_counts[data["worker"]] = self._restart_counts.get(data["worker"], 0) + 1
        return events, timeout

    def _raise_if_gave_up(self, watch: _Watch) -> None:
        if watch.error is not None:
            self._gave_up = True
            raise watch.error  # the run ends FAILED: a supervisor above the monitor sees it


@dataclass(eq=False)
class _Watched(Supervised):
    """A watched worker, and the run the monitor last saw running (it has no state listener)."""

    seen_run: int = 0


class _Watch:
    """One run of a monitor: its records, the Server's Supervisor deciding, and the events to send."""

    def __init__(self, monitor: HealthMonitor) -> None:
        self.monitor = monitor
        self.records: dict[int, _Watched] = {}
        self.current: list[Supervised] = []
        self.decisions: list[WorkerEvent] = []
        self.error: RuntimeError | None = None
        self.supervisor = Supervisor(
            monitor.name,
            lambda: self.current,
            self.decisions.append,
            _nothing,
            _nothing,
            strategy="one_for_one",
            max_restarts=monitor.max_restarts,
            restart_window=monitor.restart_window,
            backoff=monitor.backoff,
            stable_after=monitor.stable_after,
            respect_stop=True,
            label=f"HealthMonitor {monitor.name!r}",
        )

    def look(self) -> tuple[list[_Event], float]:
        """One look at every worker: the lifecycle events to send, and the seconds until the next look."""
        now = time.monotonic()
        self._follow(now)
        before = {id(record): _Before(self.supervisor, record) for record in self.current}
        self.decisions.clear()
        deadline = self.supervisor.look()
        failures: list[_Event] = []
        restarts: list[_Event] = []
        for record in self.current:
            worker, seen = record.worker, before[id(record)]
            restarted = worker.supervision.run != seen.run
            # A run's end was dealt with: as the supervisor saw it then (a restart at
            # once may already have begun a new run).
            ended = record.handled_run != seen.handled_run and not seen.on_purpose
            if ended and record.ended_state is WorkerState.FAILED:
                error = {"exception": record.ended_exception, "phase": "worker", "worker": worker.name}
                failures.append(("error", error))
            if record.restarts != seen.restarts and restarted:  # the supervisor restarted it, and it started
                data = {"worker": worker.name, "attempt": record.attempt, "delay": record.restart_delay}
                restarts.append(("restart", data))
        events = failures + restarts
        for decision in self.decisions:
            if decision.kind == "gave_up":
                self.error = RuntimeError(f"HealthMonitor {self.monitor.name!r} gave up: {decision.message}")
                events.append(
                    ("error", {"exception": self.error, "phase": "restart", "worker": decision.worker})
                )
        timeout = self.monitor.interval
        if deadline is not None:
            timeout = min(timeout, max(0.0, deadline - time.monotonic()))
        return events, timeout

    def wait(self, timeout: float) -> None:
        """Until ``timeout`` passes, the monitor is stopped, or a process worker changes."""
        try:
            self.monitor.wait_readable(self.supervisor.worker_waitables(), timeout)
        except (OSError, ValueError):
            pass  # a worker's pipe was closed meanwhile, by whoever saw its process end: look again

    def _follow(self, now: float) -> None:
        """Bring the records up to date with :attr:`HealthMonitor.workers` and note who runs."""
        monitor = self.monitor
        records: dict[int, _Watched] = {}
        for worker in list(monitor.workers):
            if worker is monitor:
                continue
            record = self.records.get(id(worker))
            if record is None:  # a worker found ended is dealt with at once: handled_run stays 0
                record = _Watched(worker, monitor.restart_policy, worker.heartbeat_timeout)
            records[id(worker)] = record
            run = worker.supervision.run
            if worker.state is WorkerState.RUNNING and record.seen_run != run:
                record.running_since, record.seen_run = now, run  # as a Server's state listener does
        self.records = records
        self.current = list(records.values())


class _Before:
    """What a record looked like just before a look of the supervisor."""

    __slots__ = ("handled_run", "on_purpose", "restarts", "run")

    def __init__(self, supervisor: Supervisor, record: Supervised) -> None:
        worker = record.worker
        self.handled_run = record.handled_run
        self.restarts = record.restarts
        self.run = worker.supervision.run
        self.on_purpose = supervisor.stopped_on_purpose(record)


def _nothing() -> None:
    return None
