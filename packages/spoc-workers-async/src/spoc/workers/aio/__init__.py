"""Async helpers of spoc-workers: one place where event loops are made and run.

* :func:`run_async_safely` runs a coroutine with or without a running loop.
* :func:`set_uvloop_if_available` opts the whole library into uvloop.
* :class:`LoopRunner` runs many coroutines on one loop; every worker's async
  hooks go through it.
"""

from ._loops import (
    loop_factory,
    new_event_loop,
    set_uvloop_if_available,
    use_default_loop,
    uvloop_enabled,
)
from ._runner import LoopRunner
from ._safely import run_async_safely

__all__ = [
    "LoopRunner",
    "loop_factory",
    "new_event_loop",
    "run_async_safely",
    "set_uvloop_if_available",
    "use_default_loop",
    "uvloop_enabled",
]
