"""Exceptions raised by spoc-workers."""

from __future__ import annotations

__all__ = [
    "HttpBindError",
    "RemoteTraceback",
    "WorkerError",
    "WorkerExitedError",
    "WorkerHungError",
    "WorkerNotPicklableError",
    "WorkerRemoteError",
]


class WorkerError(Exception):
    """Base class of the errors spoc-workers raises itself."""


class HttpBindError(OSError):
    """:meth:`Server.start <spoc.workers.Server.start>` cannot bind the server's HTTP endpoint
    (the port is taken, the address is not this machine's); its message names both."""


class WorkerNotPicklableError(WorkerError, TypeError):
    """A process worker cannot be sent to its child process (spawn/forkserver).

    Attributes:
        worker_name: the worker's name.
        attribute_path: the dotted path of the first attribute that cannot be
            pickled, e.g. ``"context.client._lock"`` (empty when unknown).
    """

    def __init__(self, message: str, *, worker_name: str, attribute_path: str) -> None:
        super().__init__(message)
        self.worker_name = worker_name
        self.attribute_path = attribute_path


class RemoteTraceback(Exception):  # noqa: N818 (named like concurrent.futures' own)
    """The formatted traceback of an exception raised in a child process.

    Set as ``__cause__`` of the exception the parent reads, so that printing it
    shows where in the child it was raised.
    """

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


class WorkerRemoteError(WorkerError):
    """Stands for an exception of a child process that could not be pickled back.

    Attributes:
        type_name: qualified name of the original exception type.
        message: ``str()`` of the original exception.
        traceback: the formatted traceback, as text.
    """

    def __init__(self, type_name: str, message: str, traceback: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.traceback = traceback


class WorkerExitedError(WorkerError):
    """A process worker ended without reporting how: it exited or was killed.

    Attributes:
        exitcode: the process exit code; negative ``-N`` when killed by signal ``N``.
    """

    def __init__(self, message: str, exitcode: int | None) -> None:
        super().__init__(message)
        self.exitcode = exitcode


class WorkerHungError(WorkerError):
    """A supervised worker went silent for longer than its ``heartbeat_timeout``.

    Attributes:
        silent_for: seconds without a heartbeat when it was declared hung.
    """

    def __init__(self, message: str, silent_for: float) -> None:
        super().__init__(message)
        self.silent_for = silent_for
