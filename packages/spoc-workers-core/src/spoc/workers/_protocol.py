"""The messages between a process worker's parent and its child: the whole wire format.

Two one-way pipes per run. *Control*, parent → child, carries one of three
short byte strings; *status*, child → parent, carries pickled reports, one
of the named tuples below (their module is importable, so every start
method can unpickle them).
"""

from __future__ import annotations

import pickle
import traceback
from multiprocessing.reduction import ForkingPickler
from typing import NamedTuple

from ._errors import RemoteTraceback, WorkerRemoteError

__all__ = ["DUMP", "EXIT", "STOP", "DoneReport", "ErrorReport", "Report", "StacksReport", "StateReport"]

# -- control: parent -> child ----------------------------------------------------------

STOP = b"stop"
"""Request a stop (what ``stop()`` does in a thread)."""
EXIT = b"exit"
"""End now: dump every thread's stack and exit with code 125, no teardown."""
DUMP = b"dump"
"""Send every thread's stack (a :class:`StacksReport`)."""

# -- status: child -> parent -----------------------------------------------------------


class StateReport(NamedTuple):
    """The run moved to a state (a :class:`~spoc.workers.WorkerState` value)."""

    state: str


class ErrorReport(NamedTuple):
    """A hook raised: the exception pickled when it can be, and always its text and traceback."""

    phase: str
    payload: bytes | None
    type_name: str
    text: str
    traceback: str

    @classmethod
    def of(cls, phase: str, exc: BaseException) -> ErrorReport:
        """The report of ``exc``, raised in ``phase``."""
        formatted = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            payload: bytes | None = bytes(ForkingPickler.dumps(exc))
        except Exception:  # not picklable: the parent rebuilds a WorkerRemoteError
            payload = None
        return cls(phase, payload, _qualname(type(exc)), str(exc), formatted)

    def rebuild(self) -> BaseException:
        """The exception, in the parent: the original when it unpickles, else a WorkerRemoteError.

        Its ``__cause__`` is a :class:`~spoc.workers.RemoteTraceback` holding the child's traceback.
        """
        exc: BaseException | None = None
        if self.payload is not None:
            try:
                exc = pickle.loads(self.payload)
            except Exception:
                exc = None
        if not isinstance(exc, BaseException):
            exc = WorkerRemoteError(self.type_name, self.text, self.traceback)
        exc.__cause__ = RemoteTraceback(self.traceback)
        return exc


class StacksReport(NamedTuple):
    """Every thread's stack, formatted, as asked for by :data:`DUMP`."""

    text: str


class DoneReport(NamedTuple):
    """The run is over: its final state and the exit code the child is about to exit with."""

    state: str
    exitcode: int


Report = StateReport | ErrorReport | StacksReport | DoneReport


def _qualname(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
