"""``Supervised``: what a supervisor knows about one worker, and how its last run ended.

The record is shared by the Server (its ``status()`` reads it), the
supervisor (which decides on it) and the patterns' ``HealthMonitor`` (which
keeps its own records for the same supervisor).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._events import RestartPolicy, RestartReason
from ._process import signal_name
from ._recycle import RecycleWatch
from ._state import TERMINAL_STATES, WorkerState
from ._worker import AbstractWorker

__all__ = ["Supervised", "describe_outcome", "outcome_of", "should_restart"]


@dataclass(eq=False)
class Supervised:
    """What the supervisor knows about one worker."""

    worker: AbstractWorker
    restart: RestartPolicy
    heartbeat_timeout: float | None
    restarts: int = 0
    attempt: int = 0  # position in the backoff schedule
    running_since: float | None = None  # time.monotonic() of the last RUNNING
    handled_run: int = 0  # the worker run whose end was dealt with
    restart_at: float | None = None  # time.monotonic() of a scheduled restart
    restart_delay: float = 0.0  # the delay of the restart scheduled last
    stop_intended: bool = False  # stopped by the supervisor (a group restart): not a crash
    hung_run: int = 0  # the worker run declared hung
    declared_hung: bool = False  # until its restart: the end is a crash, though its thread was told to stop
    kill_at: float | None = None
    last_error: str | None = None
    ended_state: WorkerState | None = None  # how the run dealt with last ended, read as it was dealt with
    ended_exception: BaseException | None = None  # (a restart at once may already have begun a new run)
    restart_reason: RestartReason | None = None  # why the scheduled restart happens
    reasons: dict[str, int] = field(default_factory=dict)  # restarts so far, by reason
    recycle: RecycleWatch | None = None
    held: bool = False  # stopped on request: not restarted until asked

    def settled(self) -> bool:
        """Ended, its end dealt with, no restart pending, and not waiting for an operator."""
        worker = self.worker
        return (
            worker.state in TERMINAL_STATES
            and self.handled_run == worker.supervision.run
            and self.restart_at is None
            and not self.held
        )


def outcome_of(worker: AbstractWorker) -> dict[str, Any]:
    """How ``worker``'s last run ended: exception, exit code, signal name."""
    exitcode = worker.exitcode
    return {"exception": worker.exception, "exitcode": exitcode, "signal": signal_name(exitcode)}


def should_restart(policy: RestartPolicy, state: WorkerState) -> bool:
    """Whether ``policy`` restarts a worker whose run ended in ``state``."""
    return policy == "always" or (policy == "on-failure" and state is WorkerState.FAILED)


def describe_outcome(outcome: dict[str, Any]) -> str:
    """How a run ended, for logs and ``last_error`` (``"killed by SIGKILL"``, ``"failed: ..."``)."""
    if outcome["signal"]:
        return f"killed by {outcome['signal']}"
    if outcome["exception"] is not None:
        return f"failed: {outcome['exception']!r}"
    if outcome["exitcode"]:
        return f"exited with code {outcome['exitcode']}"
    return "ended"
