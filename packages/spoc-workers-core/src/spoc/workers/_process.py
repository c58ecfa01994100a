"""``ProcessWorker``: a worker carried by a child process.

The parent and the child talk over two one-way pipes: *control* (parent →
child: ``stop``/``exit``) and *status* (child → parent: state changes, errors
with their tracebacks, the final state). The parent reads the status pipe
whenever it looks at the worker, so ``state``, ``exception`` and ``exitcode``
are correct for processes too, with no thread of its own.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, ClassVar

from spoc.workers.aio import uvloop_enabled

from . import _reaper as reaper
from ._child import child_main
from ._errors import WorkerExitedError, WorkerNotPicklableError
from ._liveness import Liveness
from ._pickling import find_unpicklable
from ._protocol import DUMP, EXIT, STOP, DoneReport, ErrorReport, Report, StacksReport, StateReport
from ._state import TERMINAL_STATES, WorkerState
from ._stop import StopToken
from ._supervision import HUNG_KILL_AFTER, Lent, Supervision
from ._worker import DEFAULT_STOP_TIMEOUT, AbstractWorker

__all__ = ["START_METHOD_ENV", "ProcessWorker", "describe_exitcode", "resident_bytes", "signal_name"]

logger = logging.getLogger("spoc.workers.worker")

START_METHOD_ENV = "SPOC_WORKERS_START_METHOD"
"""Environment variable naming the default start method of every ProcessWorker."""


class ProcessWorker(AbstractWorker):
    """A worker that runs in its own process: true parallelism, isolated memory.

    Best for CPU-bound work. Each :meth:`start` runs the lifecycle in a fresh
    child process named after the worker. Under ``spawn`` and ``forkserver``
    the worker object is pickled to the child, so everything it holds at
    ``start()`` must pickle; create connections, locks and clients in
    :meth:`setup`, which runs in the child. Changes the child makes to the
    worker (``self.context`` included) are not seen by the parent.

    Args:
        name: see :class:`AbstractWorker`.
        daemon: see :class:`AbstractWorker`.
        stop_timeout: see :class:`AbstractWorker`. In the child it bounds how
            long ``main`` may ignore a stop request, and then ``teardown``,
            before the child dumps its stacks and exits (code 124).
        start_method: ``"fork"``, ``"spawn"`` or ``"forkserver"``; by default
            the ``SPOC_WORKERS_START_METHOD`` environment variable, else
            Python's default (see :func:`multiprocessing.set_start_method`).

    Raises:
        ValueError: unknown ``start_method``.
    """

    kind: ClassVar[str] = "process"

    def __init__(
        self,
        name: str | None = None,
        *,
        daemon: bool = True,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        start_method: str | None = None,
    ) -> None:
        super().__init__(name, daemon=daemon, stop_timeout=stop_timeout)
        if start_method is not None:
            _check_start_method(start_method, f"worker {self.name!r}: start_method")
        self._start_method = start_method

    def _init_runtime(self) -> None:
        super()._init_runtime()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._control: Connection | None = None
        self._status: Connection | None = None
        self._launched_method: str | None = None
        self._reported_exitcode: int | None = None
        # (pid, exit code) once the ended child was reaped and its Process closed.
        self._ended: tuple[int | None, int | None] | None = None

    def _runtime_attrs(self) -> tuple[str, ...]:
        return (
            *super()._runtime_attrs(),
            "_process",
            "_control",
            "_status",
            "_launched_method",
            "_reported_exitcode",
            "_ended",
        )

    def _new_supervision(self) -> Supervision:
        return _ProcessSupervision(
            self,
            self._lent(),
            waitables=self._waitables,
            record_error=self._record_error,
            request_stacks=self._request_stacks,
        )

    # -- introspection --------------------------------------------------------

    @property
    def start_method(self) -> str:
        """The start method the next :meth:`start` uses."""
        if self._start_method is not None:
            return self._start_method
        from_env = os.environ.get(START_METHOD_ENV)
        if from_env:
            return _check_start_method(from_env, f"${START_METHOD_ENV}")
        # Python's default, without fixing it (get_start_method() would, and a later
        # multiprocessing.set_start_method() would then fail): the first listed is the default.
        return multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]

    @property
    def process(self) -> multiprocessing.process.BaseProcess | None:
        """The process of the current or last run (None before the first start).

        Once the worker has seen its child end, the process object is closed
        (:meth:`multiprocessing.Process.close`), releasing its file
        descriptors: read :attr:`pid` and :attr:`exitcode` from the worker.
        """
        return self._process

    @property
    def pid(self) -> int | None:
        """The child's process id (None before the first start)."""
        with self._lock:  # the Process is closed once reaped, by whichever thread sees the end
            if self._ended is not None:
                return self._ended[0]
            process = self._process
            return None if process is None else process.pid

    @property
    def exitcode(self) -> int | None:
        """The child's exit code: None while it runs, ``-N`` if killed by signal ``N``.

        Under ``forkserver``, when the fork server itself was killed (SIGTERM
        to the whole process group kills it too), multiprocessing can only
        say 255; the code the child reported before exiting is given instead.
        """
        with self._lock:
            if self._ended is not None:
                return self._ended[1]
            if self._alive():
                return None
            return self._final_exitcode()

    def _final_exitcode(self) -> int | None:
        process = self._process
        if process is None:
            return None
        if self._fork_server_lost(process) and self._reported_exitcode is not None:
            return self._reported_exitcode
        return process.exitcode

    @property
    def sentinel(self) -> int | None:
        """A file descriptor that becomes readable when the child ends (None once it was reaped)."""
        with self._lock:
            process = self._process
            return None if process is None or self._ended is not None else process.sentinel

    def is_alive(self) -> bool:
        """True while the child process is alive."""
        self._refresh()
        with self._lock:
            return self._alive()

    # -- control --------------------------------------------------------------

    def stop(self) -> None:
        """Ask the child to stop (over the control pipe); returns at once.

        Idempotent, and safe before start, from any thread and from a signal handler.
        """
        token = self._token
        if token is None or token.stopped:
            return
        token.set()
        self._send(STOP)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the child has ended, at most ``timeout`` seconds.

        Returns:
            True when the worker is not running (ended, or never started).
        """
        process = self._process
        if process is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_alive():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            waitables = self._waitables()
            wait_for_change(waitables, remaining if waitables else min(_POLL, remaining or _POLL))
        return True

    def terminate(self) -> None:
        """End the child now: it dumps its stacks to stderr and exits (code 125).

        No teardown runs. Falls back to SIGTERM if the control pipe is gone.
        Use :meth:`kill` if the child does not end shortly after.
        """
        if not self._send(EXIT):
            self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """Kill the child with SIGKILL (no teardown, no goodbye)."""
        self._signal(signal.SIGKILL)

    def _request_stacks(self) -> None:
        """Ask the child to send every thread's stack; they are logged when they arrive."""
        self._send(DUMP)

    def _signal(self, signum: int) -> None:
        self._refresh()
        # Under the lock that reaping takes: a child reaped (and its Process closed) is not
        # signalled, and its pid cannot have been reused by another process meanwhile.
        with self._lock:
            process = self._process
            if process is None or not self._alive() or process.pid is None:  # closed once reaped
                return
            try:
                os.kill(process.pid, signum)
            except ProcessLookupError:
                pass

    # -- carrier --------------------------------------------------------------

    def _enter_child(self, token: StopToken, liveness: Liveness) -> ProcessWorker:
        """Called in the child: a clean runtime, the child's own stop token, shared liveness.

        Returns:
            this worker, ready for its run in the child.
        """
        self._init_runtime()
        self._token = token
        self._liveness = liveness
        self._state = WorkerState.STARTING
        return self

    def _new_liveness(self) -> Liveness:
        # In shared memory: the child writes its heartbeats, the parent reads them.
        return Liveness(multiprocessing.get_context(self.start_method))

    def _launch(self) -> None:
        method = self.start_method
        # Any: typeshed types get_context(str) as BaseContext, which lacks Process.
        context: Any = multiprocessing.get_context(method)
        # One launch at a time: a sibling forked meanwhile by another thread would
        # inherit this child's pipe ends and hide its exit (the pipe's EOF).
        with _LAUNCH_LOCK:
            self._launch_locked(method, context)
        token = self._token
        if token is not None and token.stopped:  # stop() raced with start()
            self._send(STOP)

    def before_launch(self) -> Callable[[bool], None] | None:
        """Called in the parent before each run's child is made; override it to hand the child
        something new per run (the pipe ends a :class:`~spoc.workers.patterns.Pipeline` gives its
        process stages). Does nothing by default.

        It runs under the lock that makes one child at a time, so a child
        forked by another worker meanwhile cannot inherit what it makes.

        Returns:
            None, or a function called once the child was made (with True) or
            could not be (False), still under that lock: the place to close
            the parent's copies of the child's ends.
        """
        return None

    def _launch_locked(self, method: str, context: Any) -> None:
        after = self.before_launch()
        launched = False
        try:
            self._launch_child(method, context)
            launched = True
        finally:
            if after is not None:
                after(launched)

    def _launch_child(self, method: str, context: Any) -> None:
        control_reader, control_writer = context.Pipe(duplex=False)
        status_reader, status_writer = context.Pipe(duplex=False)
        process = context.Process(
            target=child_main,
            # The bound method carries the worker: it pickles as (worker, "_enter_child").
            args=(self._enter_child, control_reader, status_writer, self._liveness, uvloop_enabled()),
            name=self.name,
            daemon=self.daemon,
        )
        try:
            process.start()
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            control_writer.close()
            status_reader.close()
            if method == "fork":
                raise
            raise _not_picklable(self, method, exc) from exc
        except RuntimeError as exc:
            control_writer.close()
            status_reader.close()
            if "context" not in str(exc):
                raise
            # e.g. "A SemLock created in a fork context is being shared with a process in a spawn context"
            raise WorkerNotPicklableError(
                f"process worker {self.name!r} holds a multiprocessing object made for another start "
                f"method than its own ({method!r}): {str(exc).rstrip('.')}. Make queues, locks and "
                f"events with multiprocessing.get_context({method!r}) (see ProcessWorker.start_method).",
                worker_name=self.name,
                attribute_path="",
            ) from exc
        except BaseException:
            control_writer.close()
            status_reader.close()
            raise
        finally:
            control_reader.close()
            status_writer.close()
        self._process, self._control, self._status = process, control_writer, status_reader
        if process.pid is not None:  # SIGKILLed if it outlives this process by more than its stop_timeout
            reaper.watch(process.pid, self.stop_timeout + reaper.REAPER_GRACE)
        self._launched_method, self._reported_exitcode, self._ended = method, None, None

    def _send(self, message: bytes) -> bool:
        control = self._control
        if control is None:
            return False
        try:
            control.send_bytes(message)
        except (OSError, ValueError):
            return False
        return True

    def _waitables(self) -> list[Any]:
        """What becomes readable when this worker changes: its status pipe, its sentinel."""
        waitables: list[Any] = []
        with self._lock:  # not while another thread reaps the child and closes its Process
            status = self._status
            if status is not None:
                waitables.append(status)  # read while waiting: a chatty child never blocks on a full pipe
            process = self._process
            if process is not None and self._ended is None and not self._fork_server_lost(process):
                waitables.append(process.sentinel)
        return waitables  # empty only in the moment a child whose fork server died exits

    def _carrier_alive(self) -> bool:
        with self._lock:
            return self._alive()

    def _run_under_way(self) -> bool:
        if self._process is not None:  # in the parent: what the child said, or that it died
            self._refresh()
        return super()._run_under_way()  # in the child: its state stays STARTING for the whole run

    def _alive(self) -> bool:
        process = self._process
        if process is None or self._ended is not None:
            return False
        if process.exitcode is None:
            return True
        return self._fork_server_lost(process) and _pid_running(process.pid)

    def _fork_server_lost(self, process: multiprocessing.process.BaseProcess) -> bool:
        """True when multiprocessing's exit code only says that the fork server died."""
        return self._launched_method == "forkserver" and process.exitcode == _FORK_SERVER_LOST

    def _refresh_locked(self) -> None:
        with self._lock:
            if self._ended is not None:
                return  # reaped and closed: nothing more to learn
            self._drain()
            process = self._process
            if process is None or self._alive():
                return
            self._drain()  # what the child said just before it exited
            if self._state not in TERMINAL_STATES:
                exitcode = self.exitcode
                self._record_error(
                    WorkerExitedError(f"process worker {self.name!r} {describe_exitcode(exitcode)}", exitcode)
                )
                self._set_state(WorkerState.FAILED)
            self._close_pipes()
            # Reaped: release the Process's own descriptors (sentinel, pipes) now, not at gc.
            pid = process.pid
            self._ended = (pid, self._final_exitcode())
            process.close()
            if pid is not None:
                reaper.forget(pid)

    def _drain(self) -> None:
        status = self._status
        while status is not None:
            try:
                if not status.poll():
                    return
                message = status.recv()
            except (EOFError, OSError):
                status.close()
                self._status = status = None
                return
            except Exception:
                logger.exception("worker %r: unreadable status message", self.name)
                continue
            self._handle(message)

    def _handle(self, message: Report) -> None:
        if isinstance(message, (StateReport, DoneReport)):
            if isinstance(message, DoneReport):
                self._reported_exitcode = message.exitcode
            new = WorkerState(message.state)
            if new is not self._state and not (self._state in TERMINAL_STATES and new in TERMINAL_STATES):
                self._set_state(new)
        elif isinstance(message, StacksReport):
            logger.error("worker %r (pid %s), its threads' stacks:\n%s", self.name, self.pid, message.text)
        elif isinstance(message, ErrorReport):
            self._record_error(message.rebuild())

    def _close_pipes(self) -> None:
        for attr in ("_control", "_status"):
            conn = getattr(self, attr)
            if conn is not None:
                conn.close()
                setattr(self, attr, None)


