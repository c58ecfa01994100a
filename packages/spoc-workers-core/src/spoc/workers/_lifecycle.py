"""Run one worker's lifecycle inside its carrier (a thread or a child process).

``setup → lifecycle("startup") → main → teardown → lifecycle("shutdown")``,
each hook sync or ``async def``; every async hook runs awaited on one event
loop owned by this run, so nothing is fire-and-forget and nothing is lost.

The error rules:

* an exception in ``setup``, ``main`` or ``teardown`` emits
  ``lifecycle("error", exception=exc, phase=...)`` and makes the run FAILED;
* ``teardown`` and the "shutdown" event always run, even after ``setup`` failed;
* an exception raised by ``lifecycle`` itself is logged and ignored;
* ``sys.exit()`` or ``sys.exit(0)`` in a hook is a clean end (from ``setup``:
  no "startup" and no ``main``); another exit code is an error;
* an async ``main`` still running ``stop_timeout`` seconds after a stop
  request is cancelled (a warning is logged; the run is not a failure).

Code of the run that is not a hook but gets an awaitable from user code (the
loop of a pattern calling an ``async def lifecycle``, or a ``def`` that
returned a coroutine) runs it on the same loop with :func:`run_on_run_loop`,
and sends lifecycle events with :func:`emit_lifecycle` (sync code) or
:func:`aemit_lifecycle` (async code); those three are public to the sibling
distributions (patterns, redis).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from spoc.workers.aio import LoopRunner, run_async_safely

from ._state import WorkerState
from ._stop import StopToken

if TYPE_CHECKING:
    from ._worker import AbstractWorker

__all__ = ["Reporter", "aemit_lifecycle", "emit_lifecycle", "run_lifecycle", "run_on_run_loop"]

logger = logging.getLogger("spoc.workers.worker")

T = TypeVar("T")


class Reporter(Protocol):
    """Where a carrier sends what happens during a run (to the parent, for processes)."""

    def state(self, state: WorkerState) -> None:
        """The run moved to ``state``."""

    def error(self, phase: str, exc: BaseException) -> None:
        """``phase`` (``"setup"``, ``"main"`` or ``"teardown"``) raised ``exc``."""


def run_lifecycle(worker: AbstractWorker, token: StopToken, reporter: Reporter) -> WorkerState:
    """Run the whole lifecycle of ``worker`` once; return STOPPED or FAILED."""
    with LoopRunner() as runner:  # the loop is created only if a hook is async
        run_loop = _RunLoop(runner)
        key = id(worker)  # the worker is alive for the whole run: its id is not reused meanwhile
        with _runs_lock:
            _runs[key] = run_loop
        try:
            return _Run(worker, token, reporter, run_loop).run()
        finally:
            with _runs_lock:
                if _runs.get(key) is run_loop:  # (a thread abandoned as hung ends after its successor began)
                    del _runs[key]


class _RunLoop:
    """The event loop of one run (made when first needed), and the thread carrying the run."""

    def __init__(self, runner: LoopRunner) -> None:
        self.runner = runner
        self.thread = threading.get_ident()
        self.loop: asyncio.AbstractEventLoop | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion on the run's loop; from the run's own thread only."""
        if self.loop is None:
            self.loop = self.runner.loop
        return self.runner.run(coro)


_runs: dict[int, _RunLoop] = {}  # id(worker) -> the loop of its run under way in this process
_runs_lock = threading.Lock()


def _forget_runs() -> None:
    global _runs_lock
    _runs.clear()  # a forked child carries none of its parent's runs
    _runs_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_runs)


