"""Async helpers of spoc-workers: one place where event loops are made and run.

* :func:`run_async_safely` runs a coroutine with or without a running loop.
* Every loop is a uvloop loop when uvloop is installed;
  ``SPOC_WORKERS_LOOP=asyncio``, :func:`use_default_loop` or ``uvloop=False``
  opt out (see :data:`LOOP_ENV`).
* :class:`LoopRunner` runs many coroutines on one loop; every worker's async
  hooks go through it.
"""

from ._loops import (
    LOOP_ENV,
    loop_factory,
    new_event_loop,
    set_uvloop_if_available,
    use_default_loop,
    uvloop_enabled,
)
from ._runner import LoopRunner
from ._safely import run_async_safely

__all__ = [
    "LOOP_ENV",
    "LoopRunner",
    "loop_factory",
    "new_event_loop",
    "run_async_safely",
    "set_uvloop_if_available",
    "use_default_loop",
    "uvloop_enabled",
]
