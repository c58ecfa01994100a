"""What every pattern shares: counters the parent can read, sync-or-async calls, events.

Lifecycle events (:func:`emit`, :func:`aemit`) and awaiting on the run's
loop from sync code (:func:`run_on_run_loop`) come from the core, which the
Redis distribution uses too. Counters live in plain memory for thread workers and in shared memory
(a :func:`multiprocessing.Array` of the worker's start method) for process
workers, so that a parent reading ``worker.stats`` sees what the child did.
"""

from __future__ import annotations

import inspect
import logging
import multiprocessing
import threading
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeGuard

from spoc.workers import AbstractWorker, ProcessWorker
from spoc.workers._checks import check_number
from spoc.workers._lifecycle import aemit_lifecycle as aemit
from spoc.workers._lifecycle import emit_lifecycle as emit
from spoc.workers._lifecycle import run_on_run_loop

__all__ = [
    "PLAIN",
    "Counters",
    "Marker",
    "aemit",
    "awaitable",
    "check_number",
    "emit",
    "has_async",
    "log_failure",
    "new_counters",
    "run_on_run_loop",
    "short_repr",
]

logger = logging.getLogger("spoc.workers.patterns")


class Counters:
    """Named float counters, readable from other threads (and, for a process worker, the parent).

    Each worker's counters have one writer, the worker's own run; any
    thread, or the parent process, may read them.

    - For a thread worker they are a list of floats and take no lock (each
      item assignment is atomic), which keeps the per-item cost low.
    - For a process worker they live in shared memory (a ``RawArray`` of the
      worker's start method) guarded by a *sequence lock*: the writer makes
      the sequence number odd while it writes, and a reader retries until it
      reads the same even number before and after its copy. No semaphore is
      involved: a ``multiprocessing`` lock finalised by the garbage collector
      can re-enter the resource tracker (gh-109629: an error on 3.11+, a
      deadlock on 3.10), and these counters are collected with their worker.
      A writer killed in the middle of a write (SIGKILL) leaves the sequence
      number odd for good: a reader waits :data:`STALLED_WRITE` seconds at
      most for it, then reads the values as they are (off by at most that
      one write) and no longer waits on that same sequence number. The next
      writer (the worker's next run) steps past an odd number to the next
      odd one as it begins its write.

    Args:
        fields: the counter names.
        context: a :mod:`multiprocessing` context for process workers (the
            counters then live in shared memory and travel to the child with
            the worker), None for thread workers.
    """

    def __init__(self, fields: Sequence[str], context: Any = None) -> None:
        self._dead_write = -1.0  # the sequence number of a write whose writer was killed (see snapshot())
        self._fields = tuple(fields)
        self._index = {name: i for i, name in enumerate(self._fields)}
        self._shared: Any = None
        self._write_lock: Any = _NO_LOCK
        if context is None:
            self._values: Any = [0.0] * len(self._fields)
        else:  # slot 0 is the sequence number, the counters follow
            self._shared = context.RawArray("d", len(self._fields) + 1)
            self._values = None
            self._write_lock = threading.Lock()  # the writer's threads, one at a time

    @property
    def fields(self) -> tuple[str, ...]:
        """The counter names."""
        return self._fields

    def update(
        self,
        add: dict[str, float] | None = None,
        set_: dict[str, float] | None = None,
        maximum: dict[str, float] | None = None,
    ) -> None:
        """Add to, set, and raise to a maximum some counters, seen by readers as one step."""
        shared = self._shared
        offset = 0 if shared is None else 1
        values = self._values if shared is None else shared
        index = self._index
        with self._write_lock:
            if shared is not None:
                shared[0] += 2.0 if shared[0] % 2 else 1.0  # odd: a write is under way (see snapshot)
            if add:
                for name, delta in add.items():
                    values[index[name] + offset] += delta
            if set_:
                for name, value in set_.items():
                    values[index[name] + offset] = value
            if maximum:
                for name, value in maximum.items():
                    i = index[name] + offset
                    values[i] = max(values[i], value)
            if shared is not None:
                shared[0] += 1.0  # even again: the write is complete

    def add(self, name: str, delta: float = 1.0) -> None:
        """Add ``delta`` to counter ``name``."""
        shared = self._shared
        if shared is None:  # the hot path of thread workers: one writer, no lock
            self._values[self._index[name]] += delta
            return
        i = self._index[name] + 1
        with self._write_lock:
            shared[0] += 2.0 if shared[0] % 2 else 1.0  # odd: a write is under way (see snapshot)
            shared[i] += delta
            shared[0] += 1.0

    def observer(
        self, bounds: Sequence[float], buckets: Sequence[str], total: str
    ) -> Callable[[str | None, float], None]:
        """A histogram's ``observe(one, amount)``, made once for a hot loop.

        Each call adds 1 to counter ``one`` (an outcome; None: none) and to
        the bucket of ``amount`` (the first of ``buckets`` whose bound in
        ``bounds`` is at least ``amount``; the last bucket, one more than the
        bounds, takes the rest), and ``amount`` to ``total``: readers see it
        as one step.

        Raises:
            ValueError: ``buckets`` are not consecutive counters, or not one more than ``bounds``.
        """
        index = self._index
        first = index[buckets[0]]
        if [index[name] for name in buckets] != list(range(first, first + len(bounds) + 1)):
            raise ValueError(f"the buckets {buckets!r} must be {len(bounds) + 1} consecutive counters")
        bounds = tuple(bounds)
        shared = self._shared
        if shared is None:  # the hot path of thread workers: one writer, no lock
            values = self._values
            last = index[total]

            def observe(one: str | None, amount: float) -> None:
                if one is not None:
                    values[index[one]] += 1.0
                values[first + bisect_left(bounds, amount)] += 1.0
                values[last] += amount

            return observe
        lock = self._write_lock
        shift, last = first + 1, index[total] + 1  # slot 0 is the sequence number

        def observe_shared(one: str | None, amount: float) -> None:
            with lock:
                shared[0] += 2.0 if shared[0] % 2 else 1.0  # odd: a write is under way (see snapshot)
                if one is not None:
                    shared[index[one] + 1] += 1.0
                shared[shift + bisect_left(bounds, amount)] += 1.0
                shared[last] += amount
                shared[0] += 1.0

        return observe_shared

    def snapshot(self) -> dict[str, float]:
        """Every counter's current value, as one consistent copy."""
        shared = self._shared
        if shared is None:
            return dict(zip(self._fields, list(self._values), strict=True))
        count = len(self._fields)
        stalled_since, stalled_at = 0.0, -1.0
        while True:
            before = shared[0]
            current = shared[1 : count + 1]
            if shared[0] == before and (before % 2 == 0 or before == self._dead_write):
                return dict(zip(self._fields, current, strict=True))
            # A write is under way in another thread or process: let it finish, unless its
            # writer stays in it so long that it must have been killed there.
            now = time.monotonic()
            if before != stalled_at:  # a new write under way: time it from now
                stalled_since, stalled_at = now, before
            elif now - stalled_since >= STALLED_WRITE:
                self._dead_write = before
                logger.warning(
                    "counters %s: a write has stayed unfinished %.1fs (its writer was killed?): "
                    "read as they are",
                    ", ".join(self._fields),
                    now - stalled_since,
                )
                continue
            time.sleep(0)

    def reset(self) -> None:
        """Set every counter to 0."""
        self.update(set_=dict.fromkeys(self._fields, 0.0))

    def __getstate__(self) -> dict[str, Any]:
        if self._shared is None:
            raise TypeError("the counters of a thread worker cannot be pickled")
        return {"_fields": self._fields, "_index": self._index, "_shared": self._shared}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._dead_write = -1.0
        self._values = None
        self._write_lock = threading.Lock()


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


STALLED_WRITE = 1.0
"""Seconds a reader of process counters waits for a write under way before it takes the writer
for killed in the middle of it (a live one takes microseconds, a descheduled one milliseconds)."""

_PLAIN = (type(None), bool, int, float, complex, str, bytes, tuple, list, dict, set, frozenset)

PLAIN: frozenset[type] = frozenset(_PLAIN)
"""The exact types of plain values, never awaitable: a hot loop skips :func:`awaitable` for them."""


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


def short_repr(item: object) -> str:
    """``repr(item)``, cut to 80 characters for a log line."""
    text = repr(item)
    return text if len(text) <= 80 else text[:77] + "..."


class Marker:
    """A marker object (``END_OF_STREAM``, ``DROPPED``): pickled by its global name, so that it
    is the very same object after a process hop, and compared with ``is``.

    Args:
        name: the name of the module global that holds it.
        module: that module's ``__name__``.
    """

    def __init__(self, name: str, module: str) -> None:
        self._name = name
        self.__module__ = module  # where pickle looks the name up

    def __reduce__(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return self._name