class _ProcessSupervision(Supervision):
    """A process's side of supervision: waitable, terminable; its stacks must be asked for."""

    _worker: ProcessWorker
    start_first = True
    measures_memory = True

    def __init__(
        self,
        worker: ProcessWorker,
        lent: Lent,
        *,
        waitables: Callable[[], list[Any]],
        record_error: Callable[[BaseException], None],
        request_stacks: Callable[[], None],
    ) -> None:
        """``waitables``, ``record_error`` and ``request_stacks``: what a process worker lends besides."""
        super().__init__(worker, lent)
        self._waitables = waitables
        self._record_error = record_error
        self._request_stacks = request_stacks

    def rss_bytes(self) -> int | None:
        return resident_bytes(self._worker.pid) if self._worker.is_alive() else None

    def waitables(self) -> list[Any]:
        return self._waitables()

    def declare_hung(self, error: BaseException) -> float:
        self._record_error(error)
        self._request_stacks()  # logged by the parent when they arrive
        self._worker.terminate()
        return HUNG_KILL_AFTER

    def terminate(self) -> bool:
        self._worker.terminate()
        return True

    def kill(self) -> None:
        self._worker.kill()


_LAUNCH_LOCK = threading.Lock()


def _new_launch_lock() -> None:
    global _LAUNCH_LOCK
    _LAUNCH_LOCK = threading.Lock()  # a forked child must not inherit it held


