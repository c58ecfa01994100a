"""The states of a worker and the moves allowed between them."""

from __future__ import annotations

from enum import Enum

__all__ = ["TERMINAL_STATES", "WorkerState", "check_transition"]


class WorkerState(str, Enum):
    """Where a worker is in its life; the value is a plain string, JSON-friendly.

    ``NEW → STARTING → RUNNING → STOPPING → STOPPED | FAILED``, and from
    ``STOPPED`` or ``FAILED`` back to ``STARTING`` when the worker is started again.
    """

    NEW = "new"
    """Created, never started."""
    STARTING = "starting"
    """``start()`` was called; ``setup()`` has not finished yet."""
    RUNNING = "running"
    """``setup()`` and the "startup" event are done; ``main()`` runs."""
    STOPPING = "stopping"
    """A stop was requested or ``main()`` returned; ``teardown()`` is due or running."""
    STOPPED = "stopped"
    """Ended cleanly."""
    FAILED = "failed"
    """Ended with an error: a hook raised, the process died, or it had to be killed."""

    def __str__(self) -> str:
        return self.value


TERMINAL_STATES = frozenset({WorkerState.STOPPED, WorkerState.FAILED})

_ALLOWED: dict[WorkerState, frozenset[WorkerState]] = {
    WorkerState.NEW: frozenset({WorkerState.STARTING}),
    WorkerState.STARTING: frozenset(
        {WorkerState.RUNNING, WorkerState.STOPPING, WorkerState.STOPPED, WorkerState.FAILED}
    ),
    WorkerState.RUNNING: frozenset({WorkerState.STOPPING, WorkerState.STOPPED, WorkerState.FAILED}),
    WorkerState.STOPPING: frozenset({WorkerState.STOPPED, WorkerState.FAILED}),
    WorkerState.STOPPED: frozenset({WorkerState.STARTING}),
    WorkerState.FAILED: frozenset({WorkerState.STARTING}),
}


def check_transition(old: WorkerState, new: WorkerState) -> None:
    """Raise ``RuntimeError`` unless a worker may move from ``old`` to ``new``."""
    if new is not old and new not in _ALLOWED[old]:
        raise RuntimeError(f"illegal worker state change {old.value} -> {new.value}")
