"""Where every event loop of spoc-workers comes from.

One loop factory serves the whole library: plain asyncio by default, uvloop
after :func:`set_uvloop_if_available`. Nothing here touches the deprecated
event-loop-policy API.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable

__all__ = [
    "loop_factory",
    "new_event_loop",
    "set_uvloop_if_available",
    "use_default_loop",
    "uvloop_enabled",
]

logger = logging.getLogger("spoc.workers.aio")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

_factory: LoopFactory = asyncio.new_event_loop


def set_uvloop_if_available() -> bool:
    """Make every loop this library creates a uvloop loop, if uvloop is installed.

    The choice is process-wide. The process workers of spoc-workers carry it
    into their child processes under every start method; other children
    started with ``spawn`` or ``forkserver`` import this module afresh and
    must call it again.

    Returns:
        True when uvloop is now in use, False when it is not importable (the
        standard asyncio loop stays in use).
    """
    global _factory
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        logger.debug("uvloop is not installed; keeping the asyncio event loop")
        return False
    _factory = uvloop.new_event_loop
    logger.debug("uvloop %s enabled", getattr(uvloop, "__version__", "?"))
    return True


def use_default_loop() -> None:
    """Go back to the standard asyncio event loop for loops created from now on."""
    global _factory
    _factory = asyncio.new_event_loop


def uvloop_enabled() -> bool:
    """Tell whether loops created by this library are uvloop loops."""
    return _factory is not asyncio.new_event_loop


def loop_factory() -> LoopFactory:
    """Return the factory this library uses to create event loops."""
    return _factory


def new_event_loop() -> asyncio.AbstractEventLoop:
    """Create a new event loop with the library's current factory."""
    return _factory()