os.register_at_fork(after_in_child=_new_launch_lock)

_FORK_SERVER_LOST = 255  # popen_forkserver's exit code when the fork server is gone
_POLL = 0.05  # seconds between looks at a pid when there is nothing to wait on


def wait_for_change(waitables: list[Any], timeout: float | None) -> None:
    """:func:`multiprocessing.connection.wait`, for waitables that another thread may close.

    A worker's status pipe is closed by whichever thread first sees its
    child gone; a waiter that collected it a moment before then gets
    ``OSError``/``ValueError``. That closing is itself the change waited
    for, so the caller's loop simply looks again.
    """
    try:
        wait(waitables, timeout)
    except (OSError, ValueError):
        pass


def _pid_running(pid: int | None) -> bool:
    """True when ``pid`` is a live (not zombie) process."""
    if pid is None:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes(pid: int | None) -> int | None:
    """The resident set size of process ``pid`` in bytes (``/proc/PID/statm``); None when unreadable."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
        return int(fields[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


def signal_name(exitcode: int | None) -> str | None:
    """The name of the signal that killed a process (``"SIGKILL"`` for -9), else None."""
    if exitcode is None or exitcode >= 0:
        return None
    try:
        return signal.Signals(-exitcode).name
    except ValueError:
        return f"signal {-exitcode}"


def describe_exitcode(exitcode: int | None) -> str:
    """Say in words how a process ended: ``"was killed by SIGKILL"``, ``"exited with code 3"``."""
    if exitcode is None:
        return "is still running"
    killer = signal_name(exitcode)
    return f"was killed by {killer}" if killer else f"exited with code {exitcode}"


def _check_start_method(method: str, what: str) -> str:
    methods = multiprocessing.get_all_start_methods()
    if method not in methods:
        raise ValueError(f"{what}: unknown start method {method!r}; expected one of {methods}")
    return method


def _not_picklable(worker: ProcessWorker, method: str, exc: BaseException) -> WorkerNotPicklableError:
    found = find_unpicklable(worker)
    path, cause = found if found is not None else ("", exc)
    where = f"attribute {path!r}" if path else "the worker object"
    return WorkerNotPicklableError(
        f"process worker {worker.name!r} cannot be sent to its child process "
        f"(start method {method!r}): {where} cannot be pickled ({cause}). "
        "Create such objects in setup(), which runs in the child, "
        "or use the 'fork' start method.",
        worker_name=worker.name,
        attribute_path=path,
    )
