"""The child-process side of a :class:`~spoc.workers.ProcessWorker`.

The child's main thread runs the lifecycle. A small control thread listens to
the parent (a "stop" or "exit" message, or the end of the pipe), watches for
the parent's death (orphan protection, even after SIGKILL) and enforces
``stop_timeout`` once a stop was requested, dumping every thread's stack
before it gives up on a worker that ignores the stop.

Signals: SIGINT is ignored (a terminal's Ctrl+C reaches the whole process
group; the parent decides), SIGTERM is a stop request. Both handlers only set
flags, which is all a signal handler may safely do.
"""

from __future__ import annotations

import ctypes
import faulthandler
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing import parent_process
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from spoc.workers.aio import set_uvloop_if_available, use_default_loop

from ._lifecycle import run_lifecycle
from ._liveness import Liveness
from ._protocol import DUMP, EXIT, DoneReport, ErrorReport, Report, StacksReport, StateReport
from ._stacks import all_stacks
from ._state import WorkerState
from ._stop import StopToken

if TYPE_CHECKING:
    from ._process import ProcessWorker

__all__ = ["EXIT_FAILED", "EXIT_STOP_TIMEOUT", "EXIT_TERMINATED", "child_main"]

logger = logging.getLogger("spoc.workers.worker")

EXIT_FAILED = 1
"""Exit code of a child whose run ended FAILED."""
EXIT_STOP_TIMEOUT = 124
"""Exit code of a child that ignored a stop request for longer than ``stop_timeout``."""
EXIT_TERMINATED = 125
"""Exit code of a child ended by :meth:`ProcessWorker.terminate`."""


_TICK = 0.2  # how often the control thread re-checks the flag and the parent pid
_CANCEL_GRACE = 0.25  # lets an async main's own cancellation win over the watchdog


def child_main(
    enter: Callable[[StopToken, Liveness], ProcessWorker],
    control: Connection,
    status: Connection,
    liveness: Liveness,
    use_uvloop: bool,
) -> None:
    """Entry point of the child process (module-level, so spawn can import it).

    ``enter`` is the worker's own step into the child (its bound ``_enter_child``):
    given the child's stop token and the shared liveness, it returns the worker.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGUSR1"):  # like the parent's run_forever: show stacks, never die of it
        faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)
    # The parent's loop choice, opt-out included: a spawned child starts with a
    # fresh module state, and would otherwise make its own.
    if use_uvloop:
        set_uvloop_if_available()
    else:
        use_default_loop()
    token = StopToken()
    signal.signal(signal.SIGTERM, lambda signum, frame: token.set())
    worker = enter(token, liveness)
    _set_process_name(worker.name)
    reporter = PipeReporter(status)
    finished = threading.Event()
    orphaned = threading.Event()
    control_thread = threading.Thread(
        target=_control_loop,
        args=(worker, control, token),
        kwargs={"finished": finished, "orphaned": orphaned, "reporter": reporter},
        name=f"{worker.name}:control",
        daemon=True,
    )
    control_thread.start()
    final = WorkerState.FAILED
    try:
        final = run_lifecycle(worker, token, reporter)
    finally:
        finished.set()
        reporter.done(final)
    code = EXIT_FAILED if final is WorkerState.FAILED else 0
    if orphaned.is_set():
        # Nobody reads our queues any more: multiprocessing's exit would wait for
        # ever for their feeder threads to flush into full pipes. Teardown ran; leave.
        _flush_and_exit(code)
    if code:
        raise SystemExit(code)


class PipeReporter:
    """Sends a run's progress to the parent over the status pipe."""

    def __init__(self, status: Connection) -> None:
        self._status = status
        self._lock = threading.Lock()
        self.main_returned_at: float | None = None

    def state(self, state: WorkerState) -> None:
        if state is WorkerState.STOPPING:
            self.main_returned_at = time.monotonic()
        self._send(StateReport(state.value))

    def error(self, phase: str, exc: BaseException) -> None:
        self._send(ErrorReport.of(phase, exc))

    def stacks(self, text: str) -> None:
        self._send(StacksReport(text))

    def done(self, state: WorkerState, exitcode: int | None = None) -> None:
        if exitcode is None:
            exitcode = 0 if state is WorkerState.STOPPED else EXIT_FAILED
        self._send(DoneReport(state.value, exitcode))

    def _send(self, message: Report) -> None:
        # The control thread may report while the main thread does: one at a
        # time, and never block forever on a parent that stopped reading.
        if not self._lock.acquire(timeout=1.0):
            return
        try:
            self._status.send(message)
        except (OSError, ValueError):
            pass  # the parent is gone; nothing left to tell
        finally:
            self._lock.release()


