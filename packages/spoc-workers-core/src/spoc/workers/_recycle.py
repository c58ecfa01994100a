"""``Recycle``: replace a worker with a fresh run after an age, a memory size or a number of jobs.

A recycle is not a failure: the worker is stopped gracefully (its current
job finishes, ``teardown`` runs) and started again at once, with a
``"recycled"`` event, and it never counts toward the server's restart
intensity. The limits are checked by the server's supervisor thread, in the
parent process: the age on its clock, the resident memory of a process
worker's child in ``/proc``, the jobs through the worker's
:meth:`~spoc.workers.AbstractWorker.jobs_done`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._checks import check_count, check_number
from ._state import WorkerState

if TYPE_CHECKING:
    from ._worker import AbstractWorker

__all__ = ["DEFAULT_RECYCLE_INTERVAL", "MIB", "Recycle", "RecycleWatch"]

DEFAULT_RECYCLE_INTERVAL = 1.0
"""Seconds between two looks at a worker's memory and job count."""
MIB = 1024 * 1024


@dataclass(frozen=True)
class Recycle:
    """When a :class:`~spoc.workers.Server` replaces a worker's run with a fresh one.

    Give it to :meth:`Server.add_worker <spoc.workers.Server.add_worker>`:
    ``server.add_worker(w, recycle=Recycle(seconds=3600, rss_mb=512))``.
    Whichever limit is reached first recycles the worker.

    Args:
        seconds: the age of a run (since it reached RUNNING) at which it is recycled.
        rss_mb: the resident memory of a process worker's child, in MiB (of
            1,048,576 bytes), at which it is recycled. Process workers only:
            a thread shares its memory with the whole process.
        jobs: the number of jobs a run may finish (successfully or not)
            before it is recycled, as the worker counts them in
            :meth:`~spoc.workers.AbstractWorker.jobs_done`; for workers that
            count jobs (job processors).
        jitter: spreads the recycles of sibling workers started together:
            each run's limits are drawn between ``(1 - jitter)`` times and
            the full value given, so they never exceed it. From 0 (none) to
            below 1.
        interval: seconds between two looks at the memory and the job count
            (the age needs no looking: its moment is known).

    Raises:
        ValueError: no limit given, a limit not above 0, or ``jitter`` or
            ``interval`` out of range.
        TypeError: a value of the wrong type.
    """

    seconds: float | None = None
    rss_mb: float | None = None
    jobs: int | None = None
    jitter: float = 0.1
    interval: float = DEFAULT_RECYCLE_INTERVAL

    def __post_init__(self) -> None:
        owner = "Recycle"
        if self.seconds is None and self.rss_mb is None and self.jobs is None:
            raise ValueError("Recycle needs at least one limit: seconds, rss_mb or jobs")
        if self.seconds is not None:
            check_number(owner, "seconds", self.seconds, strict=True)
        if self.rss_mb is not None:
            check_number(owner, "rss_mb", self.rss_mb, strict=True)
        if self.jobs is not None:
            check_count(owner, "jobs", self.jobs, minimum=1)
        check_number(owner, "jitter", self.jitter)
        if not self.jitter < 1:
            raise ValueError(f"Recycle: jitter must be in [0, 1), got {self.jitter!r}")
        check_number(owner, "interval", self.interval, strict=True)

    @property
    def polls(self) -> bool:
        """Whether a limit has to be looked at repeatedly (memory or jobs)."""
        return self.rss_mb is not None or self.jobs is not None


