"""Telling when a multiprocessing queue's read lock stays taken while items wait in it.

A process killed (SIGKILL) while it holds the read lock of a
``multiprocessing.Queue`` leaves that lock taken for good: every other
reader, and the killed worker's replacement, then waits forever while the
items stay in the queue. CPython's queue cannot recover from it; what a
reader can do is say so, once, instead of waiting in silence.
"""

from __future__ import annotations

import logging
import time

from spoc.workers import AbstractWorker

__all__ = ["STUCK_READ_LOCK", "ReadLockWatch"]

logger = logging.getLogger("spoc.workers.patterns")

STUCK_READ_LOCK = 10.0
"""Seconds a reader sees items waiting without once getting the read lock before it reports it."""


class ReadLockWatch:
    """One reader's watch: :meth:`missed` each time items waited but the lock was taken,
    :meth:`took` each time it took an item."""

    def __init__(self) -> None:
        self._since: float | None = None
        self._told = False

    def took(self) -> None:
        """An item was taken: the lock is free again."""
        self._since = None

    def missed(self, worker: AbstractWorker) -> None:
        """Items waited, yet the read lock was taken: report it once it lasts :data:`STUCK_READ_LOCK`."""
        now = time.monotonic()
        if self._since is None:
            self._since = now
        elif not self._told and now - self._since >= STUCK_READ_LOCK:
            self._told = True
            logger.error(
                "%s %r: items have waited in its multiprocessing queue for %.0fs while its read "
                "lock stayed taken; if a process reading this queue was killed (SIGKILL) while "
                "holding it, the queue cannot be read any more (a limit of multiprocessing.Queue): "
                "recreate the queue, or use a Pipeline or a RedisStream, which a SIGKILL cannot wedge",
                type(worker).__name__,
                worker.name,
                now - self._since,
            )
