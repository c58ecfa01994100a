"""The queues between a pipeline's stages ("hops"), the end-of-stream marker, and emptying them.

A hop between two thread ends is a :class:`Hop`; one with a process at
either end is a :mod:`multiprocessing` queue (:func:`make_hop`). The generic
stop-aware reads and writes of both are in ``_queues``; what is here is
what only a pipeline needs: the marker, the count of markers a stage still
expects, a wait for a result that a failure can cut short, and reading
what a hop still holds once its readers have ended, even a reader that was
killed while holding the queue's read lock.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import queue
import struct
import threading
import time
from collections.abc import Callable
from multiprocessing.reduction import ForkingPickler
from typing import Any

from ._queues import is_process_queue

__all__ = [
    "END_OF_STREAM",
    "Hop",
    "LocalCount",
    "count_down",
    "drain",
    "feeds_here",
    "make_hop",
]

logger = logging.getLogger("spoc.workers.patterns")

_LOCK_WAIT = 0.05  # how long a read lock must stay taken to count as lost with a killed reader


class _EndOfStream:
    """The end-of-stream marker; one object per process, the same after pickling."""

    _instance: _EndOfStream | None = None

    def __new__(cls) -> _EndOfStream:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __reduce__(self) -> str:
        return "END_OF_STREAM"  # pickled as this module's global of that name

    def __repr__(self) -> str:
        return "END_OF_STREAM"


END_OF_STREAM: Any = _EndOfStream()
"""The marker that ends a stream of items.

A stage worker that takes it from its input passes one downstream and ends
its loop (the worker then ends STOPPED). A :class:`Pipeline` sends and
counts the markers itself; put it yourself only when you wire stage workers
by hand: one per worker reading the queue.
"""


class Hop(queue.Queue):  # type: ignore[type-arg]
    """A pipeline's own queue between two thread ends.

    Nobody ``join()``s it, so ``task_done()`` does nothing instead of taking
    a lock and notifying a condition for every item. The pipeline's wait for
    a result on it can be cut short (:meth:`get_unless`, :meth:`wake`).
    """

    def task_done(self) -> None:
        """Nothing to account for."""

    def get_unless(self, timeout: float, give_up: Callable[[], bool]) -> Any:
        """``get(True, timeout)`` that also raises ``queue.Empty`` when woken with ``give_up()`` true."""
        with self.not_empty:
            end = time.monotonic() + timeout
            while not self._qsize():
                remaining = end - time.monotonic()
                if remaining <= 0 or give_up():
                    raise queue.Empty
                self.not_empty.wait(remaining)
            item = self._get()
            self.not_full.notify()
            return item

    def wake(self) -> None:
        """Wake every thread waiting in :meth:`get_unless`."""
        with self.not_empty:
            self.not_empty.notify_all()


def make_hop(context: Any, maxsize: int, crosses_processes: bool) -> Any:
    """A queue of ``maxsize`` between two stages: a multiprocessing one of ``context`` when a
    process is at either end (``crosses_processes``), else a :class:`Hop`."""
    return context.Queue(maxsize) if crosses_processes else Hop(maxsize)


class LocalCount:
    """A thread stage's marker counter, shaped like ``multiprocessing.Value``."""

    def __init__(self, value: int) -> None:
        self.value = value
        self._lock = threading.Lock()

    def get_lock(self) -> threading.Lock:
        """The lock that guards :attr:`value`."""
        return self._lock


def count_down(counter: Any) -> int:
    """Take one from a :class:`LocalCount` or a ``multiprocessing.Value("i")``; the count left."""
    with counter.get_lock():
        counter.value -= 1
        return int(counter.value)


# -- emptying a hop -------------------------------------------------------------------


def feeds_here(q: Any) -> bool:
    """A multiprocessing queue whose feeder thread runs in this process."""
    return is_process_queue(q) and q._thread is not None


def drain(q: Any, wait: float, readers_gone: bool = False) -> list[Any]:
    """Everything ``q`` still holds (a multiprocessing queue: until it stays empty ``wait`` seconds).

    ``readers_gone``: nobody else reads ``q`` any more; a read lock that stays
    taken then belongs to a reader that was killed, and the pipe is read without it.
    """
    items: list[Any] = []
    if q is None:
        return items
    if not is_process_queue(q):
        wait = 0.0
    elif readers_gone and _read_lock_lost(q):
        return _read_pipe(q, wait)
    while True:
        try:
            items.append(q.get(True, wait) if wait else q.get_nowait())
        except (queue.Empty, OSError, ValueError, EOFError):
            return items


def _read_lock_lost(q: Any) -> bool:
    if q._rlock.acquire(True, _LOCK_WAIT):
        q._rlock.release()
        return False
    return True


def _read_pipe(q: Any, wait: float) -> list[Any]:
    """The items in a multiprocessing queue's pipe, read without its lock and without blocking.

    A SIGKILL is delivered as a system call returns, so the killed reader
    has often just read a message's 4-byte length, not its body: the pipe
    then begins with that body, a bare pickle (whose first byte, 0x80, no
    length has). That item is read too. Anything else unreadable is logged
    and stays unaccounted for (``lost``).
    """
    reader = q._reader
    fd = reader.fileno()
    data = bytearray()
    try:
        os.set_blocking(fd, False)
        while reader.poll(wait):
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        logger.error("could not read a queue whose reader was killed: %r", exc)
    items: list[Any] = []
    stream = io.BytesIO(data)
    try:
        if data[:1] == b"\x80":  # the body of a message whose length the killed reader took
            items.append(pickle.Unpickler(stream).load())
        while stream.tell() < len(data):
            header = stream.read(4)
            size = struct.unpack("!i", header)[0] if len(header) == 4 else -1
            body = stream.read(size) if size >= 0 else b""
            if size < 0 or len(body) < size:
                raise ValueError(f"{len(data) - stream.tell()} bytes left that are no whole message")
            items.append(ForkingPickler.loads(body))
    except Exception as exc:
        logger.error("could not read the rest of a queue whose reader was killed: %r", exc)
    return items
