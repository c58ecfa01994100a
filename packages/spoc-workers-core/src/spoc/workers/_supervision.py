"""What a supervisor needs of one worker, whatever carries it: ``worker.supervision``.

A :class:`~spoc.workers.Server` (and the patterns that watch workers) asks
these questions of every worker alike: which run is it on, how long has it
been silent, what can I wait on to see it change, how do I end it. The
answers differ by carrier (a thread cannot be terminated; a process's stack
has to be asked for), so each carrier provides its own :class:`Supervision`,
and a supervisor never branches on the carrier or reads a worker's private
state.

Nor does a :class:`Supervision`: the worker builds it and lends it what it
needs of the worker's internals (a :class:`Lent`, and a carrier's own extras
as arguments), so it reads only its own attributes and the worker's public API.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._state import WorkerState
    from ._worker import AbstractWorker

__all__ = ["HUNG_KILL_AFTER", "ExitListener", "Lent", "StateListener", "Supervision"]

HUNG_KILL_AFTER = 1.0
"""Seconds after which a hung process that ignored its terminate is killed (SIGKILL)."""

StateListener = Callable[["AbstractWorker", "WorkerState", "WorkerState"], None]
"""Called with ``(worker, old, new)`` after each state change."""
ExitListener = Callable[["AbstractWorker"], None]
"""Called with the worker once its thread or process has ended."""


@dataclass(frozen=True)
class Lent:
    """What a worker lends its :class:`Supervision` of its internals (built by ``_new_supervision()``).

    Callables, not values: the worker makes its supervision before its first
    run number and liveness exist, and a start replaces both.
    """

    run: Callable[[], int]
    """The number of the worker's current run."""
    stop_requested: Callable[[], bool]
    """Whether a stop was requested for the current (or last) run."""
    silent_for: Callable[[float | None], float]
    """Seconds since the current run's last sign of life, as of ``now`` (None: now)."""
    state_listeners: list[StateListener]
    """The worker's own list of state listeners (a supervisor's is added to it)."""
    exit_listeners: list[ExitListener]
    """The worker's own list of exit listeners (a supervisor's is added to it)."""


class Supervision:
    """The supervisor's view of one worker (see the module docstring).

    Not meant for worker code: a supervisor holds it, through ``worker.supervision``.
    """

    start_first = False
    """Start this worker before thread workers (under ``fork`` a child is a copy of
    this process: best made before the supervisor's threads exist)."""

    measures_memory = False
    """Whether :meth:`rss_bytes` can tell the worker's own resident memory (a process's)."""

    def __init__(self, worker: AbstractWorker, lent: Lent) -> None:
        self._worker = worker  # its public API only; the rest comes through ``lent``
        self._lent = lent
        self._owner: object | None = None

    @property
    def run(self) -> int:
        """The number of the worker's current run; it grows with each start (and when a run is abandoned)."""
        return self._lent.run()

    @property
    def owner(self) -> object | None:
        """The supervisor the worker was attached to (None when it has none)."""
        return self._owner

    def attach(self, owner: object, *, on_state: StateListener, on_exit: ExitListener) -> None:
        """Make ``owner`` the worker's one supervisor, told of every state change and exit.

        Raises:
            ValueError: the worker already has a supervisor.
        """
        if self._owner is not None:
            raise ValueError(f"worker {self._worker.name!r} already has a supervisor: {self._owner!r}")
        self._owner = owner
        self._lent.state_listeners.append(on_state)
        self._lent.exit_listeners.append(on_exit)

    @property
    def stop_requested(self) -> bool:
        """Whether ``stop()`` was called for the worker's current (or, once ended, last) run.

        It stays True after the run ended, until the next start, so a
        supervisor can tell a worker stopped on purpose from one that ended
        by itself or crashed.
        """
        return self._lent.stop_requested()

    def silent_for(self, now: float | None = None) -> float:
        """Seconds since the worker's last sign of life (0 while it waits in the framework)."""
        return self._lent.silent_for(now)

    def waitables(self) -> list[Any]:
        """Handles that become readable when the worker changes (for :func:`multiprocessing.connection.wait`).

        Empty for a thread worker: it tells its listeners itself.
        """
        return []

    def rss_bytes(self) -> int | None:
        """The resident memory of the worker's own process, in bytes; None when it has none of its own
        (a thread) or it is not alive."""
        return None

    def jobs_done(self) -> int | None:
        """The jobs the worker has finished over all its runs (see :meth:`AbstractWorker.jobs_done`)."""
        return self._worker.jobs_done()

    def stack(self) -> str | None:
        """The worker's current stack, when it can be read from here (a thread); else None."""
        return None

    def declare_hung(self, error: BaseException) -> float | None:
        """Give up on the current run: ``error`` (a WorkerHungError) becomes its exception.

        Returns:
            seconds after which :meth:`kill` is due if the worker is still
            alive, or None when nothing more can be done (a thread is left
            where it is).
        """
        raise NotImplementedError

    def terminate(self) -> bool:
        """End the worker now, without teardown, where the carrier allows it.

        Returns:
            False when it cannot be done (a thread cannot be ended from outside).
        """
        return False

    def kill(self) -> None:
        """End the worker at once (SIGKILL for a process); nothing for a thread."""