class RecycleWatch:
    """One worker's limits for its current run, as the supervisor checks them.

    Made by :meth:`for_worker`; the Server calls :meth:`start_run` as each
    run reaches RUNNING, its supervisor :meth:`check` on each look.
    """

    def __init__(self, recycle: Recycle, rng: random.Random | None = None) -> None:
        self.recycle = recycle
        self._rng = rng or random.Random()
        self.run = 0  # the worker run these limits are for
        self.started = 0.0  # time.monotonic() when that run reached RUNNING
        self.jobs_at_start = 0
        self.seconds: float | None = None
        self.rss_bytes: float | None = None
        self.jobs: int | None = None
        self.recycled_run = 0  # the run a recycle was asked of (each run is recycled once)
        self.next_poll = 0.0

    @classmethod
    def for_worker(cls, owner: str, worker: AbstractWorker, recycle: Recycle) -> RecycleWatch:
        """A watch of ``recycle``'s limits on ``worker``, checked to be ones it can be measured by.

        Raises:
            TypeError: ``recycle`` is not a :class:`Recycle`.
            ValueError: ``rss_mb`` for a thread worker, ``jobs`` for a worker that does not count jobs.
        """
        if not isinstance(recycle, Recycle):
            raise TypeError(f"{owner}: recycle must be a Recycle, got {type(recycle).__name__}")
        if recycle.rss_mb is not None and not worker.supervision.measures_memory:
            raise ValueError(
                f"{owner}: Recycle(rss_mb=...) needs a process worker: a {worker.kind} worker shares "
                "its memory with the whole process, so its own cannot be measured; use seconds or jobs"
            )
        if recycle.jobs is not None and worker.supervision.jobs_done() is None:
            raise ValueError(
                f"{owner}: Recycle(jobs=...) needs a worker that counts its jobs "
                f"({type(worker).__name__}.jobs_done() returns None; job processors count them)"
            )
        return cls(recycle)

    def start_run(self, worker: AbstractWorker, now: float) -> None:
        """``worker``'s new run reached RUNNING: draw its limits (see :meth:`begin`)."""
        jobs = worker.supervision.jobs_done() if self.recycle.jobs is not None else None
        self.begin(worker.supervision.run, now, jobs)

    def watches(self, worker: AbstractWorker) -> bool:
        """Whether ``worker``'s current run is running, under these limits, and not yet recycled."""
        return (
            self.recycled_run != self.run
            and self.run == worker.supervision.run
            and worker.state is WorkerState.RUNNING
        )

    def check(self, worker: AbstractWorker, now: float) -> str | None:
        """Why ``worker``'s run (see :meth:`watches`) must be recycled now, or None.

        Reads its memory and job count when a poll is due. A run is recycled
        once: after a reason was returned, :meth:`watches` is False until the
        next run.
        """
        rss = jobs = None
        if self.poll_due(now):
            if self.rss_bytes is not None:
                rss = worker.supervision.rss_bytes()
            if self.jobs is not None:
                jobs = worker.supervision.jobs_done()
        why = self.due(now, rss, jobs)
        if why is not None:
            self.recycled_run = self.run
        return why

    def begin(self, run: int, now: float, jobs_done: int | None) -> None:
        """A new run reached RUNNING: draw its limits."""
        recycle = self.recycle
        factor = 1.0 - recycle.jitter * self._rng.random()
        self.run = run
        self.started = now
        self.jobs_at_start = jobs_done or 0
        self.seconds = None if recycle.seconds is None else recycle.seconds * factor
        self.rss_bytes = None if recycle.rss_mb is None else recycle.rss_mb * MIB * factor
        self.jobs = None if recycle.jobs is None else max(1, round(recycle.jobs * factor))
        self.next_poll = now + recycle.interval

    def due(self, now: float, rss_bytes: int | None, jobs_done: int | None) -> str | None:
        """Why the run must be recycled now (``"age 3600s >= 3600s"``), or None.

        ``rss_bytes`` and ``jobs_done`` are the worker's current figures (None
        when unknown); they are read only when a poll is due (see
        :meth:`poll_due`).
        """
        if self.seconds is not None and now - self.started >= self.seconds:
            return f"age {now - self.started:.1f}s >= {self.seconds:.1f}s"
        if self.rss_bytes is not None and rss_bytes is not None and rss_bytes >= self.rss_bytes:
            return f"resident memory {rss_bytes / MIB:.1f} MiB >= {self.rss_bytes / MIB:.1f} MiB"
        if self.jobs is not None and jobs_done is not None and jobs_done - self.jobs_at_start >= self.jobs:
            return f"{jobs_done - self.jobs_at_start} jobs >= {self.jobs}"
        return None

    def poll_due(self, now: float) -> bool:
        """Whether memory and jobs are to be read now (and schedules the next look)."""
        if not self.recycle.polls or now < self.next_poll:
            return False
        self.next_poll = now + self.recycle.interval
        return True

    def next_moment(self) -> float | None:
        """The next moment a limit may be reached: the age's, or the next poll."""
        moments = []
        if self.seconds is not None:
            moments.append(self.started + self.seconds)
        if self.recycle.polls:
            moments.append(self.next_poll)
        return min(moments) if moments else None
