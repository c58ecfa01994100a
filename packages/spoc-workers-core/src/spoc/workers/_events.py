"""What a Server tells its listeners: one ``WorkerEvent`` per thing that happened."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ._state import WorkerState

__all__ = ["RESTART_POLICIES", "STRATEGIES", "EventListener", "RestartPolicy", "Strategy", "WorkerEvent"]

RestartPolicy = Literal["never", "on-failure", "always"]
"""When a Server restarts an ended worker (OTP's temporary, transient, permanent)."""
RESTART_POLICIES: tuple[RestartPolicy, ...] = ("never", "on-failure", "always")

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
"""Which workers a Server restarts with a failed one."""
STRATEGIES: tuple[Strategy, ...] = ("one_for_one", "one_for_all", "rest_for_one")


@dataclass(frozen=True)
class WorkerEvent:
    """Something that happened to a worker of a :class:`~spoc.workers.Server`.

    Attributes:
        kind: ``"state"`` (a state change, processes included), ``"restart"``
            (a restart was scheduled, after ``delay`` seconds), ``"hung"`` (no
            heartbeat within ``heartbeat_timeout``) or ``"gave_up"`` (the
            restart intensity was exceeded; the server stops everything).
        server: the server's name.
        worker: the worker's name.
        state: the worker's new state (``"state"`` events) or current state.
        previous: the state before (``"state"`` events).
        exception: the run's exception, when it ended FAILED.
        exitcode: a process worker's exit code, once it ended.
        signal: the name of the signal that killed a process worker (``"SIGKILL"``).
        restarts: how many times the server has restarted this worker.
        delay: seconds until the scheduled restart (``"restart"`` events).
        message: a one-line description, the same as the log line.
        time: ``time.time()`` when it happened.
    """

    kind: str
    server: str
    worker: str
    state: WorkerState | None = None
    previous: WorkerState | None = None
    exception: BaseException | None = None
    exitcode: int | None = None
    signal: str | None = None
    restarts: int = 0
    delay: float | None = None
    message: str = ""
    time: float = field(default_factory=time.time)


EventListener = Callable[[WorkerEvent], None]
"""A callable receiving every :class:`WorkerEvent` of a server."""
