"""Where every event loop of spoc-workers comes from.

One loop factory serves the whole library: uvloop when it is importable,
plain asyncio when it is not. The choice is made once per process, the first
time the library needs a loop, and can be changed:

* for the whole process: the environment variable ``SPOC_WORKERS_LOOP``
  (``asyncio``, ``uvloop`` or ``auto``, read at that first use), or a call to
  :func:`use_default_loop` / :func:`set_uvloop_if_available`, which win over
  the variable;
* for one call: ``run_async_safely(coro, uvloop=False)`` or
  ``LoopRunner(uvloop=False)``.

Nothing here touches the deprecated event-loop-policy API, so the choice never
changes what :func:`asyncio.run` does elsewhere in the program.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from collections.abc import Callable
from types import ModuleType

__all__ = [
    "LOOP_ENV",
    "loop_factory",
    "new_event_loop",
    "set_uvloop_if_available",
    "use_default_loop",
    "uvloop_enabled",
]

logger = logging.getLogger("spoc.workers.aio")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

LOOP_ENV = "SPOC_WORKERS_LOOP"
"""Environment variable choosing the event loop of the whole process:
``asyncio`` (the standard loop, even when uvloop is installed), ``uvloop``
(uvloop, an error when it is not installed) or ``auto`` (the default: uvloop
when it is importable)."""

_LOOP_CHOICES = ("auto", "asyncio", "uvloop")

# None: not chosen yet; the first use decides (see _default_factory).
_factory: LoopFactory | None = None


def set_uvloop_if_available() -> bool:
    """Make every loop this library creates a uvloop loop, if uvloop is installed.

    uvloop is already the default when it is importable; this call matters
    only to undo :func:`use_default_loop` or to override ``SPOC_WORKERS_LOOP``.
    The choice is process-wide, and the process workers of spoc-workers carry
    it into their child processes under every start method.

    Returns:
        True when uvloop is now in use, False when it is not importable (the
        standard asyncio loop is then used).
    """
    global _factory
    uvloop = _import_uvloop()
    if uvloop is None:
        _factory = asyncio.new_event_loop
        return False
    _factory = uvloop.new_event_loop
    logger.debug("uvloop %s enabled", getattr(uvloop, "__version__", "?"))
    return True


def use_default_loop() -> None:
    """Use the standard asyncio event loop for every loop this library creates from now on.

    The opt-out from uvloop for the whole process, like ``SPOC_WORKERS_LOOP=asyncio``;
    process workers started afterwards use the standard loop in their child too.
    """
    global _factory
    _factory = asyncio.new_event_loop


def uvloop_enabled() -> bool:
    """Tell whether loops created by this library are uvloop loops."""
    return _chosen() is not asyncio.new_event_loop


def loop_factory() -> LoopFactory:
    """Return the factory this library uses to create event loops."""
    return _chosen()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """Create a new event loop with the library's current factory."""
    return _chosen()()


def factory_for(uvloop: bool | None) -> LoopFactory:
    """The loop factory for a call's ``uvloop`` argument.

    None: the library's choice (:func:`loop_factory`); False: the standard
    asyncio loop; True: uvloop.

    Raises:
        ImportError: ``uvloop`` is True and uvloop is not installed.
    """
    if uvloop is None:
        return _chosen()
    if not uvloop:
        return asyncio.new_event_loop
    module = _import_uvloop()
    if module is None:
        raise ImportError("uvloop=True, but uvloop is not installed (pip install uvloop)")
    return module.new_event_loop  # type: ignore[no-any-return]


def _chosen() -> LoopFactory:
    global _factory
    factory = _factory
    if factory is None:
        factory = _factory = _default_factory()
    return factory


def _default_factory() -> LoopFactory:
    """The factory ``SPOC_WORKERS_LOOP`` asks for; uvloop when importable if it is unset."""
    raw = os.environ.get(LOOP_ENV, "")
    choice = raw.strip().lower() or "auto"
    if choice not in _LOOP_CHOICES:
        raise ValueError(f"${LOOP_ENV}={raw!r}: expected one of {', '.join(_LOOP_CHOICES)}")
    if choice == "asyncio":
        logger.debug("$%s=asyncio: using the asyncio event loop", LOOP_ENV)
        return asyncio.new_event_loop
    uvloop = _import_uvloop()
    if uvloop is not None:
        logger.debug("using uvloop %s", getattr(uvloop, "__version__", "?"))
        return uvloop.new_event_loop  # type: ignore[no-any-return]
    if choice == "uvloop":
        raise ImportError(f"${LOOP_ENV}=uvloop, but uvloop is not installed (pip install uvloop)")
    logger.debug("uvloop is not installed; using the asyncio event loop")
    return asyncio.new_event_loop


def _import_uvloop() -> ModuleType | None:
    try:
        return importlib.import_module("uvloop")
    except ImportError:
        return None
