"""``Server``: start, watch and stop many workers as one unit."""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
import time
import traceback
import weakref
from multiprocessing.connection import wait
from types import TracebackType
from typing import Any

from ._process import ProcessWorker
from ._signals import SignalHandlers, WakeupPipe
from ._state import TERMINAL_STATES, WorkerState
from ._worker import AbstractWorker

__all__ = ["Server"]

logger = logging.getLogger("spoc.workers.server")

DEFAULT_SHUTDOWN_TIMEOUT = 10.0
TERMINATE_GRACE = 0.5  # after terminate(), before kill()
KILL_GRACE = 0.4  # after kill(), for the kernel to reap
POLL = 0.05  # the longest wait when a worker offers nothing to wait on


class Server:
    """Runs many workers as one unit: start together, stop together, on signals too.

    Args:
        name: the server's name, used in logs.
        shutdown_timeout: seconds :meth:`run_forever` (and leaving a ``with``
            block) gives the workers to stop before process workers are
            terminated then killed.

    Constructing a server touches no signal handler and no global state;
    several servers in one process do not interfere. :meth:`run_forever`
    handles SIGINT and SIGTERM only while it runs.
    """

    def __init__(self, name: str = "Server", *, shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> None:
        if not isinstance(name, str):
            raise TypeError(f"Server name must be a str, got {type(name).__name__} {name!r}")
        if isinstance(shutdown_timeout, bool) or not isinstance(shutdown_timeout, (int, float)):
            raise TypeError(f"server {name!r}: shutdown_timeout must be a number of seconds")
        if not (shutdown_timeout >= 0 and math.isfinite(shutdown_timeout)):
            raise ValueError(f"server {name!r}: shutdown_timeout must be >= 0 and finite")
        self.name = name
        self.shutdown_timeout = float(shutdown_timeout)
        self._workers: list[AbstractWorker] = []
        self._lock = threading.RLock()
        self._running = False
        self._stop_requested = False
        self._signals: list[int] = []
        self._wakeup = WakeupPipe()
        weakref.finalize(self, self._wakeup.close)

    # -- membership -----------------------------------------------------------

    @property
    def workers(self) -> tuple[AbstractWorker, ...]:
        """The workers, in the order they were added."""
        with self._lock:
            return tuple(self._workers)

    def add_worker(self, worker: AbstractWorker) -> AbstractWorker:
        """Add ``worker``; if the server is running, start it at once.

        Returns:
            the worker, for chaining.

        Raises:
            TypeError: ``worker`` is not a worker.
            ValueError: a worker of that name is already here, or this worker
                was already added to this or another server.
        """
        if not isinstance(worker, AbstractWorker):
            raise TypeError(
                f"server {self.name!r}: add_worker() expects a ThreadWorker or ProcessWorker, "
                f"got {type(worker).__name__}"
            )
        with self._lock:
            owner = worker._owner
            if owner is self:
                raise ValueError(f"server {self.name!r}: worker {worker.name!r} was already added")
            if owner is not None:
                other = getattr(owner, "name", "?")
                raise ValueError(
                    f"server {self.name!r}: worker {worker.name!r} already belongs to server {other!r}"
                )
            if any(w.name == worker.name for w in self._workers):
                raise ValueError(f"server {self.name!r}: a worker named {worker.name!r} was already added")
            worker._owner = self
            worker._exit_listeners.append(self._worker_exited)
            self._workers.append(worker)
            start_now = self._running and not self._stop_requested
        if start_now:
            worker.start()
        return worker

    # -- running --------------------------------------------------------------

    def start(self) -> None:
        """Start every worker that is not running.

        Process workers start first, so that under ``fork`` they are forked
        before any thread of this server exists. If one fails to start, those
        already started are stopped and the error is raised.
        """
        with self._lock:
            self._running = True
            self._stop_requested = False
            order = sorted(self._workers, key=lambda w: not isinstance(w, ProcessWorker))
        started: list[AbstractWorker] = []
        try:
            for worker in order:
                if worker.state is WorkerState.NEW or worker.state in TERMINAL_STATES:
                    worker.start()
                    started.append(worker)
        except BaseException:
            for worker in reversed(started):
                worker.stop()
            self._join(started, self.shutdown_timeout)
            with self._lock:
                self._running = False
            raise
        logger.info("server %r started %d worker(s)", self.name, len(started))

    def stop(self) -> None:
        """Ask every worker to stop, in the reverse order of adding; returns at once.

        Safe from any thread and from a signal handler.
        """
        self._stop_requested = True
        for worker in reversed(self._workers):
            worker.stop()
        self._wakeup.wake()

    def join_all(self, timeout: float | None = 5.0) -> list[AbstractWorker]:
        """Wait for every worker to end, sharing one deadline ``timeout`` seconds away.

        When the deadline passes, process workers still alive are terminated,
        then killed; threads still alive are logged with their current stack
        (they are daemon threads by default and never block interpreter exit).

        Returns:
            the workers still alive (empty when all ended).
        """
        still_alive = self._join(self.workers, timeout)
        with self._lock:
            if not any(w.is_alive() for w in self._workers):
                self._running = False
        return still_alive

    def run_forever(self) -> int:
        """Start the workers and run until a signal arrives or every worker has ended.

        SIGINT and SIGTERM are handled while it runs (the previous handlers
        are restored after); off the main thread it runs without them. Then
        every worker is stopped and joined within ``shutdown_timeout``; a
        second signal during that shutdown ends the wait at once.

        Returns:
            an exit status: 0 when every worker ended cleanly, 1 when one
            failed, had to be killed or would not stop.
        """
        self._signals.clear()
        with SignalHandlers(self._on_signal) as handlers:
            if not handlers.installed:
                logger.warning(
                    "server %r: run_forever() is not running in the main thread, so SIGINT and "
                    "SIGTERM are not handled here; call stop() to end it",
                    self.name,
                )
            still_alive: list[AbstractWorker] = []
            try:
                self.start()
                while not self._stop_requested and not self._signals:
                    live = [w for w in self.workers if w.state not in TERMINAL_STATES]
                    if not live:
                        break
                    self._wait_for_change(live, None)
            finally:
                if self._signals:
                    logger.info(
                        "server %r: received %s; stopping", self.name, signal.Signals(self._signals[0]).name
                    )
                begun = time.monotonic()
                self.stop()
                still_alive = self.join_all(self.shutdown_timeout)
                logger.info("server %r stopped in %.3fs", self.name, time.monotonic() - begun)
        failed = [w for w in self.workers if w.state is not WorkerState.STOPPED]
        for worker in failed:
            logger.error("server %r: worker %r ended %s", self.name, worker.name, worker.state.value)
        return 1 if failed or still_alive else 0

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self.join_all(self.shutdown_timeout)

    def __repr__(self) -> str:
        return f"<Server {self.name!r} workers={len(self._workers)}>"

    # -- internals ------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        # A signal handler: flags and a wake-up byte only.
        self._signals.append(signum)
        self._wakeup.wake()

    def _worker_exited(self, worker: AbstractWorker) -> None:
        self._wakeup.wake()

    def _escalation_requested(self) -> bool:
        return len(self._signals) > 1

    def _wait_for_change(self, workers: list[AbstractWorker], timeout: float | None) -> None:
        """Block until a worker may have changed, a signal came, or ``timeout`` passed."""
        waitables: list[Any] = [self._wakeup]
        for worker in workers:
            if isinstance(worker, ProcessWorker):
                handles = worker._waitables()
                if not handles and worker.is_alive():  # rare: see ProcessWorker._waitables
                    timeout = POLL if timeout is None else min(timeout, POLL)
                waitables += handles
        wait(waitables, timeout)
        self._wakeup.drain()

    def _join(
        self, workers: tuple[AbstractWorker, ...] | list[AbstractWorker], timeout: float | None
    ) -> list[AbstractWorker]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            alive = [w for w in workers if w.is_alive()]
            if not alive:
                for worker in workers:
                    worker.join(0)  # reap, read the last status
                return []
            remaining = None if deadline is None else deadline - time.monotonic()
            if (remaining is not None and remaining <= 0) or self._escalation_requested():
                break
            self._wait_for_change(alive, remaining)
        return self._force_end(alive)

    def _force_end(self, alive: list[AbstractWorker]) -> list[AbstractWorker]:
        processes = [w for w in alive if isinstance(w, ProcessWorker)]
        for worker in processes:
            logger.warning(
                "server %r: process worker %r did not stop in time; terminating", self.name, worker.name
            )
            worker.terminate()
        if processes:
            self._join_processes(processes, TERMINATE_GRACE)
        for worker in processes:
            if worker.is_alive():
                logger.warning("server %r: process worker %r still alive; killing", self.name, worker.name)
                worker.kill()
        if processes:
            self._join_processes(processes, KILL_GRACE)
        frames = sys._current_frames()
        for thread_worker in alive:
            if isinstance(thread_worker, ProcessWorker) or not thread_worker.is_alive():
                continue
            ident = getattr(thread_worker, "ident", None)
            frame = frames.get(ident) if ident is not None else None
            stack = "".join(traceback.format_stack(frame)) if frame is not None else "(no stack)\n"
            logger.error(
                "server %r: thread worker %r did not stop in time; it is left running. Its stack:\n%s",
                self.name,
                thread_worker.name,
                stack,
            )
        return [w for w in alive if w.is_alive()]

    def _join_processes(self, processes: list[ProcessWorker], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for worker in processes:
            worker.join(max(0.0, deadline - time.monotonic()))
