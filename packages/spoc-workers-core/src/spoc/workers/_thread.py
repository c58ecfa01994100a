"""``ThreadWorker``: a worker carried by a thread of this process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import ClassVar

from ._lifecycle import run_lifecycle
from ._stacks import thread_stack
from ._state import TERMINAL_STATES, WorkerState
from ._stop import StopToken
from ._supervision import Lent, Supervision
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

    def _new_supervision(self) -> Supervision:
        return _ThreadSupervision(self, self._lent(), abandon=self._abandon)

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
        """True while the worker's thread is alive (an abandoned, hung thread no longer counts)."""
        return self._carrier_alive()

    def _carrier_alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and thread.ident not in self._abandoned

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the worker's thread has ended, at most ``timeout`` seconds.

        Returns:
            True when the worker is not running (ended, or never started).
        """
        with self._lock:  # start() holds it from making the thread until it has started
            thread = self._thread
        if thread is None:
            return True
        if thread is threading.current_thread():
            raise RuntimeError(f"worker {self.name!r} cannot join itself")
        if thread.ident in self._abandoned:
            return True
        thread.join(timeout)
        return not self.is_alive()

    def _launch(self) -> None:
        token = self._token
        assert token is not None
        thread = threading.Thread(
            target=self._carry, args=(token, self._run), name=self.name, daemon=self.daemon
        )
        self._thread = thread
        thread.start()

    def _carry(self, token: StopToken, run: int) -> None:
        final = WorkerState.FAILED
        try:
            reporter = _ThreadReporter(run, report_state=self._report_state, report_error=self._report_error)
            final = run_lifecycle(self, token, reporter)
        finally:
            token.close()
            self._report_state(final, run)
            self._abandoned.pop(threading.get_ident(), None)
            self._notify_exit()

    def _report_state(self, state: WorkerState, run: int) -> None:
        """Run ``run`` moved to ``state`` (ignored once that run is no longer the current one)."""
        self._set_state(state, run=run)
        self._fire_changes()

    def _report_error(self, exc: BaseException, run: int) -> None:
        """Run ``run`` raised ``exc``; recorded only while that run is the current one."""
        with self._lock:
            if self._run == run:
                self._record_error(exc)

    def _abandon(self, error: BaseException) -> None:
        with self._lock:
            thread, token = self._thread, self._token
            if thread is None or token is None or self._state in TERMINAL_STATES:
                return
            if thread.ident is not None:
                self._abandoned[thread.ident] = token
            token.set()
            self._record_error(error)
            self._set_state(WorkerState.FAILED)
            self._run += 1  # whatever that thread reports from now on is ignored
        self._fire_changes()
        logger.warning("worker %r: run abandoned; its thread %r is left behind", self.name, thread.name)
        self._notify_exit()


class _ThreadReporter:
    """Records one thread run's progress on its worker, through the two reports the worker lends it."""

    def __init__(
        self,
        run: int,
        *,
        report_state: Callable[[WorkerState, int], None],
        report_error: Callable[[BaseException, int], None],
    ) -> None:
        self.run = run
        self._report_state = report_state
        self._report_error = report_error

    def state(self, state: WorkerState) -> None:
        self._report_state(state, self.run)

    def error(self, phase: str, exc: BaseException) -> None:
        self._report_error(exc, self.run)


class _ThreadSupervision(Supervision):
    """A thread's side of supervision: its stack is at hand, but it cannot be ended from outside."""

    _worker: ThreadWorker

    def __init__(self, worker: ThreadWorker, lent: Lent, *, abandon: Callable[[BaseException], None]) -> None:
        """``abandon``: what a thread worker lends besides, to give up on its current run."""
        super().__init__(worker, lent)
        self._abandon = abandon

    def stack(self) -> str:
        return thread_stack(self._worker.ident)

    def declare_hung(self, error: BaseException) -> None:
        # Python cannot end a thread: abandon the run, so that a new one can start.
        self._abandon(error)
