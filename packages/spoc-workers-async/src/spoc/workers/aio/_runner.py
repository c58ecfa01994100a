"""A runner that owns one event loop and runs coroutines on it, one after another.

Workers run all of their async hooks (``setup``, ``lifecycle``, ``main``,
``teardown``) through one :class:`LoopRunner`, so tasks and loop-bound objects
made in ``setup`` are still alive and usable in ``main``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._loops import LoopFactory, factory_for

__all__ = ["LoopRunner"]

T = TypeVar("T")


class LoopRunner:
    """Own one event loop for the lifetime of a ``with`` block.

    The loop is created lazily, on the first :meth:`run`. On exit every task
    still pending is cancelled and awaited, async generators and the default
    executor are shut down, and the loop is closed, exactly as
    :func:`asyncio.run` does.

    Args:
        uvloop: which loop to create. None (the default): the library's
            choice, uvloop when it is installed unless ``SPOC_WORKERS_LOOP=asyncio``
            or :func:`~spoc.workers.aio.use_default_loop` said otherwise;
            False: the standard asyncio loop; True: uvloop.

    Raises:
        ImportError: ``uvloop=True`` and uvloop is not installed.

    Examples:
        >>> with LoopRunner() as runner:
        ...     runner.run(asyncio.sleep(0, result=1))
        1
    """

    def __init__(self, *, uvloop: bool | None = None) -> None:
        self._runner: Any = None  # asyncio.Runner on 3.11+, _Runner310 before
        self._closed = False
        # An explicit choice is checked now; the library's own is made at the first run.
        self._factory: LoopFactory | None = None if uvloop is None else factory_for(uvloop)

    def __enter__(self) -> LoopRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The runner's event loop (created on first use)."""
        return self._get_runner().get_loop()  # type: ignore[no-any-return]

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion on the runner's loop and return its result.

        Raises:
            RuntimeError: when called from a running event loop or after close.
            ValueError, ImportError: the first loop of the process cannot be
                made as ``SPOC_WORKERS_LOOP`` asks (an unknown value; ``uvloop``
                when uvloop is not installed).
        """
        try:
            if _running_loop() is not None:
                raise RuntimeError("LoopRunner.run() cannot be called from a running event loop")
            runner = self._get_runner()
        except BaseException:  # nested, closed, or no loop to be had ($SPOC_WORKERS_LOOP)
            coro.close()  # never leave an un-awaited coroutine behind
            raise
        return runner.run(coro)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Cancel what is left on the loop and close it. Safe to call twice."""
        self._closed = True
        if self._runner is not None:
            runner, self._runner = self._runner, None
            runner.close()

    def _get_runner(self) -> Any:
        if self._closed:
            raise RuntimeError("LoopRunner is closed")
        if self._runner is None:
            factory = self._factory if self._factory is not None else factory_for(None)
            if sys.version_info >= (3, 11):
                self._runner = asyncio.Runner(loop_factory=factory)
            else:
                self._runner = _Runner310(factory)
        return self._runner


class _Runner310:
    """The part of Python 3.11's ``asyncio.Runner`` we need, for Python 3.10."""

    def __init__(self, factory: LoopFactory) -> None:
        self._factory = factory
        self._loop: asyncio.AbstractEventLoop | None = None

    def get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = self._factory()
        return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self.get_loop()
        return loop.run_until_complete(loop.create_task(coro))

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        try:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    pending = asyncio.all_tasks(loop)
    if not pending:
        return
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    for task in pending:
        if task.cancelled():
            continue
        if task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during LoopRunner.close()",
                    "exception": task.exception(),
                    "task": task,
                }
            )
