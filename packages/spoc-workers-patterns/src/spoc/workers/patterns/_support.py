"""What every pattern shares: counters the parent can read, sync-or-async calls, events.

Counters live in plain memory for thread workers and in shared memory
(a :func:`multiprocessing.Array` of the worker's start method) for process
workers, so that a parent reading ``worker.stats`` sees what the child did.
"""

from __future__ import annotations

import inspect
import logging
import math
import multiprocessing
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeGuard

from spoc.workers import AbstractWorker, ProcessWorker, run_async_safely

__all__ = [
    "Counters",
    "aemit",
    "awaitable",
    "check_number",
    "emit",
    "has_async",
    "log_failure",
    "new_counters",
]

logger = logging.getLogger("spoc.workers.patterns")


class Counters:
    """Named float counters; in shared memory, behind its lock, when ``context`` is given.

    A thread worker's counters are written by that worker's thread alone and
    read by others: a list of floats, no lock (each item assignment is
    atomic), which keeps the per-item cost of the hot loops low.

    Args:
        fields: the counter names.
        context: a :mod:`multiprocessing` context for process workers (the
            counters then live in shared memory and travel to the child with
            the worker), None for thread workers.
    """

    def __init__(self, fields: Sequence[str], context: Any = None) -> None:
        self._fields = tuple(fields)
        self._index = {name: i for i, name in enumerate(self._fields)}
        self._shared: Any = None
        if context is None:
            self._values: Any = [0.0] * len(self._fields)
            self._lock: Any = _NO_LOCK  # one writer (the worker's thread); see the class docstring
        else:
            self._shared = context.Array("d", len(self._fields))
            self._values = None
            self._lock = None

    # Under spawn/forkserver the shared array travels with the worker; the
    # lock and the raw view are found again from it after unpickling.
    def _view(self) -> tuple[Any, Any]:
        shared = self._shared
        if shared is None:
            return self._values, self._lock
        return shared.get_obj(), shared.get_lock()

    def update(
        self,
        add: dict[str, float] | None = None,
        set_: dict[str, float] | None = None,
        maximum: dict[str, float] | None = None,
    ) -> None:
        """Add to, set, and raise to a maximum some counters, in one locked step."""
        values, lock = self._view()
        index = self._index
        with lock:
            if add:
                for name, delta in add.items():
                    values[index[name]] += delta
            if set_:
                for name, value in set_.items():
                    values[index[name]] = value
            if maximum:
                for name, value in maximum.items():
                    i = index[name]
                    values[i] = max(values[i], value)

    def add(self, name: str, delta: float = 1.0) -> None:
        """Add ``delta`` to counter ``name``."""
        if self._shared is None:  # the hot path of thread workers: one writer, no lock
            self._values[self._index[name]] += delta
            return
        values, lock = self._view()
        i = self._index[name]
        with lock:
            values[i] += delta

    def snapshot(self) -> dict[str, float]:
        """Every counter's current value, read in one locked step."""
        values, lock = self._view()
        with lock:
            current = list(values[: len(self._fields)])
        return dict(zip(self._fields, current, strict=True))

    def reset(self) -> None:
        """Set every counter to 0."""
        values, lock = self._view()
        with lock:
            for i in range(len(self._fields)):
                values[i] = 0.0

    def __getstate__(self) -> dict[str, Any]:
        if self._shared is None:
            raise TypeError("the counters of a thread worker cannot be pickled")
        return {"_fields": self._fields, "_index": self._index, "_shared": self._shared}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._values = None
        self._lock = None


class _NoLock:
    """A context manager that does nothing: the lock of single-writer counters."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


_NO_LOCK = _NoLock()


def new_counters(worker: AbstractWorker, fields: Iterable[str]) -> Counters:
    """Counters for ``worker``: in shared memory when it is a process worker."""
    context = None
    if isinstance(worker, ProcessWorker):
        context = multiprocessing.get_context(worker.start_method)
    return Counters(tuple(fields), context)


_PLAIN = (type(None), bool, int, float, complex, str, bytes, tuple, list, dict, set, frozenset)


def awaitable(value: object) -> TypeGuard[Awaitable[Any]]:
    """:func:`inspect.isawaitable`, with a fast answer for the plain values most items are.

    It runs once per item in the hot loops of stage workers and job processors.
    """
    return not isinstance(value, _PLAIN) and inspect.isawaitable(value)


def has_async(*functions: Callable[..., Any]) -> bool:
    """True when any of ``functions`` is an ``async def`` function or method."""
    return any(inspect.iscoroutinefunction(f) for f in functions)


def log_failure(worker: AbstractWorker, what: str, exc: BaseException) -> None:
    """Log a failure the worker survives (a task, job or item), with its traceback."""
    logger.error("worker %r: %s raised %r; going on", worker.name, what, exc, exc_info=exc)


def emit(worker: AbstractWorker, event_type: str, /, **data: Any) -> None:
    """Send a lifecycle event from synchronous code; the hook's errors are logged and ignored.

    An ``async def`` lifecycle makes the patterns run their async loop (see
    :func:`has_async`), so an awaitable here is rare: it is run to completion.
    """
    try:
        result = worker.lifecycle(event_type, **data)
        if inspect.isawaitable(result):
            run_async_safely(_as_coroutine(result))
    except Exception:
        logger.exception("worker %r: lifecycle(%r) raised; the error is ignored", worker.name, event_type)


async def aemit(worker: AbstractWorker, event_type: str, /, **data: Any) -> None:
    """Send a lifecycle event from async code, awaiting an async hook."""
    try:
        result = worker.lifecycle(event_type, **data)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("worker %r: lifecycle(%r) raised; the error is ignored", worker.name, event_type)


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def check_number(owner: str, what: str, value: Any, *, minimum: float = 0.0, strict: bool = False) -> float:
    """Validate a finite number of seconds (or a count) and return it as a float.

    Raises:
        TypeError: ``value`` is not a number.
        ValueError: it is below ``minimum`` (or equal, when ``strict``), or not finite.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {what} must be a number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < minimum or (strict and number == minimum):
        relation = ">" if strict else ">="
        raise ValueError(f"{owner}: {what} must be a finite number {relation} {minimum:g}, got {value!r}")
    return number
