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
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from spoc.workers.aio import LoopRunner

from ._state import WorkerState
from ._stop import StopToken

if TYPE_CHECKING:
    from ._worker import AbstractWorker

__all__ = ["Reporter", "run_lifecycle"]

logger = logging.getLogger("spoc.workers.worker")


class Reporter(Protocol):
    """Where a carrier sends what happens during a run (to the parent, for processes)."""

    def state(self, state: WorkerState) -> None:
        """The run moved to ``state``."""

    def error(self, phase: str, exc: BaseException) -> None:
        """``phase`` (``"setup"``, ``"main"`` or ``"teardown"``) raised ``exc``."""


def run_lifecycle(worker: AbstractWorker, token: StopToken, reporter: Reporter) -> WorkerState:
    """Run the whole lifecycle of ``worker`` once; return STOPPED or FAILED."""
    with LoopRunner() as runner:  # the loop is created only if a hook is async
        return _Run(worker, token, reporter, runner).run()


class _Run:
    def __init__(
        self, worker: AbstractWorker, token: StopToken, reporter: Reporter, runner: LoopRunner
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


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
