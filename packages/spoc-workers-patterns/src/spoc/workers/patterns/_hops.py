"""The queues between a pipeline's stages ("hops"), the end-of-stream marker, and the marker counts.

Every hop of a :class:`Pipeline` is a :class:`Hop` in the pipeline's
process: thread stage workers read and write it directly, and a process
stage's switch (``_switch``) connects it to the private pipes of the
stage's workers. The generic stop-aware reads and writes are in
``_queues``; what is here is what only a pipeline needs: the marker, the
count of markers a stage still expects, a wait for a result that a failure
can cut short, and the accounting of what a hop's one reader has taken.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from spoc.workers import AbstractWorker

from ._plain_queue import notify
from ._queues import QueueReader, ThreadQueueReader, take_ready
from ._support import Marker

__all__ = [
    "END_OF_STREAM",
    "TAKE_AT_ONCE",
    "Hop",
    "LocalCount",
    "count_down",
    "drain",
]


END_OF_STREAM: Any = Marker("END_OF_STREAM", __name__)
"""The marker that ends a stream of items.

A stage worker that takes it from its input passes one downstream and ends
its loop (the worker then ends STOPPED). A :class:`Pipeline` sends and
counts the markers itself; put it yourself only when you wire stage workers
by hand: one per worker reading the queue.
"""


TAKE_AT_ONCE = 32
"""The most items the one reader of a :class:`Hop` takes under one hold of its lock."""


class Hop(queue.Queue):  # type: ignore[type-arg]
    """A pipeline's own queue between two thread ends.

    Nobody ``join()``s it, so ``task_done()`` does nothing instead of taking
    a lock and notifying a condition for every item. The pipeline's wait for
    a result on it can be cut short (:meth:`get_unless`, :meth:`wake`).

    Args:
        maxsize: as for :class:`queue.Queue`.
        readers: how many stage workers read it. The one reader of a hop
            takes what is there (up to :data:`TAKE_AT_ONCE` items, and half
            of ``maxsize``) under one hold of the lock, instead of one item at
            a time; several readers take one item at a time, so that none
            sits on items another could be working on.
    """

    spoc_counts_tasks = False
    """Its ``task_done()`` does nothing: the readers of ``_queues`` skip calling it."""

    def __init__(self, maxsize: int = 0, readers: int = 1, feeds_processes: bool = False) -> None:
        super().__init__(maxsize)
        self.readers = readers
        # In front of a process stage: what is put must pickle, and writers check it first.
        self.feeds_processes = feeds_processes
        # Taken by the one reader and not handed out yet: still counted in qsize(), so that
        # the items in flight stay within maxsize; given back as room once handed out.
        self.held = 0

    def _qsize(self) -> int:  # what put() and qsize() see
        return len(self.queue) + self.held

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """As :meth:`queue.Queue.get`, of what is in the queue itself (not what its reader holds)."""
        return self._take_one(block, timeout, None)

    def spoc_reader(self) -> QueueReader:
        """The reader a stage worker takes items with (see ``readers``)."""
        return _TakingReader(self) if self.readers == 1 else ThreadQueueReader(self)

    def task_done(self) -> None:
        """Nothing to account for."""

    def get_unless(self, timeout: float, give_up: Callable[[], bool]) -> Any:
        """``get(True, timeout)`` that also raises ``queue.Empty`` when woken with ``give_up()`` true."""
        return self._take_one(True, timeout, give_up)

    def _take_one(self, block: bool, timeout: float | None, give_up: Callable[[], bool] | None) -> Any:
        with self.mutex:  # the conditions share it; a Condition's own with costs two calls
            self._wait_for_items(block, timeout, give_up)
            item = self.queue.popleft()
            notify(self.not_full)
            return item

    def _wait_for_items(self, block: bool, timeout: float | None, give_up: Callable[[], bool] | None) -> None:
        """Wait (holding the mutex) until the hop holds an item; raise ``queue.Empty`` when
        ``timeout`` passes first, or woken with ``give_up()`` true."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.queue:
            remaining = None if deadline is None else deadline - time.monotonic()
            if not block or (remaining is not None and remaining <= 0) or (give_up is not None and give_up()):
                raise queue.Empty
            self.not_empty.wait(remaining)

    def take_available(self, at_most: int, hold: bool = False) -> list[Any]:
        """Take what is there, up to ``at_most`` items, without waiting.

        ``hold``: the one reader takes them, and they stay counted in the
        hop's size (:attr:`held`) instead of making room now.
        """
        with self.mutex:
            items = self.queue
            taken = [items.popleft() for _ in range(min(len(items), at_most))]
            if hold:
                self.held += len(taken)
            elif taken:
                self.not_full.notify(len(taken))
        return taken

    def take_held(self, at_most: int, timeout: float, give_up: Callable[[], bool]) -> list[Any]:
        """Wait ``timeout`` at most for an item, as :meth:`get_unless`; take it and up to
        ``at_most - 1`` more, all still counted in the hop's size until :meth:`release`.

        Raises:
            queue.Empty: nothing came, or woken with ``give_up()`` true.
        """
        with self.mutex:
            self._wait_for_items(True, timeout, give_up)
            items = self.queue
            taken = [items.popleft() for _ in range(min(len(items), at_most))]
            self.held += len(taken)
        return taken

    def release(self, count: int) -> None:
        """``count`` items taken with :meth:`take_held` are out of the hop's keeping: make room."""
        if count:
            with self.mutex:
                self.held -= count
                self.not_full.notify(count)

    def put_some(self, items: list[Any], timeout: float) -> list[Any]:
        """Put as many of ``items`` as there is room for, waiting up to ``timeout`` for room for
        the first; what could not be put."""
        with self.mutex:
            room = self.maxsize - self._qsize() if self.maxsize > 0 else len(items)
            if room <= 0:
                self.not_full.wait(timeout)
                room = self.maxsize - self._qsize()
                if room <= 0:
                    return items
            put = items[:room]
            self.queue.extend(put)
            if len(put) == 1:
                notify(self.not_empty)
            else:
                self.not_empty.notify(len(put))
        return items[room:]

    def put_anyway(self, items: list[Any]) -> None:
        """Put ``items`` even when the hop is full: for what arrives once the pipeline stopped,
        which its end empties."""
        with self.mutex:
            self.queue.extend(items)
            self.not_empty.notify_all()

    def wake(self) -> None:
        """Wake every thread waiting in :meth:`get_unless`."""
        with self.not_empty:
            self.not_empty.notify_all()


