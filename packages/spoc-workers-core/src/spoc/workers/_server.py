"""``Server``: start, supervise and stop many workers as one unit."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from types import TracebackType
from typing import Any

from ._backoff import Backoff
from ._checks import check_count, check_number
from ._events import RESTART_POLICIES, STRATEGIES, EventListener, RestartPolicy, Strategy, WorkerEvent
from ._process import wait_for_change
from ._signals import SignalHandlers, WakeupPipe
from ._stacks import all_stacks
from ._state import TERMINAL_STATES, WorkerState
from ._supervisor import Supervised, Supervisor, outcome_of
from ._worker import AbstractWorker, check_initialised

__all__ = ["Server"]

logger = logging.getLogger("spoc.workers.server")

DEFAULT_SHUTDOWN_TIMEOUT = 10.0
TERMINATE_GRACE = 0.5  # after terminate(), before kill()
KILL_GRACE = 0.4  # after kill(), for the kernel to reap
POLL = 0.05  # the longest wait when a worker offers nothing to wait on
LEAVING_GRACE = 1.0  # how long a worker that reported its end may take to leave its thread or process


class Server:
    """Runs many workers as one unit: start together, supervise, stop together, on signals too.

    Args:
        name: the server's name, used in logs and events.
        shutdown_timeout: seconds :meth:`run_forever` (and leaving a ``with``
            block) gives the workers to stop before process workers are
            terminated then killed.
        strategy: which workers restart with a failed one: ``"one_for_one"``
            (only it), ``"one_for_all"`` (every worker), ``"rest_for_one"``
            (it and those added after it). Workers whose policy is ``"never"``
            are stopped with the group but not restarted.
        max_restarts: the restart intensity: more than this many restarts
            within ``restart_window`` seconds and the server gives up: it
            emits one ``"gave_up"`` event, stops everything and
            :meth:`run_forever` returns 1.
        restart_window: see ``max_restarts``, in seconds.
        backoff: the delays between restarts of the same worker.
        stable_after: seconds a worker must have been running for its
            backoff to start over at its first delay.
        on_event: a listener for every :class:`WorkerEvent` (see :meth:`add_listener`).

    Constructing a server touches no signal handler and no global state;
    several servers in one process do not interfere. :meth:`run_forever`
    handles SIGINT and SIGTERM (and SIGUSR1: log the status and every stack)
    only while it runs.
    """

    def __init__(
        self,
        name: str = "Server",
        *,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        strategy: Strategy = "one_for_one",
        max_restarts: int = 10,
        restart_window: float = 60.0,
        backoff: Backoff | None = None,
        stable_after: float = 10.0,
        on_event: EventListener | None = None,
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"Server name must be a str, got {type(name).__name__} {name!r}")
        owner = f"server {name!r}"
        check_number(owner, "shutdown_timeout", shutdown_timeout)
        check_number(owner, "restart_window", restart_window)
        check_number(owner, "stable_after", stable_after)
        check_count(owner, "max_restarts", max_restarts, minimum=0)
        if strategy not in STRATEGIES:
            raise ValueError(f"server {name!r}: strategy must be one of {STRATEGIES}, got {strategy!r}")
        if backoff is not None and not isinstance(backoff, Backoff):
            raise TypeError(f"server {name!r}: backoff must be a Backoff, got {type(backoff).__name__}")
        self.name = name
        self.shutdown_timeout = float(shutdown_timeout)
        self._records: list[Supervised] = []
        self._listeners: list[EventListener] = [on_event] if on_event is not None else []
        self._lock = threading.RLock()
        self._running = False
        self._stop_requested = False
        self._signals: list[int] = []
        self._dump_requested = False
        self._wakeup = WakeupPipe()
        self._supervisor = Supervisor(
            name,
            self._snapshot,
            self._emit,
            self.stop,
            self._wakeup.wake,
            strategy=strategy,
            max_restarts=max_restarts,
            restart_window=float(restart_window),
            backoff=backoff or Backoff(),
            stable_after=float(stable_after),
        )

    # -- membership -----------------------------------------------------------

    @property
    def workers(self) -> tuple[AbstractWorker, ...]:
        """The workers, in the order they were added."""
        with self._lock:
            return tuple(record.worker for record in self._records)

    @property
    def gave_up(self) -> bool:
        """True once the restart intensity was exceeded."""
        return self._supervisor.gave_up

    def add_worker(
        self,
        worker: AbstractWorker,
        *,
        restart: RestartPolicy | None = None,
        heartbeat_timeout: float | None = None,
    ) -> AbstractWorker:
        """Add ``worker``; if the server is running, start it at once.

        Args:
            worker: a ThreadWorker or ProcessWorker.
            restart: ``"never"``, ``"on-failure"`` or ``"always"``; default:
                the worker class's ``restart`` attribute (``"never"``).
            heartbeat_timeout: seconds of silence after which the worker is
                declared hung (see :meth:`AbstractWorker.heartbeat`); default:
                the class's ``heartbeat_timeout`` (None: not watched).

        Returns:
            the worker, for chaining.

        Raises:
            TypeError: ``worker`` is not a worker.
            ValueError: a worker of that name is already here, this worker
                was already added to this or another server, or a bad
                ``restart``/``heartbeat_timeout``.
        """
        if not isinstance(worker, AbstractWorker):
            raise TypeError(
                f"server {self.name!r}: add_worker() expects a ThreadWorker or ProcessWorker, "
                f"got {type(worker).__name__}"
            )
        check_initialised(worker)
        policy = worker.restart if restart is None else restart
        if policy not in RESTART_POLICIES:
            raise ValueError(
                f"server {self.name!r}: worker {worker.name!r}: restart must be one of "
                f"{RESTART_POLICIES}, got {policy!r}"
            )
        timeout = worker.heartbeat_timeout if heartbeat_timeout is None else heartbeat_timeout
        if timeout is not None:
            check_number(
                f"server {self.name!r}: worker {worker.name!r}", "heartbeat_timeout", timeout, strict=True
            )
        with self._lock:
            owner = worker.supervision.owner
            if owner is self:
                raise ValueError(f"server {self.name!r}: worker {worker.name!r} was already added")
            if owner is not None:
                other = getattr(owner, "name", "?")
                raise ValueError(
                    f"server {self.name!r}: worker {worker.name!r} already belongs to server {other!r}"
                )
            if any(r.worker.name == worker.name for r in self._records):
                raise ValueError(f"server {self.name!r}: a worker named {worker.name!r} was already added")
            worker.supervision.attach(self, on_state=self._state_changed, on_exit=self._worker_exited)
            record = Supervised(worker, policy, None if timeout is None else float(timeout))
            record.handled_run = worker.supervision.run
            self._records.append(record)
            start_now = self._running and not self._stop_requested
        if start_now:
            worker.start()
            self._supervisor.ensure_running()
        return worker

    def add_listener(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener`` with every :class:`WorkerEvent` of this server.

        Listeners run in the thread where the event happened (the supervisor's
        thread, a worker's thread, or the one reading a process worker's
        state): keep them quick; their exceptions are logged and ignored.

        Returns:
            a function that removes the listener.
        """
        self._listeners.append(listener)

        def remove() -> None:
            try:
                self._listeners.remove(listener)
            except ValueError:
                pass

        return remove

    # -- running --------------------------------------------------------------

    def start(self) -> None:
        """Start every worker that is not running, and the supervisor.

        Process workers start first, so that under ``fork`` they are forked
        before any thread of this server exists. If one fails to start, those
        already started are stopped and the error is raised.
        """
        with self._lock:
            self._running = True
            self._stop_requested = False
            self._supervisor.reset()
            records = sorted(self._records, key=lambda r: not r.worker.supervision.start_first)
        started: list[AbstractWorker] = []
        try:
            for record in records:
                worker = record.worker
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
        self._supervisor.ensure_running()

    def stop(self) -> None:
        """Ask every worker to stop, in the reverse order of adding; returns at once.

        No restart happens after this. Safe from any thread and from a signal handler.
        """
        self._stop_requested = True
        self._supervisor.stopping = True
        for record in reversed(self._records):
            record.worker.stop()
        self._supervisor.poke()
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
        if self._stop_requested:
            self._supervisor.join(1.0)
        with self._lock:
            if not any(w.is_alive() for w in self.workers):
                self._running = False
        return still_alive

    def run_forever(self) -> int:
        """Start the workers and run until a signal arrives or every worker has ended for good.

        SIGINT and SIGTERM are handled while it runs (the previous handlers
        are restored after); SIGUSR1 logs :meth:`status` and every thread's
        stack. Off the main thread it runs without signal handlers. Then every
        worker is stopped and joined within ``shutdown_timeout``; a second
        SIGINT/SIGTERM during that shutdown ends the wait at once.

        Returns:
            an exit status: 0 when every worker ended cleanly, 1 when one
            failed, had to be killed or would not stop, or the server gave up.
        """
        self._signals.clear()
        handlers: dict[int, Callable[[int], None]] = {
            signal.SIGINT: self._on_signal,
            signal.SIGTERM: self._on_signal,
        }
        if hasattr(signal, "SIGUSR1"):
            handlers[signal.SIGUSR1] = self._on_dump_signal
        # The self-pipe is open only while someone may wait on it: a server
        # that has ended holds no file descriptor.
        with self._wakeup.held(), SignalHandlers(handlers) as installed:
            if not installed.installed:
                logger.warning(
                    "server %r: run_forever() is not running in the main thread, so SIGINT and "
                    "SIGTERM are not handled here; call stop() to end it",
                    self.name,
                )
            still_alive: list[AbstractWorker] = []
            try:
                self.start()
                while not self._stop_requested and not self._signals:
                    if self._supervisor.settled():
                        break
                    wait([self._wakeup.fileno()], None)
                    self._wakeup.drain()
                    if self._dump_requested:
                        self._dump_requested = False
                        self._log_status_and_stacks()
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
        return 1 if failed or still_alive or self.gave_up else 0

    def status(self) -> list[dict[str, Any]]:
        """A JSON-serialisable snapshot: one entry per worker, in the order added.

        Each entry has ``name``, ``kind`` (``"thread"``/``"process"``),
        ``state``, ``pid``, ``restart`` (the policy), ``restarts``,
        ``last_error``, ``uptime`` (seconds since it started running; None
        when not running), ``last_heartbeat`` (seconds since its last sign of
        life; 0 while it waits in the framework; None when not running) and
        ``exitcode``.
        """
        now = time.monotonic()
        entries = []
        for record in self._snapshot():
            worker = record.worker
            state = worker.state
            running = state is WorkerState.RUNNING and record.running_since is not None
            entries.append(
                {
                    "name": worker.name,
                    "kind": worker.kind,
                    "state": state.value,
                    "pid": worker.pid,
                    "restart": record.restart,
                    "restarts": record.restarts,
                    "last_error": record.last_error,
                    "uptime": round(now - record.running_since, 3)
                    if running and record.running_since is not None
                    else None,
                    "last_heartbeat": round(worker.supervision.silent_for(now), 3) if running else None,
                    "exitcode": worker.exitcode,
                }
            )
        return entries

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
        return f"<Server {self.name!r} workers={len(self._records)}>"

    # -- internals ------------------------------------------------------------

    def _snapshot(self) -> list[Supervised]:
        with self._lock:
            return list(self._records)

    def _record_of(self, worker: AbstractWorker) -> Supervised | None:
        for record in self._snapshot():
            if record.worker is worker:
                return record
        return None

    def _on_signal(self, signum: int) -> None:
        # A signal handler: flags and wake-up bytes only.
        self._signals.append(signum)
        self._supervisor.stopping = True
        self._wakeup.wake()

    def _on_dump_signal(self, signum: int) -> None:
        self._dump_requested = True
        self._wakeup.wake()

    def _worker_exited(self, worker: AbstractWorker) -> None:
        self._supervisor.poke()
        self._wakeup.wake()

    def _state_changed(self, worker: AbstractWorker, old: WorkerState, new: WorkerState) -> None:
        record = self._record_of(worker)
        if record is not None and new is WorkerState.RUNNING:
            record.running_since = time.monotonic()
        outcome: dict[str, Any] = outcome_of(worker) if new in TERMINAL_STATES else {}
        detail = ""
        if outcome.get("signal"):
            detail = f" (killed by {outcome['signal']})"
        elif outcome.get("exception") is not None:
            detail = f" ({outcome['exception']!r})"
        message = f"worker {worker.name!r} {old.value} -> {new.value}{detail}"
        logger.info(
            "server %r: %s",
            self.name,
            message,
            extra={
                "spoc_server": self.name,
                "spoc_worker": worker.name,
                "spoc_kind": worker.kind,
                "spoc_state": new.value,
                "spoc_previous": old.value,
            },
        )
        self._emit(
            WorkerEvent(
                kind="state",
                server=self.name,
                worker=worker.name,
                state=new,
                previous=old,
                restarts=record.restarts if record is not None else 0,
                message=message,
                **outcome,
            )
        )
        self._supervisor.poke()
        self._wakeup.wake()

    def _emit(self, event: WorkerEvent) -> None:
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("server %r: event listener %r raised", self.name, listener)

    def _log_status_and_stacks(self) -> None:
        lines = [f"server {self.name!r} status:"]
        lines += [f"  {entry}" for entry in self.status()]
        lines.append(all_stacks().rstrip())
        logger.warning("\n".join(lines))  # asked for by an operator: shown at the default levels

    def _escalation_requested(self) -> bool:
        return len(self._signals) > 1

    def _wait_for_change(self, workers: list[AbstractWorker], timeout: float | None) -> None:
        """Block until a worker may have changed, a signal came, or ``timeout`` passed."""
        waitables: list[Any] = [self._wakeup]
        for worker in workers:
            handles = worker.supervision.waitables()
            if not handles and worker.supervision.start_first and worker.is_alive():
                # rare: a process whose fork server died (see ProcessWorker._waitables)
                timeout = POLL if timeout is None else min(timeout, POLL)
            waitables += handles
        wait_for_change(waitables, timeout)
        self._wakeup.drain()

    def _join(
        self, workers: tuple[AbstractWorker, ...] | list[AbstractWorker], timeout: float | None
    ) -> list[AbstractWorker]:
        with self._wakeup.held():
            return self._join_held(workers, timeout)

    def _join_held(
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
            leaving = [w for w in alive if w.state in TERMINAL_STATES]
            if leaving:  # ended, their thread or process is on its way out: nothing left to wake us
                for worker in leaving:
                    worker.join(LEAVING_GRACE if remaining is None else min(remaining, LEAVING_GRACE))
                continue
            self._wait_for_change(alive, remaining)
        return self._force_end(alive)

    def _force_end(self, alive: list[AbstractWorker]) -> list[AbstractWorker]:
        ended: list[AbstractWorker] = []  # those that can be ended from here: processes
        for worker in alive:
            if worker.supervision.terminate():
                logger.warning(
                    "server %r: process worker %r did not stop in time; terminated", self.name, worker.name
                )
                ended.append(worker)
        if ended:
            self._join_processes(ended, TERMINATE_GRACE)
        for worker in ended:
            if worker.is_alive():
                logger.warning("server %r: process worker %r still alive; killing", self.name, worker.name)
                worker.supervision.kill()
        if ended:
            self._join_processes(ended, KILL_GRACE)
        for worker in alive:
            if worker in ended or not worker.is_alive():
                continue
            logger.error(
                "server %r: thread worker %r did not stop in time; it is left running. Its stack:\n%s",
                self.name,
                worker.name,
                worker.supervision.stack() or "(no stack)\n",
            )
        return [w for w in alive if w.is_alive()]

    def _join_processes(self, processes: list[AbstractWorker], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for worker in processes:
            worker.join(max(0.0, deadline - time.monotonic()))
