"""``HealthMonitor``: restart workers that failed, with backoff, using only the public worker API."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from spoc.workers import AbstractWorker, Backoff, ProcessWorker, ThreadWorker, WorkerState

from ._support import aemit, check_number, emit, has_async

__all__ = ["HealthMonitor"]

_POLICIES = ("on-failure", "always")
_TERMINAL = (WorkerState.STOPPED, WorkerState.FAILED)
_DEFAULT_STOP_TIMEOUT = 5.0


@dataclass
class _Track:
    """What the monitor knows about one worker."""

    attempt: int = 0  # consecutive restarts (the next delay's index)
    decided: bool = False  # the current end was looked at already
    restart_at: float | None = None
    delay: float = 0.0  # the (jittered) delay before the restart due at restart_at
    running_since: float | None = None


class HealthMonitor(ThreadWorker):
    """A thread worker that watches other workers and restarts those that failed.

    It uses the public worker API only: a worker is restarted by calling
    ``start()`` again on the same object (workers are restartable), never by
    building a new one. It leaves alone a worker that was never started
    (state ``NEW``), one that is running, and one whose ``stop()`` was
    called for its last run (stopped on purpose). By default it restarts
    only workers that ended ``FAILED``; ``restart="always"`` also restarts
    those whose ``main`` returned by itself.

    Restarts wait ``backoff.delay(attempt)`` seconds, ``attempt`` counting
    the consecutive restarts of that worker; it goes back to 0 once the
    worker has run for ``reset_after`` seconds. For each failure it emits
    ``lifecycle("error", exception=<the worker's exception>, phase="worker",
    worker=<name>)``, and for each restart ``lifecycle("restart",
    worker=<name>, attempt=<1, 2, ...>, delay=<seconds waited>)``.

    Process workers are watched through their sentinels, so their end is
    seen at once; thread workers are looked at every ``interval`` seconds.
    Use it when you run workers without a :class:`~spoc.workers.Server`;
    don't let two supervisors restart the same worker.

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
        backoff: the delays before restarts (default
            ``Backoff(base=0.1, factor=2, cap=30, jitter=0.1)``).
        max_restarts: give up on a worker after this many consecutive
            restarts (an ``"error"`` event with ``phase="restart"`` says so);
            None (default) never gives up.
        reset_after: seconds a restarted worker must run before its attempt
            count starts over.
        daemon: see :class:`~spoc.workers.AbstractWorker`.
        stop_timeout: see :class:`~spoc.workers.AbstractWorker`.

    Raises:
        TypeError: a monitored object is not a worker, or a number is not a number.
        ValueError: a bad ``interval``, ``restart``, ``max_restarts`` or ``reset_after``.
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
        reset_after: float = 60.0,
        daemon: bool = True,
        stop_timeout: float = _DEFAULT_STOP_TIMEOUT,
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
        self.backoff = backoff if backoff is not None else Backoff(base=0.1, factor=2.0, cap=30.0, jitter=0.1)
        if max_restarts is not None and (
            isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0
        ):
            raise ValueError(f"{owner}: max_restarts must be None or an int >= 0, got {max_restarts!r}")
        self.max_restarts = max_restarts
        self.reset_after = check_number(owner, "reset_after", reset_after)
        self._restart_counts: dict[str, int] = {}
        self._counts_lock = threading.Lock()
        self._tracks: dict[int, _Track] = {}

    @property
    def restarts(self) -> dict[str, int]:
        """How many times each worker (by name) was restarted; a snapshot, readable from any thread."""
        with self._counts_lock:
            return dict(self._restart_counts)

    def main(self) -> Awaitable[None] | None:
        """Watch and restart until stopped (async when ``lifecycle`` is ``async def``)."""
        if has_async(self.lifecycle):
            return self._amain()
        self._tracks = {}
        while self.is_running:
            events, wake_at = self._look()
            for event_type, data in events:
                emit(self, event_type, **data)
            self._wait(wake_at)
        return None

    async def _amain(self) -> None:
        self._tracks = {}
        loop = asyncio.get_running_loop()
        while self.is_running:
            events, wake_at = self._look()
            for event_type, data in events:
                await aemit(self, event_type, **data)
            await loop.run_in_executor(None, self._wait, wake_at)

    # -- one look at every worker ---------------------------------------------------------

    def _look(self) -> tuple[list[tuple[str, dict[str, Any]]], float]:
        events: list[tuple[str, dict[str, Any]]] = []
        now = time.monotonic()
        wake_at = now + self.interval
        for worker in list(self.workers):
            if worker is self:
                continue
            track = self._tracks.setdefault(id(worker), _Track())
            state = worker.state
            if state is WorkerState.NEW:
                continue  # never started: not ours to start
            if state not in _TERMINAL or worker.is_alive():
                if track.running_since is None:
                    track.running_since = now
                elif now - track.running_since >= self.reset_after:
                    track.attempt = 0
                track.decided, track.restart_at = False, None
                continue
            track.running_since = None
            if not track.decided:
                track.decided = True
                if worker._stop_requested():
                    continue  # stop() was called for this run: stopped on purpose
                if state is WorkerState.FAILED:
                    events.append(
                        ("error", {"exception": worker.exception, "phase": "worker", "worker": worker.name})
                    )
                elif self.restart_policy != "always":
                    continue
                if self.max_restarts is not None and track.attempt >= self.max_restarts:
                    error = RuntimeError(
                        f"HealthMonitor {self.name!r}: gave up on worker {worker.name!r} after "
                        f"{track.attempt} consecutive restart(s)"
                    )
                    events.append(("error", {"exception": error, "phase": "restart", "worker": worker.name}))
                    continue
                track.delay = self.backoff.delay(track.attempt)
                track.restart_at = now + track.delay
            if track.restart_at is None:
                continue
            if worker._stop_requested():  # stop() called since it ended: stopped on purpose
                track.restart_at = None
                continue
            if now < track.restart_at:
                wake_at = min(wake_at, track.restart_at)
                continue
            events.extend(self._restart(worker, track, now))
            if track.restart_at is not None:
                wake_at = min(wake_at, track.restart_at)
        return events, wake_at

    def _restart(self, worker: AbstractWorker, track: _Track, now: float) -> list[tuple[str, dict[str, Any]]]:
        delay = track.delay
        attempt = track.attempt + 1
        try:
            worker.start()
        except RuntimeError as exc:
            if worker.is_alive() or worker.state not in _TERMINAL:
                track.restart_at = None  # someone else restarted it meanwhile
                return []
            return self._start_failed(worker, track, now, exc)
        except Exception as exc:
            return self._start_failed(worker, track, now, exc)
        track.attempt = attempt
        track.decided, track.restart_at, track.running_since = False, None, now
        with self._counts_lock:
            self._restart_counts[worker.name] = self._restart_counts.get(worker.name, 0) + 1
        return [("restart", {"worker": worker.name, "attempt": attempt, "delay": delay})]

    def _start_failed(
        self, worker: AbstractWorker, track: _Track, now: float, exc: Exception
    ) -> list[tuple[str, dict[str, Any]]]:
        track.attempt += 1
        track.delay = self.backoff.delay(track.attempt)
        track.restart_at = now + track.delay
        return [("error", {"exception": exc, "phase": "restart", "worker": worker.name})]

    def _wait(self, wake_at: float) -> None:
        """Until ``wake_at``, a stop, or the end of a watched process."""
        timeout = max(0.0, wake_at - time.monotonic())
        sentinels = []
        for worker in list(self.workers):
            if isinstance(worker, ProcessWorker) and worker.is_alive():
                sentinel = worker.sentinel
                if sentinel is not None:
                    sentinels.append(sentinel)
        if sentinels:
            self.wait_readable(sentinels, timeout)
        else:
            self.sleep(timeout)
