"""What a Server tells its listeners: one ``WorkerEvent`` per thing that happened."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ._state import WorkerState

__all__ = [
    "RESTART_POLICIES",
    "RESTART_REASONS",
    "STRATEGIES",
    "EventListener",
    "Listeners",
    "RestartPolicy",
    "RestartReason",
    "Strategy",
    "WorkerEvent",
]

RestartPolicy = Literal["never", "on-failure", "always"]
"""When a Server restarts an ended worker (OTP's temporary, transient, permanent)."""
RESTART_POLICIES: tuple[RestartPolicy, ...] = ("never", "on-failure", "always")

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
"""Which workers a Server restarts with a failed one."""
STRATEGIES: tuple[Strategy, ...] = ("one_for_one", "one_for_all", "rest_for_one")

RestartReason = Literal["crash", "hang", "exit", "group", "recycle", "manual"]
"""Why a Server restarts a worker: it failed (``"crash"``: an exception, a
non-zero exit, a signal), it was declared hung (``"hang"``), it ended cleanly
under the ``"always"`` policy (``"exit"``), it went down with a sibling under
``one_for_all``/``rest_for_one`` (``"group"``), it reached a
:class:`~spoc.workers.Recycle` limit (``"recycle"``), or an operator asked
(``"manual"``). Only the first four count toward the restart intensity."""
RESTART_REASONS: tuple[RestartReason, ...] = ("crash", "hang", "exit", "group", "recycle", "manual")


@dataclass(frozen=True)
class WorkerEvent:
    """Something that happened to a worker of a :class:`~spoc.workers.Server`.

    Attributes:
        kind: ``"state"`` (a state change, processes included), ``"restart"``
            (a restart was scheduled, after ``delay`` seconds, for ``reason``),
            ``"hung"`` (no heartbeat within ``heartbeat_timeout``),
            ``"recycled"`` (a :class:`~spoc.workers.Recycle` limit was reached:
            the worker is stopped gracefully and restarted at once),
            ``"stop"`` (stopped on an operator's request, through
            :meth:`Server.stop_worker <spoc.workers.Server.stop_worker>`) or
            ``"gave_up"`` (the restart intensity was exceeded; the server
            stops everything).
        server: the server's name.
        worker: the worker's name.
        state: the worker's new state (``"state"`` events) or current state.
        previous: the state before (``"state"`` events).
        exception: the run's exception, when it ended FAILED.
        exitcode: a process worker's exit code, once it ended.
        signal: the name of the signal that killed a process worker (``"SIGKILL"``).
        restarts: how many times the server has restarted this worker.
        delay: seconds until the scheduled restart (``"restart"`` events).
        reason: why (see :data:`RestartReason`): ``"restart"`` events, and
            ``"recycle"``/``"manual"`` for ``"recycled"``/``"stop"`` events.
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
    reason: str | None = None
    message: str = ""
    time: float = field(default_factory=time.time)


EventListener = Callable[[WorkerEvent], None]
"""A callable receiving every :class:`WorkerEvent` of a server."""


class Listeners:
    """The event listeners of one server, called in turn with each event.

    A listener's exception is logged (naming ``owner``) and ignored: one
    faulty listener neither stops the others nor whoever emits.
    """

    def __init__(self, owner: str, first: EventListener | None = None) -> None:
        self.owner = owner
        self._listeners: list[EventListener] = [first] if first is not None else []

    def add(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener`` with every later event; returns a function that removes it."""
        self._listeners.append(listener)

        def remove() -> None:
            try:
                self._listeners.remove(listener)
            except ValueError:
                pass

        return remove

    def emit(self, event: WorkerEvent) -> None:
        """Call every listener with ``event``."""
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:
                logging.getLogger("spoc.workers.server").exception(
                    "%s: event listener %r raised", self.owner, listener
                )