def _control_loop(
    worker: ProcessWorker,
    control: Connection,
    token: StopToken,
    *,
    finished: threading.Event,
    orphaned: threading.Event,
    reporter: PipeReporter,
) -> None:
    parent = parent_process()
    watched: list[Any] = [control]
    if parent is not None and parent.sentinel is not None:
        watched.append(parent.sentinel)
    parent_pid = os.getppid()
    stop_seen_at: float | None = None
    while not finished.is_set():
        for ready in wait(watched, timeout=_TICK) if watched else _idle(_TICK):
            if ready is control:
                try:
                    message = control.recv_bytes()
                except (EOFError, OSError):
                    _orphaned(worker, token, orphaned, "its parent closed the control pipe")
                    watched.remove(control)
                    continue
                if message == EXIT:
                    _hard_exit(reporter, f"worker {worker.name!r} terminated by its parent", EXIT_TERMINATED)
                elif message == DUMP:
                    reporter.stacks(all_stacks())
                else:
                    token.set()
            else:
                _orphaned(worker, token, orphaned, "its parent process died")
                watched.remove(ready)
        if os.getppid() != parent_pid:
            _orphaned(worker, token, orphaned, "its parent process died")
        if finished.is_set() or not token.stopped:
            continue
        now = time.monotonic()
        if stop_seen_at is None:
            stop_seen_at = now
        main_returned_at = reporter.main_returned_at
        if main_returned_at is None:
            if now - stop_seen_at > worker.stop_timeout + _CANCEL_GRACE:
                _hard_exit(
                    reporter,
                    f"worker {worker.name!r}: main() ignored the stop request for "
                    f"{worker.stop_timeout:g}s (stop_timeout)",
                    EXIT_STOP_TIMEOUT,
                )
        elif now - max(main_returned_at, stop_seen_at) > worker.stop_timeout:
            _hard_exit(
                reporter,
                f"worker {worker.name!r}: teardown() still running {worker.stop_timeout:g}s "
                "after the stop request (stop_timeout)",
                EXIT_STOP_TIMEOUT,
            )


def _idle(seconds: float) -> list[Any]:
    time.sleep(seconds)
    return []


def _orphaned(worker: ProcessWorker, token: StopToken, orphaned: threading.Event, why: str) -> None:
    if not token.stopped:
        logger.warning("worker %r: %s; stopping", worker.name, why)
    orphaned.set()
    token.set()


def _flush_and_exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass
    os._exit(code)


def _hard_exit(reporter: PipeReporter, reason: str, code: int) -> None:
    logger.error("%s; dumping stacks and exiting", reason)
    sys.stderr.write(f"spoc.workers: {reason}; stacks of every thread:\n")
    faulthandler.dump_traceback(all_threads=True)
    reporter.error("stop", TimeoutError(reason) if code == EXIT_STOP_TIMEOUT else RuntimeError(reason))
    reporter.done(WorkerState.FAILED, code)
    os._exit(code)


def _set_process_name(name: str) -> None:
    """Show the worker's name in ``ps``/``top`` (Linux ``comm``, 15 bytes); best effort."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_name = 15
        libc.prctl(pr_set_name, name.encode("utf-8", "replace")[:15], 0, 0, 0)
    except Exception:
        pass