def run_on_run_loop(worker: AbstractWorker, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` on the event loop of ``worker``'s run under way, from sync code.

    The async hooks of a run share one event loop. This puts on that loop an
    awaitable that sync code of the run was handed by user code (the result
    of an ``async def lifecycle``, a coroutine returned by a ``def``), instead
    of a loop of its own that would be thrown away after one call:

    * from the run's own thread: run to completion on the run's loop (made
      now if no hook needed it yet);
    * from another thread while the run's loop runs (a thread of that loop's
      executor): submitted to the loop, and waited for;
    * otherwise (``worker`` has no run under way in this process, or its loop
      is not running): on a loop made for this call.

    Returns:
        the awaitable's result; its exception is raised.

    Raises:
        RuntimeError: called from inside a running event loop, which cannot
            wait: ``await`` the awaitable there.
    """
    coro = awaitable if asyncio.iscoroutine(awaitable) else _as_coroutine(awaitable)
    if _running_loop() is not None:
        coro.close()  # never leave an un-awaited coroutine behind
        raise RuntimeError(f"worker {worker.name!r}: run_on_run_loop() inside a running event loop; await it")
    with _runs_lock:
        run_loop = _runs.get(id(worker))
    if run_loop is not None:
        if run_loop.thread == threading.get_ident():
            return run_loop.run(coro)
        loop = run_loop.loop
        if loop is not None and loop.is_running():
            return asyncio.run_coroutine_threadsafe(coro, loop).result()
    with LoopRunner() as runner:
        return runner.run(coro)


def emit_lifecycle(worker: AbstractWorker, event_type: str, /, **data: Any) -> None:
    """Call ``worker.lifecycle(event_type, **data)`` from sync code of its run; never raises.

    An ``async def lifecycle`` is awaited on the run's loop (see
    :func:`run_on_run_loop`); from sync code called inside that running loop,
    which cannot wait, it is scheduled on the loop as a task, its failure
    logged. The hook's exceptions are logged and ignored.
    """
    try:
        result = worker.lifecycle(event_type, **data)
        if inspect.isawaitable(result):
            if _running_loop() is not None:
                run_async_safely(_as_coroutine(result))  # a task on the running loop: the run's
            else:
                run_on_run_loop(worker, result)
    except Exception:
        logger.exception("worker %r: lifecycle(%r) raised; the error is ignored", worker.name, event_type)


async def aemit_lifecycle(worker: AbstractWorker, event_type: str, /, **data: Any) -> None:
    """Call ``worker.lifecycle(event_type, **data)`` from async code, awaiting an async hook; never raises."""
    try:
        result = worker.lifecycle(event_type, **data)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("worker %r: lifecycle(%r) raised; the error is ignored", worker.name, event_type)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class _Run:
    def __init__(
        self, worker: AbstractWorker, token: StopToken, reporter: Reporter, runner: _RunLoop
    ) -> None:
        self.worker = worker
        self.token = token
        self.reporter = reporter
        self.runner = runner
        self.exited = False  # sys.exit(0) in setup: a clean end, without startup or main

    def run(self) -> WorkerState:
        ok = self._hook("setup", self.worker.setup)
        if ok and not self.exited:
            self._emit("startup")
            self.worker.heartbeat()  # liveness is judged from here: booting and setup do not count
            self.reporter.state(WorkerState.RUNNING)
            ok = self._hook("main", self.worker.main, stoppable=True)
        self.reporter.state(WorkerState.STOPPING)
        ok = self._hook("teardown", self.worker.teardown) and ok
        self._emit("shutdown")
        return WorkerState.STOPPED if ok else WorkerState.FAILED

    def _hook(self, phase: str, hook: Callable[[], Any], *, stoppable: bool = False) -> bool:
        try:
            result = hook()
            if inspect.isawaitable(result):
                if stoppable:
                    self.runner.run(self._until_stop_timeout(result))
                else:
                    self.runner.run(_as_coroutine(result))
        except SystemExit as exc:
            if exc.code in (None, 0):
                self.exited = True
                return True  # sys.exit() / sys.exit(0): a clean, early end
            self._failed(phase, exc)
            return False
        except BaseException as exc:
            self._failed(phase, exc)
            return False
        return True

    def _failed(self, phase: str, exc: BaseException) -> None:
        logger.error("worker %r: %s() raised %r", self.worker.name, phase, exc, exc_info=exc)
        self.reporter.error(phase, exc)
        self._emit("error", exception=exc, phase=phase)

    def _emit(self, event_type: str, **data: Any) -> None:
        try:
            result = self.worker.lifecycle(event_type, **data)
            if inspect.isawaitable(result):
                self.runner.run(_as_coroutine(result))
        except BaseException:
            logger.exception(
                "worker %r: lifecycle(%r) raised; the error is ignored", self.worker.name, event_type
            )

    async def _until_stop_timeout(self, main: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(main)
        stop_requested = asyncio.ensure_future(self.token.wait_async())
        try:
            await asyncio.wait({task, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                await asyncio.wait({task}, timeout=self.worker.stop_timeout)
            if not task.done():
                logger.warning(
                    "worker %r: async main() still running %.3gs after the stop request; cancelled",
                    self.worker.name,
                    self.worker.stop_timeout,
                )
                task.cancel()
                await asyncio.wait({task})
                if task.cancelled():
                    return
            task.result()
        finally:
            stop_requested.cancel()


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable
