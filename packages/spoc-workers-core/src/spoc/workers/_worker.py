"""``AbstractWorker``: the API every worker shares, whatever carries it."""

from __future__ import annotations

import logging
import math
import threading
import types
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from multiprocessing.connection import wait
from typing import Any, ClassVar

from ._events import RestartPolicy
from ._liveness import Liveness
from ._state import TERMINAL_STATES, WorkerState, check_transition
from ._stop import StopToken
from ._supervision import ExitListener, Lent, StateListener, Supervision

__all__ = ["AbstractWorker", "WorkerContext", "check_initialised"]

logger = logging.getLogger("spoc.workers.worker")

DEFAULT_STOP_TIMEOUT = 5.0

# Attributes that belong to one run in one process; never pickled to a child.
_RUNTIME_ATTRS = (
    "_lock",
    "_state",
    "_token",
    "_exception",
    "_exit_listeners",
    "_state_listeners",
    "_supervision",
    "_liveness",
    "_run",
    "_pending_changes",
    "_notify_lock",
    "_abandoned",
)


class WorkerContext(types.SimpleNamespace):
    """A free-form namespace for a worker's own state (``self.context.x = ...``).

    For a :class:`~spoc.workers.ProcessWorker` it lives in the child process:
    changes made there are not seen by the parent.
    """


