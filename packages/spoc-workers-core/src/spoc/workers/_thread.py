"""``ThreadWorker``: a worker carried by a thread of this process."""

from __future__ import annotations

import logging
import threading
from typing import ClassVar

from ._lifecycle import run_lifecycle
from ._state import WorkerState
from ._worker import AbstractWorker

__all__ = ["ThreadWorker"]

logger = logging.getLogger("spoc.workers.worker")


class ThreadWorker(AbstractWorker):
    """A worker that runs in its own thread: light, fast to start, shares memory.

    Best for I/O-bound work. Each :meth:`start` runs the lifecycle in a fresh
    ``threading.Thread`` named after the worker.
    """

    kind: ClassVar[str] = "thread"

    def _init_runtime(self) -> None:
        super()._init_runtime()
        self._thread: threading.Thread | None = None

    def _runtime_attrs(self) -> tuple[str, ...]:
        return (*super()._runtime_attrs(), "_thread")

    @property
    def thread(self) -> threading.Thread | None:
        """The thread of the current or last run (None before the first start)."""
        return self._thread

    @property
    def ident(self) -> int | None:
        """The thread identifier of the current or last run."""
        thread = self._thread
        return None if thread is None else thread.ident

    def is_alive(self) -> bool:
        """True while the worker's thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the worker's thread has ended, at most ``timeout`` seconds.

        Returns:
            True when the worker is not running (ended, or never started).
        """
        thread = self._thread
        if thread is None:
            return True
        if thread is threading.current_thread():
            raise RuntimeError(f"worker {self.name!r} cannot join itself")
        thread.join(timeout)
        return not thread.is_alive()

    def _launch(self) -> None:
        thread = threading.Thread(target=self._run, name=self.name, daemon=self.daemon)
        self._thread = thread
        thread.start()

    def _run(self) -> None:
        token = self._token
        assert token is not None
        final = WorkerState.FAILED
        try:
            final = run_lifecycle(self, token, _ThreadReporter(self))
        finally:
            token.close()
            self._set_state(final)
            self._notify_exit()


class _ThreadReporter:
    """Records a thread run's progress straight on the worker object."""

    def __init__(self, worker: ThreadWorker) -> None:
        self.worker = worker

    def state(self, state: WorkerState) -> None:
        self.worker._set_state(state)

    def error(self, phase: str, exc: BaseException) -> None:
        self.worker._record_error(exc)