class _TakingReader(ThreadQueueReader):
    """The one reader of a :class:`Hop`: takes what is there at once, hands it out one by one.

    What it took stays counted in the hop's size (:attr:`Hop.held`) until it
    comes back for more, so the hop never holds more than ``maxsize``. When
    its worker's loop ends (a stop, the end marker), :meth:`arm`'s undo puts
    what it did not hand out back at the front of the hop, in order, where
    the pipeline finds it.
    """

    def __init__(self, q: Hop) -> None:
        super().__init__(q)
        self._taken: collections.deque[Any] = collections.deque()
        self._at_once = min(TAKE_AT_ONCE, q.maxsize // 2) if q.maxsize > 0 else TAKE_AT_ONCE

    def arm(self, worker: AbstractWorker) -> Callable[[], None]:
        disarm = super().arm(worker)

        def undo() -> None:
            disarm()
            self._give_back_taken()

        return undo

    def get(self, worker: AbstractWorker, timeout: float | None = None) -> tuple[bool, Any]:
        taken = self._taken
        if taken:
            return True, taken.popleft()
        self._release()
        got, first = super().get(worker, timeout)  # waits for the first item
        if got and self._at_once > 1:
            taken.extend(self.queue.take_available(self._at_once - 1, hold=True))
        return got, first

    def get_nowait(self) -> tuple[bool, Any]:
        if self._taken:
            return True, self._taken.popleft()
        self._release()
        return super().get_nowait()

    def take_ready(self, at_most: int, before: object) -> list[Any]:
        return take_ready(self._taken, at_most, before)

    def _release(self) -> None:
        """Everything taken last time was handed out: it makes room now."""
        q = self.queue
        if q.held:
            with q.mutex:
                q.not_full.notify(q.held)
                q.held = 0

    def _give_back_taken(self) -> None:
        q = self.queue
        with q.mutex:
            q.queue.extendleft(reversed(self._taken))
            q.held = 0
            q.not_empty.notify_all()
            q.not_full.notify_all()
        self._taken.clear()


class LocalCount:
    """A thread stage's marker counter, shaped like ``multiprocessing.Value``."""

    def __init__(self, value: int) -> None:
        self.value = value
        self._lock = threading.Lock()

    def get_lock(self) -> threading.Lock:
        """The lock that guards :attr:`value`."""
        return self._lock

    def __reduce__(self) -> tuple[type[LocalCount], tuple[int]]:  # a process stage's own count
        return LocalCount, (self.value,)


def count_down(counter: Any) -> int:
    """Take one from a :class:`LocalCount` or a ``multiprocessing.Value("i")``; the count left."""
    with counter.get_lock():
        counter.value -= 1
        return int(counter.value)


# -- emptying a hop -------------------------------------------------------------------


def drain(q: Hop) -> list[Any]:
    """Everything ``q`` still holds, taken without waiting."""
    items: list[Any] = []
    while True:
        try:
            items.append(q.get_nowait())
        except queue.Empty:
            return items
