"""``run_async_safely``: run a coroutine whether or not a loop is already running."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._runner import LoopRunner

__all__ = ["run_async_safely"]

T = TypeVar("T")

logger = logging.getLogger("spoc.workers.aio")

# Tasks scheduled on a running loop are referenced here until they finish:
# the event loop itself keeps only weak references to tasks.
_pending: set[asyncio.Task[Any]] = set()


def run_async_safely(coro: Coroutine[Any, Any, T], *, uvloop: bool | None = None) -> T | asyncio.Task[T]:
    """Run ``coro`` correctly whether or not this thread already runs an event loop.

    * No running loop in this thread: the coroutine runs to completion on a
      new loop, and its result is returned or its exception raised. That
      loop is a uvloop loop when uvloop is installed, unless the environment
      variable ``SPOC_WORKERS_LOOP=asyncio``, a call to
      :func:`~spoc.workers.aio.use_default_loop` or ``uvloop=False`` says
      otherwise.
    * Inside a running loop: the coroutine is scheduled as a task on that
      loop and the :class:`asyncio.Task` is returned at once (``uvloop`` is
      then ignored: the running loop is used). The task is kept alive until
      it finishes; if it fails, its exception is logged on the
      ``spoc.workers.aio`` logger, so it is never lost even when nobody
      awaits the task (awaiting it still raises the exception as usual).

    Args:
        coro: the coroutine object to run.
        uvloop: for a new loop, None (the default) takes the library's
            choice, False the standard asyncio loop, True uvloop.

    Raises:
        TypeError: when ``coro`` is not a coroutine object.
        ImportError: ``uvloop=True`` and uvloop is not installed.
    """
    if not asyncio.iscoroutine(coro):
        raise TypeError(f"run_async_safely() expects a coroutine object, got {type(coro).__name__}")
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        try:
            runner = LoopRunner(uvloop=uvloop)
        except BaseException:
            coro.close()  # never leave an un-awaited coroutine behind
            raise
        with runner:
            return runner.run(coro)
    task = loop.create_task(coro)
    _pending.add(task)
    task.add_done_callback(_task_finished)
    return task


def _task_finished(task: asyncio.Task[Any]) -> None:
    _pending.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.error(
            "task %s scheduled by run_async_safely() failed",
            task.get_name(),
            exc_info=(type(exc), exc, exc.__traceback__),
        )