class AbstractWorker(ABC):
    """The lifecycle and controls shared by :class:`ThreadWorker` and :class:`ProcessWorker`.

    Subclasses implement :meth:`main` and may override :meth:`setup`,
    :meth:`teardown` and :meth:`lifecycle`; each may be sync or ``async def``.
    They run in the worker's own thread or process in this order::

        setup() → lifecycle("startup") → main() → teardown() → lifecycle("shutdown")

    Args:
        name: the worker's name, also given to its thread or process; defaults
            to the class name.
        daemon: whether the thread or process is a daemon (does not keep the
            interpreter alive).
        stop_timeout: seconds an async ``main`` may keep running after a stop
            request before it is cancelled; for a process, how long after a
            stop request the child process may live at most when its parent is
            gone or it ignores the request.

    Raises:
        TypeError: ``name`` is not a string, or ``main`` is not implemented.
        ValueError: ``name`` is empty or ``stop_timeout`` is not a positive number.
    """

    kind: ClassVar[str] = "abstract"
    """``"thread"`` or ``"process"``."""

    restart: ClassVar[RestartPolicy] = "never"
    """Default restart policy under a :class:`~spoc.workers.Server`: ``"never"``,
    ``"on-failure"`` or ``"always"``; ``add_worker(..., restart=...)`` overrides it."""

    heartbeat_timeout: ClassVar[float | None] = None
    """Default liveness limit under a :class:`~spoc.workers.Server`, in seconds:
    a worker whose ``main`` is silent for longer (no :meth:`heartbeat`, not in
    a framework wait) is declared hung. Only ``main`` is watched, from its
    start until a stop is requested. None: not watched. ``add_worker`` may
    override it."""

    def __init__(
        self,
        name: str | None = None,
        *,
        daemon: bool = True,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    ) -> None:
        if name is None:
            name = type(self).__name__
        if not isinstance(name, str):
            raise TypeError(
                f"{type(self).__name__}: the worker name must be a str, got {type(name).__name__} {name!r}"
            )
        if not name:
            raise ValueError(f"{type(self).__name__}: the worker name must not be empty")
        if isinstance(stop_timeout, bool) or not isinstance(stop_timeout, (int, float)):
            raise TypeError(f"worker {name!r}: stop_timeout must be a number of seconds")
        if not (stop_timeout > 0 and math.isfinite(stop_timeout)):
            raise ValueError(f"worker {name!r}: stop_timeout must be a positive, finite number of seconds")
        self.name = name
        self.daemon = bool(daemon)
        self.stop_timeout = float(stop_timeout)
        self.context = WorkerContext()
        self._init_runtime()

    def _init_runtime(self) -> None:
        # One lock guards the worker's state (and, for processes, its pipes):
        # a single lock cannot be taken in two orders.
        self._lock = threading.RLock()
        self._pending_changes: deque[tuple[WorkerState, WorkerState]] = deque()
        self._notify_lock = threading.RLock()  # listeners see changes one at a time, in order
        self._abandoned: dict[int, StopToken] = {}  # thread ident -> token of an abandoned run
        self._state = WorkerState.NEW
        self._token: StopToken | None = None
        self._exception: BaseException | None = None
        self._exit_listeners: list[ExitListener] = []
        self._state_listeners: list[StateListener] = []
        self._supervision = self._new_supervision()
        self._liveness = Liveness()
        self._run = 0  # counts starts; a carrier's reports about an older run are ignored

    # -- pickling (process workers travel to their child this way) ------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for attr in self._runtime_attrs():
            state.pop(attr, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    def _runtime_attrs(self) -> tuple[str, ...]:
        return _RUNTIME_ATTRS

    # -- the hooks users write -----------------------------------------------

    def setup(self) -> Awaitable[None] | None:
        """Prepare resources; runs once per start, in the worker's thread or process."""
        return None

    @abstractmethod
    def main(self) -> Awaitable[None] | None:
        """Do the work. Loop ``while self.is_running`` (or ``while self.sleep(t)``)."""

    def teardown(self) -> Awaitable[None] | None:
        """Release resources; runs once per start, always, even when setup or main failed."""
        return None

    def lifecycle(self, event_type: str, **data: Any) -> Awaitable[None] | None:
        """Receive lifecycle events; override to observe them.

        Args:
            event_type: ``"startup"`` (after ``setup``), ``"shutdown"`` (after
                ``teardown``) or ``"error"``.
            **data: for ``"error"``: ``exception`` (the exception) and
                ``phase`` (``"setup"``, ``"main"`` or ``"teardown"``).
        """
        return None

    def jobs_done(self) -> int | None:
        """How many jobs this worker has finished, successfully or not, over all its runs.

        None (the default) means it does not count jobs. Workers that process
        jobs (the patterns' job processors) override it; a
        :class:`~spoc.workers.Server` reads it for
        :class:`Recycle(jobs=...) <spoc.workers.Recycle>`, taking the
        difference since the run reached RUNNING, so the count must never
        decrease. It is called in the parent process, from the server's
        supervisor thread: a process worker must answer without asking its
        child (keep the count in shared memory, such as a
        ``multiprocessing.Value`` made in ``__init__``), and quickly.
        """
        return None

    # -- inside the worker ----------------------------------------------------

    @property
    def is_running(self) -> bool:
        """True while a run is under way and no stop was requested for it.

        Inside the worker, from ``setup()`` on (in a process worker's child
        too), it stays True until a stop is requested, so ``while
        self.is_running:`` loops until then. From outside, it answers "is it
        running now?": False before the first :meth:`start`, False once a
        stop was requested, and False after the run ended (``STOPPED`` or
        ``FAILED``), until the next :meth:`start`. A thread whose run was
        abandoned (hung) reads it as False.
        """
        # Read once per item by the patterns' loops: _caller_token() and StopToken.stopped inlined.
        token = self._caller_token() if self._abandoned else self._token
        if token is None or token._stopped:
            return False
        return self._run_under_way()

    def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking at once when a stop is requested.

        Returns:
            True when the full time elapsed, False when woken by a stop, so
            ``while self.sleep(1): ...`` loops until stopped.
        """
        _check_seconds(self, seconds)
        token = self._caller_token()
        if token is None:  # not started: an ordinary sleep
            token = StopToken()
        liveness = self._liveness
        liveness.enter_wait()
        try:
            return not token.wait(seconds)
        finally:
            liveness.leave_wait()

    async def asleep(self, seconds: float) -> bool:
        """``await`` version of :meth:`sleep`, for ``async def`` hooks."""
        _check_seconds(self, seconds)
        token = self._caller_token()
        if token is None:
            token = StopToken()
        liveness = self._liveness
        liveness.enter_wait()
        try:
            return not await token.wait_async(seconds)
        finally:
            liveness.leave_wait()

    def heartbeat(self) -> None:
        """Tell the supervisor this worker is alive (see ``heartbeat_timeout``).

        Only needed in long stretches of work outside the framework's waits:
        time spent in :meth:`sleep`, :meth:`asleep` or :meth:`wait_readable`
        counts as alive.
        """
        self._liveness.beat()

    def on_stop(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when a stop is requested for the current run.

        For waking a wait the framework does not know about (a queue, a
        socket). Called at once if the stop was already requested. It runs in
        the thread that calls :meth:`stop`, possibly a signal handler: it must
        be quick and must not block (take locks with ``acquire(blocking=False)``).

        Returns:
            a function that unregisters the callback.

        Raises:
            RuntimeError: the worker has not been started.
        """
        return self._current_token("on_stop").add_callback(callback)

    def wait_readable(self, handles: Sequence[Any], timeout: float | None = None) -> list[Any]:
        """Wait until one of ``handles`` is readable, a stop is requested, or ``timeout`` passes.

        ``handles`` may hold file descriptors, sockets, and
        :mod:`multiprocessing` connections or sentinels (anything
        :func:`multiprocessing.connection.wait` accepts).

        Returns:
            the handles that are readable; empty when woken by a stop or on timeout.

        Raises:
            RuntimeError: the worker has not been started.
        """
        token = self._current_token("wait_readable")
        if token.stopped:
            return []
        liveness = self._liveness
        liveness.enter_wait()
        try:
            ready = wait([*handles, token.fileno()], timeout)
        finally:
            liveness.leave_wait()
        return [handle for handle in handles if handle in ready]

    # -- control from outside -------------------------------------------------

    @property
    def state(self) -> WorkerState:
        """The worker's current :class:`WorkerState`, as seen from this process."""
        self._refresh()
        with self._lock:
            state = self._state
            if state in (WorkerState.STARTING, WorkerState.RUNNING) and self._stop_requested():
                return WorkerState.STOPPING
            return state

    @property
    def pid(self) -> int | None:
        """The process id of a process worker's child (None for a thread worker and before a start)."""
        return None

    @property
    def exitcode(self) -> int | None:
        """How a process worker's child exited (None for a thread worker, and while it runs)."""
        return None

    @property
    def supervision(self) -> Supervision:
        """What a supervisor (a :class:`~spoc.workers.Server`) needs of this worker; not for worker code."""
        return self._supervision

    @property
    def exception(self) -> BaseException | None:
        """The first exception of the last run (None when it has not failed).

        For a process worker this is the child's exception when it could be
        pickled back, else a :class:`~spoc.workers.WorkerRemoteError`; its
        ``__cause__`` holds the child's traceback. A process that died
        without saying why gives a :class:`~spoc.workers.WorkerExitedError`.
        """
        self._refresh()
        return self._exception

    def start(self) -> None:
        """Start a new run in a fresh thread or process.

        A worker that has ended (``STOPPED`` or ``FAILED``) may be started again.

        Raises:
            RuntimeError: the worker is still running.
            TypeError: the subclass's ``__init__`` did not call ``super().__init__()``.
        """
        check_initialised(self)
        if self.state in TERMINAL_STATES and self.is_alive():
            self.join(1.0)  # the last run ended and is leaving its thread or process
        with self._lock:
            self._refresh_locked()
            if self._state not in TERMINAL_STATES and self._state is not WorkerState.NEW:
                raise RuntimeError(f"worker {self.name!r} is already {self._state.value}")
            if self._carrier_alive():
                raise RuntimeError(f"worker {self.name!r} ended but its last run has not exited yet")
            previous = (self._state, self._token, self._exception, self._liveness, self._run)
            check_transition(self._state, WorkerState.STARTING)
            self._token = StopToken()
            self._exception = None
            self._liveness = self._new_liveness()
            self._run += 1
            self._state = WorkerState.STARTING
            try:
                self._launch()
            except BaseException:
                self._state, self._token, self._exception, self._liveness, self._run = previous
                raise
            # Queued while the lock is held: the carrier's own reports queue after it.
            self._pending_changes.append((previous[0], WorkerState.STARTING))
        self._fire_changes()
        logger.debug("worker %r started", self.name)

    def stop(self) -> None:
        """Ask the worker to stop; returns at once (use :meth:`join` to wait).

        Idempotent, and safe before start, from any thread, from a signal
        handler and from inside the worker itself.
        """
        token = self._token
        if token is not None:
            token.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the worker has ended, at most ``timeout`` seconds.

        Returns:
            True when the worker is not running (ended, or never started).
        """
        raise NotImplementedError

    def is_alive(self) -> bool:
        """True while the worker's thread or process is alive."""
        raise NotImplementedError

    # -- for carriers and the Server ------------------------------------------

    def _launch(self) -> None:
        raise NotImplementedError

    def _carrier_alive(self) -> bool:
        """Whether the current run's thread or process is alive, without side effects."""
        raise NotImplementedError

    def _caller_token(self) -> StopToken | None:
        """The stop token of the run the calling thread belongs to."""
        if self._abandoned:  # an abandoned (hung) thread keeps its own, stopped token
            token = self._abandoned.get(threading.get_ident())
            if token is not None:
                return token
        return self._token

    def _stop_requested(self) -> bool:
        """Whether a stop was requested for the calling thread's run (the current or last one).

        Unlike ``not is_running``, this stays True after the run ended, so a
        supervisor can tell a worker stopped on purpose from one that ended
        by itself.
        """
        token = self._caller_token()
        return token is not None and token.stopped

    def _run_under_way(self) -> bool:
        """Whether the current run has not ended yet (threads: the state is not final)."""
        state = self._state
        return state is not WorkerState.STOPPED and state is not WorkerState.FAILED

    def _current_token(self, what: str) -> StopToken:
        token = self._caller_token()
        if token is None:
            raise RuntimeError(f"worker {self.name!r}: {what}() needs a started worker")
        return token

    def _refresh(self) -> None:
        """Bring ``_state`` up to date with the carrier, then tell the listeners."""
        self._refresh_locked()
        self._fire_changes()

    def _refresh_locked(self) -> None:  # noqa: B027 (a hook; threads need nothing here)
        """Bring ``_state`` up to date (processes report over a pipe); takes ``_lock``."""

    def _new_liveness(self) -> Liveness:
        return Liveness()

    def _new_supervision(self) -> Supervision:
        return Supervision(self, self._lent())  # each carrier provides its own

    def _lent(self) -> Lent:
        """What every carrier's Supervision is lent of this worker (see :class:`Lent`)."""
        # Read when called: _run and _liveness do not exist yet, and a start replaces them.
        return Lent(
            run=lambda: self._run,
            stop_requested=self._stop_requested,
            silent_for=lambda now: self._liveness.silent_for(now),  # noqa: PLW0108 (read at call time)
            state_listeners=self._state_listeners,
            exit_listeners=self._exit_listeners,
        )

    def _set_state(self, state: WorkerState, *, run: int | None = None) -> None:
        """Move to ``state`` and queue the change for the state listeners.

        The caller runs :meth:`_fire_changes` once it no longer holds
        ``_lock``: listeners never run under the worker's lock.
        ``run``: the run the report is about; a report about an older run (an
        abandoned thread that woke up) is ignored.
        """
        with self._lock:
            if run is not None and run != self._run:
                return
            old = self._state
            check_transition(old, state)
            self._state = state
            if old is not state:
                self._pending_changes.append((old, state))

    def _fire_changes(self) -> None:
        with self._notify_lock:
            while self._pending_changes:
                try:
                    old, new = self._pending_changes.popleft()
                except IndexError:
                    return
                for listener in tuple(self._state_listeners):
                    try:
                        listener(self, old, new)
                    except Exception:
                        logger.exception("worker %r: state listener %r raised", self.name, listener)

    def _abandon(self, error: BaseException) -> None:
        """Give up on the current run without waiting for it (a hung thread).

        The run is asked to stop, recorded as FAILED with ``error``, and any
        later report from its thread is ignored, so the worker can be started
        again while that thread is still stuck.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot abandon a run")

    def _record_error(self, exc: BaseException) -> None:
        with self._lock:
            if self._exception is None:
                self._exception = exc

    def _notify_exit(self) -> None:
        for listener in tuple(self._exit_listeners):
            try:
                listener(self)
            except Exception:
                logger.exception("worker %r: exit listener %r raised", self.name, listener)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self._state.value}>"


def check_initialised(worker: AbstractWorker) -> None:
    """Fail clearly when a subclass's ``__init__`` forgot ``super().__init__()``.

    Without it the worker has no name, state or stop token, and the first
    use would fail with an ``AttributeError`` about a private attribute.

    Raises:
        TypeError: ``AbstractWorker.__init__`` never ran on ``worker``.
    """
    if "_lock" not in vars(worker):
        cls = type(worker).__name__
        raise TypeError(
            f"{cls}.__init__() did not call super().__init__(): the {cls} worker has no name, "
            f"state or stop token. Call super().__init__(...) first thing in {cls}.__init__()."
        )


def _check_seconds(worker: AbstractWorker, seconds: float) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"worker {worker.name!r}: seconds must be a number, got {type(seconds).__name__}")
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"worker {worker.name!r}: seconds must be >= 0, got {seconds!r}")
