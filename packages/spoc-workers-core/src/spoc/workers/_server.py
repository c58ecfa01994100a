"""``Server``: start, supervise and stop many workers as one unit."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

from ._backoff import Backoff
from ._checks import check_count, check_number
from ._events import (
    RESTART_POLICIES,
    STRATEGIES,
    EventListener,
    Listeners,
    RestartPolicy,
    Strategy,
    WorkerEvent,
)
from ._join import join_workers
from ._recycle import Recycle, RecycleWatch
from ._signals import SignalHandlers, WakeupPipe
from ._state import TERMINAL_STATES, WorkerState
from ._status import liveness, readiness, status_entries, status_report
from ._supervised import Supervised, outcome_of
from ._supervisor import Control, Supervisor
from ._worker import AbstractWorker, check_initialised

if TYPE_CHECKING:  # the HTTP endpoint is imported only when it is asked for
    from ._http import HttpEndpoint

__all__ = ["HTTP_ENV", "HTTP_EXTRA_MISSING", "HTTP_TOKEN_ENV", "Server"]

logger = logging.getLogger("spoc.workers.server")

DEFAULT_SHUTDOWN_TIMEOUT = 10.0
LIVENESS_TIMEOUT = 1.0  # how long the supervisor thread may take to answer a liveness ping

HTTP_ENV = "SPOC_WORKERS_HTTP"
"""Environment variable the ``spoc-workers`` command reads its ``--http`` address from."""
HTTP_TOKEN_ENV = "SPOC_WORKERS_HTTP_TOKEN"
"""Environment variable the ``spoc-workers`` command reads its ``--http-token`` from."""
HTTP_EXTRA_MISSING = (
    "the HTTP endpoint needs prometheus_client, which is not installed: install the http extra, "
    "pip install 'spoc-workers-core[http]' (from a checkout: './packages/spoc-workers-core[http]'), "
    "or pip install prometheus_client"
)


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
        http: serve the HTTP endpoint on this address (``"127.0.0.1:9000"``,
            ``"[::1]:9000"``, ``"0.0.0.0:9000"``, a bare port for loopback,
            or a ``(host, port)`` pair; port 0 picks a free one, see
            :attr:`http_address`): health and readiness probes, ``status()``
            as JSON, Prometheus metrics and a status page, from
            :meth:`start` until the server has been stopped and joined. It
            needs the ``http`` extra (prometheus_client). See the
            "Operating spoc-workers" page of the documentation.
        http_token: enables the endpoint's remote control (``POST
            /workers/NAME/restart`` and ``/stop``), which then requires it as
            a Bearer token. Without one there is no remote control.

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
        http: str | tuple[str, int] | None = None,
        http_token: str | None = None,
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
        self._listeners = Listeners(f"server {name!r}", on_event)
        self._lock = threading.RLock()
        self._running = False
        self._stop_requested = False
        self._signals: list[int] = []
        self._dump_requested = False
        self._wakeup = WakeupPipe()
        self._supervisor = Supervisor(
            name,
            self._snapshot,
            self._listeners.emit,
            self.stop,
            self._wakeup.wake,
            strategy=strategy,
            max_restarts=max_restarts,
            restart_window=float(restart_window),
            backoff=backoff or Backoff(),
            stable_after=float(stable_after),
        )
        self._http_address: tuple[str, int] | None = None
        self._http_token: str | None = None
        self._http: HttpEndpoint | None = None
        if http is not None or http_token is not None:
            self.set_http(http, token=http_token)

    # -- the HTTP endpoint ----------------------------------------------------

    def set_http(self, address: str | tuple[str, int] | None, *, token: str | None = None) -> None:
        """Serve the HTTP endpoint on ``address`` from the next :meth:`start` (None: no endpoint).

        See the ``http`` and ``http_token`` arguments of the class.

        Raises:
            ImportError: prometheus_client is not installed (the ``http`` extra).
            ValueError: a malformed address or token, or a token without an address.
            RuntimeError: the server is running.
        """
        owner = f"server {self.name!r}"
        if self._running:
            raise RuntimeError(f"{owner}: set_http() must be called before start()")
        if address is None:
            if token is not None:
                raise ValueError(f"{owner}: http_token needs an http address to serve on")
            self._http_address = self._http_token = None
            return
        try:
            from ._http import check_token, parse_address  # noqa: PLC0415 (only when asked for)
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] != "prometheus_client":
                raise
            raise ImportError(f"{owner}: {HTTP_EXTRA_MISSING}") from None
        self._http_address = parse_address(owner, address)
        self._http_token = None if token is None else check_token(owner, token)

    @property
    def http_address(self) -> tuple[str, int] | None:
        """The ``(host, port)`` the HTTP endpoint is bound to while it serves (port 0 resolved); else None."""
        endpoint = self._http
        return None if endpoint is None else endpoint.address

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
        recycle: Recycle | None = None,
    ) -> AbstractWorker:
        """Add ``worker``; if the server is running, start it at once.

        Args:
            worker: a ThreadWorker or ProcessWorker.
            restart: ``"never"``, ``"on-failure"`` or ``"always"``; default:
                the worker class's ``restart`` attribute (``"never"``).
            heartbeat_timeout: seconds of silence after which the worker is
                declared hung (see :meth:`AbstractWorker.heartbeat`); default:
                the class's ``heartbeat_timeout`` (None: not watched).
            recycle: replace the worker's run with a fresh one when it reaches
                an age, a memory size or a number of jobs (see
                :class:`Recycle`); default: never.

        Returns:
            the worker, for chaining.

        Raises:
            TypeError: ``worker`` is not a worker.
            ValueError: a worker of that name is already here, this worker
                was already added to this or another server, a bad
                ``restart``/``heartbeat_timeout``, or a ``recycle`` limit the
                worker cannot be measured by (``rss_mb`` for a thread worker,
                ``jobs`` for a worker that does not count jobs).
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
        who = f"server {self.name!r}: worker {worker.name!r}"
        if timeout is not None:
            check_number(who, "heartbeat_timeout", timeout, strict=True)
        watch = None if recycle is None else RecycleWatch.for_worker(who, worker, recycle)
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
            record = Supervised(worker, policy, None if timeout is None else float(timeout), recycle=watch)
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
        return self._listeners.add(listener)

    # -- running --------------------------------------------------------------

    def start(self) -> None:
        """Start every worker that is not running, and the supervisor.

        Process workers start first, so that under ``fork`` they are forked
        before any thread of this server exists. If one fails to start, those
        already started are stopped and the error is raised. The HTTP endpoint,
        when configured, is bound first and serves once the workers are started.

        Raises:
            HttpBindError: the HTTP endpoint cannot be bound (nothing was started).
        """
        with self._lock:
            self._running = True
            self._stop_requested = False
            self._supervisor.reset()
            records = sorted(self._records, key=lambda r: not r.worker.supervision.start_first)
            for record in records:
                record.held = False
        started: list[AbstractWorker] = []
        try:
            self._open_http()  # bound before any worker starts: a taken port fails at once
            for record in records:
                worker = record.worker
                if worker.state is WorkerState.NEW or worker.state in TERMINAL_STATES:
                    worker.start()
                    started.append(worker)
        except BaseException:
            for worker in reversed(started):
                worker.stop()
            join_workers(self.name, started, self.shutdown_timeout, self._wakeup, self._escalation_requested)
            self._close_http()
            with self._lock:
                self._running = False
            raise
        logger.info("server %r started %d worker(s)", self.name, len(started))
        self._supervisor.ensure_running()
        if self._http is not None:
            self._http.serve()  # its threads only now, after the first forks

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
        still_alive = join_workers(self.name, self.workers, timeout, self._wakeup, self._escalation_requested)
        if self._stop_requested:
            self._supervisor.join(1.0)
            self._close_http()
        elif not still_alive:
            # Every worker ended by itself: the monitor thread leaves once it has seen that
            # (unless a restart is due); wait for it, so a joined server leaves no thread behind.
            self._supervisor.join_when_settled(1.0)
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
        ``state``, ``pid``, ``restart`` (the policy), ``restarts`` (every
        restart the server made), ``restart_reasons`` (those restarts by
        reason, see :data:`~spoc.workers.RestartReason`: only the reasons
        that happened), ``restart_in`` (seconds until a scheduled restart,
        else None), ``held`` (stopped through :meth:`stop_worker`, not
        restarted until :meth:`restart_worker`), ``last_error``, ``uptime``
        (seconds since it started running; None when not running),
        ``last_heartbeat`` (seconds since its last sign of life; 0 while it
        waits in the framework; None when not running), ``rss_bytes`` (the
        resident memory of a process worker's child while it is alive, else
        None), ``jobs_done`` (the jobs it finished over all its runs, from
        :meth:`~spoc.workers.AbstractWorker.jobs_done`; None when it does not
        count them) and ``exitcode``.
        """
        return status_entries(self._snapshot(), time.monotonic())

    def liveness(self, timeout: float = LIVENESS_TIMEOUT) -> dict[str, Any]:
        """Whether this server's supervision is alive and responsive (the ``/healthz`` probe).

        Responsive means: the supervisor thread, woken through its self-pipe,
        begins a new look at the workers within ``timeout`` seconds. When no
        supervisor thread is needed (every worker has ended for good, or the
        server is stopping or not started) the server is alive too. It is
        not alive when the supervisor thread failed, or did not answer in
        time. Worker crashes, restarts and outages of whatever the workers
        talk to never make it fail: restarting the process would not help.

        Returns:
            ``{"alive": bool, "detail": str}``, and ``"answered_in"`` (seconds) when pinged.
        """
        return liveness(
            self._supervisor, running=self._running, stopping=self._stop_requested, timeout=timeout
        )

    def readiness(self) -> dict[str, Any]:
        """Whether every worker that should run is RUNNING (the ``/readyz`` probe).

        A worker should run unless it ended cleanly for good (nothing will
        restart it) or was stopped through :meth:`stop_worker`. A server that
        is not started, or stopping, is not ready.

        Returns:
            ``{"ready": bool, "not_running": [{"name", "state", "restart_in"}...]}``,
            and ``"reason"`` when the whole server is not ready.
        """
        return readiness(self.status, running=self._running, stopping=self._stop_requested)

    def restart_worker(self, name: str) -> None:
        """Stop the worker ``name`` gracefully and start it again; returns at once.

        It is an operator's restart: a ``"restart"`` event with reason
        ``"manual"``, never counted toward the restart intensity, and only
        this worker, whatever the strategy. A worker held by
        :meth:`stop_worker`, or ended for good, is started again.

        Raises:
            KeyError: no worker of that name.
            RuntimeError: the server is not running, or stopping.
        """
        self._control(name, "restart")

    def stop_worker(self, name: str) -> None:
        """Stop the worker ``name`` gracefully, for good: its policy does not restart it; returns at once.

        It stays stopped (``held`` in :meth:`status`, not counted by
        :meth:`readiness`, and the server keeps running) until
        :meth:`restart_worker` or the next :meth:`start`.

        Raises:
            KeyError: no worker of that name.
            RuntimeError: the server is not running, or stopping.
        """
        self._control(name, "stop")

    def _control(self, name: str, action: Control) -> None:
        record = next((r for r in self._snapshot() if r.worker.name == name), None)
        if record is None:
            raise KeyError(f"server {self.name!r} has no worker named {name!r}")
        if not self._running or self._stop_requested:
            state = "stopping" if self._stop_requested else "not running"
            raise RuntimeError(f"server {self.name!r} is {state}: cannot {action} worker {name!r}")
        self._supervisor.request(record, action)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
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

    def _open_http(self) -> None:
        """Bind the HTTP endpoint, when one is configured and not bound yet."""
        if self._http_address is None or self._http is not None:
            return
        from ._http import HttpEndpoint  # noqa: PLC0415 (only when asked for)

        self._http = HttpEndpoint(self, self._http_address, self._http_token)

    def _close_http(self) -> None:
        """Stop serving and release every socket and thread of the endpoint."""
        endpoint, self._http = self._http, None
        if endpoint is not None:
            endpoint.close()

    def _state_changed(self, worker: AbstractWorker, old: WorkerState, new: WorkerState) -> None:
        record = self._record_of(worker)
        if record is not None and new is WorkerState.RUNNING:
            now = time.monotonic()
            record.running_since = now
            if record.recycle is not None:
                record.recycle.start_run(worker, now)
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
                "spoc_pid": worker.pid,
                "spoc_restarts": record.restarts if record is not None else 0,
            },
        )
        self._listeners.emit(
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

    def _log_status_and_stacks(self) -> None:
        # asked for by an operator: shown at the default levels
        logger.warning(status_report(self.name, self.status()))

    def _escalation_requested(self) -> bool:
        return len(self._signals) > 1
