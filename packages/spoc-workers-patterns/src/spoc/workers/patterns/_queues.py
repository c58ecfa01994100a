"""Stop-aware waits on the queues that workers consume from and produce to.

A worker blocked on an empty queue must wake within milliseconds of
``stop()``, not after a ``get(timeout=1.0)`` poll. How depends on the queue:

* :class:`queue.Queue` (and its subclasses): the reader waits on the queue's
  own ``not_empty`` condition with the queue's subclass hooks (``_qsize``,
  ``_get``), and a stop callback (:meth:`~spoc.workers.AbstractWorker.on_stop`)
  notifies that condition. The callback may run in a signal handler, so it
  only *tries* to take the queue's mutex; when that fails (someone holds it
  for a moment), the wait's own bound (:data:`FALLBACK_WAIT`) wakes the reader.
* :mod:`multiprocessing` queues (``Queue``, ``JoinableQueue``): the reader
  waits until the queue's pipe is readable or the stop arrives
  (:meth:`~spoc.workers.AbstractWorker.wait_readable`), then takes an item
  without blocking; another consumer may have been faster, then it waits again.
* anything else with ``get(timeout=...)`` (a manager's queue proxy, a
  :class:`queue.SimpleQueue`): polled every :data:`POLL_WAIT` seconds.
* a *job source* (an object with a ``spoc_reader()`` method, such as a Redis
  stream): it brings its own :class:`QueueReader`, which may acknowledge a
  job only once it was processed (see :meth:`QueueReader.done`).

Waits that are not the framework's own call
:meth:`~spoc.workers.AbstractWorker.heartbeat` each round, so a Server's
``heartbeat_timeout`` never takes an idle or back-pressured worker for a hung one.

Writers block while the queue is full (back-pressure) and check for a stop
every :data:`PUT_POLL` seconds; after a stop they keep trying for a grace
period (a downstream stage may still be draining) and then give up, so that
the caller can report the item instead of losing it or hanging.

A :class:`QueueWriter` writes into a plain :mod:`multiprocessing` queue
itself, not through the queue's feeder thread: when ``put`` returns, the
item is in the queue's pipe, where it outlives the writer. Through the
feeder, a process SIGKILLed after ``put`` returned would take every item
still in its feeder's buffer with it (up to the queue's ``maxsize``).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import multiprocessing.queues
import queue
import time
from collections.abc import Callable
from multiprocessing.reduction import ForkingPickler
from typing import Any

from spoc.workers import AbstractWorker

from ._envelopes import Batch
from ._lock_watch import ReadLockWatch
from ._plain_queue import notify, put_if_room, task_done_of

__all__ = [
    "FALLBACK_WAIT",
    "POLL_WAIT",
    "PUT_POLL",
    "BatchedReader",
    "QueueReader",
    "QueueWriter",
    "ThreadQueueReader",
    "aget",
    "aput",
    "check_shareable",
    "describe_queue",
    "is_process_queue",
    "reader_for",
    "take_ready",
    "writer_for",
]

FALLBACK_WAIT = 0.1
"""Longest wait on a ``queue.Queue`` condition between two looks at the stop flag."""
POLL_WAIT = 0.1
"""Poll interval for queue-like objects that offer nothing to wait on."""
PUT_POLL = 0.05
"""How often a writer blocked on a full queue looks at the stop flag."""
RACE_WAIT = 0.01
"""How long a reader whose queue became readable waits for the item another reader may hold."""
ASYNC_WAIT = 0.25
"""Longest single wait an async worker delegates to a thread of its loop's executor."""

_NOTHING: tuple[bool, Any] = (False, None)
# Values of these exact types always pickle: no need to pickle them twice to find out.
_ALWAYS_PICKLABLE = frozenset({type(None), bool, int, float, complex, str, bytes})


def is_process_queue(q: object) -> bool:
    """True for a :mod:`multiprocessing` ``Queue`` or ``JoinableQueue``."""
    return isinstance(q, multiprocessing.queues.Queue)


def describe_queue(q: object) -> str:
    """The queue's type as a reader would write it, e.g. ``queue.Queue``."""
    cls = type(q)
    return f"{cls.__module__}.{cls.__qualname__}"


def _a_queue(q: object) -> str:
    """:func:`describe_queue` with its article: ``"a queue.Queue"``, ``"an asyncio.queues.Queue"``."""
    name = describe_queue(q)
    return f"an {name}" if name[:1].lower() in "aeio" else f"a {name}"


def check_shareable(owner: str, attribute: str, q: object, fix: str) -> None:
    """Raise a clear ``TypeError`` when a process worker is given an in-process queue.

    A :class:`queue.Queue` cannot cross a process boundary: under ``spawn`` and
    ``forkserver`` it cannot be pickled, and under ``fork`` the child gets its
    own copy, so it would wait forever for items put in the parent.

    Raises:
        TypeError: ``q`` is a :class:`queue.Queue`, a :class:`queue.SimpleQueue`
            or an :class:`asyncio.Queue`.
    """
    if isinstance(q, (queue.Queue, queue.SimpleQueue, asyncio.Queue)):
        raise TypeError(
            f"{owner}: {attribute} is {_a_queue(q)}, which lives in one process: a process "
            f"worker would read its own copy of it (or fail to pickle it) and never see the items. {fix}"
        )


# -- readers ---------------------------------------------------------------------


class QueueReader:
    """Takes items from one queue on behalf of a worker, waking on its stop.

    Args:
        q: the queue.
    """

    def __init__(self, q: Any) -> None:
        self.queue = q
        self._task_done = task_done_of(q)

    def arm(self, worker: AbstractWorker) -> Callable[[], None]:
        """Make the worker's stop wake this reader; returns the function that undoes it."""
        return _nothing

    def get(self, worker: AbstractWorker, timeout: float | None = None) -> tuple[bool, Any]:
        """Wait for an item; ``(True, item)``, or ``(False, None)`` on a stop or after ``timeout``."""
        raise NotImplementedError

    def get_nowait(self) -> tuple[bool, Any]:
        """Take an item if one is there at once."""
        try:
            return True, self.queue.get_nowait()
        except queue.Empty:
            return _NOTHING

    def wait(self, worker: AbstractWorker, timeout: float) -> None:
        """Wait until an item may be there, a stop, or ``timeout``; takes nothing."""
        raise NotImplementedError

    def task_done(self) -> None:
        """Call the queue's ``task_done()`` when it has one (``queue.Queue``, ``JoinableQueue``)."""
        if self._task_done is not None:
            self._task_done()

    def done(self, error: BaseException | None) -> None:
        """Say that the job last taken was handled: processed (``error`` None) or failed.

        A queue forgets a job once taken, so this is :meth:`task_done`; a job
        source with acknowledgements acknowledges a processed job here and
        leaves a failed one to be delivered again.
        """
        self.task_done()

    def defer(self) -> Any | None:
        """Detach the acknowledgement of the job last taken: its token, to :meth:`settle` later.

        Called by a :class:`Pipeline`'s source feeder before it puts the job
        in, so that the job is acknowledged only once it has left the
        pipeline (at least once, end to end), from whichever thread sees it
        leave; :meth:`done` then concerns that job no more. The token must
        pickle (it travels with the item, across process hops).

        Returns:
            None when this source cannot wait (a queue forgets a job once
            taken): the job is then done for it once accepted.
        """
        return None

    def settle(self, token: Any, error: BaseException | None) -> None:
        """The job of ``token`` (from :meth:`defer`) has left: acknowledge it, or, with ``error``,
        leave it to be delivered again. Called from any thread, also after the consumer stopped."""
        raise NotImplementedError(f"{type(self).__name__} defers nothing")

    def take_leftovers(self) -> list[Any]:
        """The items taken from the queue but not handed out yet (the rest of a :class:`Batch`)."""
        return []

    def ready(self) -> int:
        """How many items taken already wait to be handed out (the rest of a :class:`Batch`)."""
        return 0

    def take_ready(self, at_most: int, before: object) -> list[Any]:
        """Hand out, without waiting, up to ``at_most`` of the items taken already (the rest of a
        :class:`Batch`, what a :class:`Hop`'s one reader took), stopping before ``before``."""
        return []

    def give_back(self, item: Any) -> None:
        """Return the item last taken, unhandled (its consumer is stopping): back into the queue.

        A job source with acknowledgements leaves it unacknowledged instead.

        Raises:
            queue.Full: the queue has no room for it now.
        """
        self.task_done()
        self.queue.put_nowait(item)


def _nothing() -> None:
    return None


class ThreadQueueReader(QueueReader):
    """For :class:`queue.Queue`: wait on ``not_empty``; the stop notifies it."""

    def arm(self, worker: AbstractWorker) -> Callable[[], None]:
        q = self.queue

        def wake() -> None:  # may run in a signal handler: never block
            if q.mutex.acquire(blocking=False):
                try:
                    q.not_empty.notify_all()
                finally:
                    q.mutex.release()

        return worker.on_stop(wake)

    def get(self, worker: AbstractWorker, timeout: float | None = None) -> tuple[bool, Any]:
        q = self.queue
        deadline = None if timeout is None else time.monotonic() + timeout
        with q.mutex:  # the conditions' lock; a Condition's own with costs two calls
            while not q._qsize():
                if not worker.is_running:
                    return _NOTHING
                worker.heartbeat()  # not a framework wait: say we are alive
                wait = FALLBACK_WAIT
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return _NOTHING
                    wait = min(wait, remaining)
                q.not_empty.wait(wait)
            item = q._get()
            notify(q.not_full)
            return True, item

    def wait(self, worker: AbstractWorker, timeout: float) -> None:
        q = self.queue
        deadline = time.monotonic() + timeout
        with q.not_empty:
            while not q._qsize() and worker.is_running:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                worker.heartbeat()
                q.not_empty.wait(min(FALLBACK_WAIT, remaining))


class BatchedReader(QueueReader):
    """A reader of messages that may be a :class:`Batch`: it hands a batch out item by item."""

    def __init__(self, q: Any) -> None:
        super().__init__(q)
        self._batched: collections.deque[Any] = collections.deque()  # the rest of the last Batch

    def ready(self) -> int:
        return len(self._batched)

    def take_leftovers(self) -> list[Any]:
        leftovers = list(self._batched)
        self._batched.clear()
        return leftovers

    def take_ready(self, at_most: int, before: object) -> list[Any]:
        return take_ready(self._batched, at_most, before)

    def _unpack(self, raw: Any) -> Any:
        """The first item of a message read (the rest of a :class:`Batch` waits its turn)."""
        if type(raw) is not Batch:
            return raw
        items = raw.items
        self._batched.extend(itertools.islice(items, 1, None))
        return items[0]


class _ProcessQueueReader(BatchedReader):
    """For :mod:`multiprocessing` queues: wait until the pipe is readable, then take."""

    def __init__(self, q: Any) -> None:
        super().__init__(q)
        self._lock_watch = ReadLockWatch()

    def get_nowait(self) -> tuple[bool, Any]:
        if self._batched:
            return True, self._batched.popleft()
        try:
            return True, self._unpack(self.queue.get_nowait())
        except queue.Empty:
            return _NOTHING

    def get(self, worker: AbstractWorker, timeout: float | None = None) -> tuple[bool, Any]:
        q = self.queue
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            got = self.get_nowait()
            if got[0]:
                return got
            if not worker.is_running:
                return _NOTHING
            remaining = None
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return _NOTHING
            if not worker.wait_readable([q._reader], remaining):
                continue  # a stop or the timeout: the checks above end it
            try:
                item = self._unpack(q.get(True, RACE_WAIT))
            except queue.Empty:  # another consumer took it, or holds the read lock (see _lock_watch)
                self._lock_watch.missed(worker)
                continue
            self._lock_watch.took()
            return True, item

    def wait(self, worker: AbstractWorker, timeout: float) -> None:
        worker.wait_readable([self.queue._reader], timeout)


class _PollingQueueReader(QueueReader):
    """For queue-like objects with nothing to wait on: ``get(timeout=POLL_WAIT)``."""

    def get(self, worker: AbstractWorker, timeout: float | None = None) -> tuple[bool, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while worker.is_running:
            worker.heartbeat()
            wait = POLL_WAIT
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                wait = min(wait, remaining)
            try:
                return True, self.queue.get(True, wait)
            except queue.Empty:
                continue
        return _NOTHING

    def wait(self, worker: AbstractWorker, timeout: float) -> None:
        worker.sleep(min(POLL_WAIT, timeout))


def take_ready(items: collections.deque[Any], at_most: int, before: object) -> list[Any]:
    """Pop up to ``at_most`` items from the front of ``items``, stopping before ``before``."""
    taken: list[Any] = []
    while items and len(taken) < at_most and items[0] is not before:
        taken.append(items.popleft())
    return taken


def reader_for(q: Any) -> QueueReader:
    """The stop-aware reader that suits ``q``: the one it brings, if it has ``spoc_reader()``.

    Raises:
        TypeError: ``q`` has no ``get`` method.
    """
    open_reader = getattr(q, "spoc_reader", None)
    if callable(open_reader):
        reader = open_reader()
        if not isinstance(reader, QueueReader):
            raise TypeError(f"{describe_queue(q)}.spoc_reader() returned {reader!r}, not a QueueReader")
        return reader
    if isinstance(q, queue.Queue):
        return ThreadQueueReader(q)
    if is_process_queue(q):
        return _ProcessQueueReader(q)
    if callable(getattr(q, "get", None)) and callable(getattr(q, "get_nowait", None)):
        return _PollingQueueReader(q)
    raise TypeError(f"cannot read from {_a_queue(q)}: expected a queue.Queue or a multiprocessing queue")


# -- writers ---------------------------------------------------------------------


class QueueWriter:
    """Puts items into one queue on behalf of a worker, with back-pressure and a stop grace.

    Args:
        q: the queue.
    """

    reports_drops = False
    """Whether a stage passes :data:`DROPPED` on for an item it dropped (a pipeline's process
    stage: its parent counts each item's fate, see ``_switch``)."""

    def __init__(self, q: Any) -> None:
        self.queue = q
        self.crosses_processes = is_process_queue(q)
        # What it puts is pickled on its way (a hop in front of a pipeline's process stage too).
        self.must_pickle = self.crosses_processes or getattr(q, "feeds_processes", False)
        # Its lock and hooks are used directly, unless a subclass does its own put().
        self._local = isinstance(q, queue.Queue) and type(q).put is queue.Queue.put
        # A JoinableQueue counts unfinished tasks in put(): it goes through put().
        self._direct = type(q) is multiprocessing.queues.Queue

    def check_picklable(self, item: Any) -> None:
        """Raise now, in the caller, what a multiprocessing queue's feeder thread would only log.

        A multiprocessing queue pickles in a background thread; an item that
        cannot be pickled would be dropped there, silently for the caller.

        Raises:
            Exception: whatever pickling ``item`` raises (for multiprocessing queues only).
        """
        if self.must_pickle and type(item) not in _ALWAYS_PICKLABLE:
            ForkingPickler.dumps(item)

    def put_nowait(self, item: Any) -> bool:
        """Put ``item`` if there is room at once; False when the queue is full."""
        if self._writes_pipe():
            return self._write(item, None)
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            return False
        return True

    def put(self, worker: AbstractWorker, item: Any, grace: float) -> bool:
        """Put ``item``, waiting while the queue is full.

        Once the worker is asked to stop, it keeps trying for ``grace``
        seconds (downstream may still be draining), then gives up.

        Returns:
            True when the item was put, False when the worker gave up.
        """
        q = self.queue
        if self._local and put_if_room(q, item):
            worker.heartbeat()  # a busy worker that never waits is alive too
            return True
        direct = self._writes_pipe()
        give_up_at: float | None = None
        while True:
            worker.heartbeat()  # back-pressure is no hang
            if direct:
                if self._write(item, PUT_POLL):
                    return True
            else:
                try:
                    q.put(item, True, PUT_POLL)
                except queue.Full:
                    pass
                else:
                    return True
            if not worker.is_running:
                now = time.monotonic()
                if give_up_at is None:
                    give_up_at = now + grace
                elif now >= give_up_at:
                    return False

    def _writes_pipe(self) -> bool:
        """Write into the pipe here, unless this process's feeder thread already carries items:
        it would write them after ours (a stage's items stay in order)."""
        return self._direct and self.queue._thread is None

    def _write(self, item: Any, timeout: float | None) -> bool:
        """What ``multiprocessing.Queue.put`` and its feeder do, in this thread: take a place
        (the queue's semaphore), pickle, write under the queue's write lock. False when
        ``timeout`` (None: no wait) passed first; nothing was written then."""
        q = self.queue
        if q._closed:
            raise ValueError(f"Queue {q!r} is closed")
        deadline = None if timeout is None else time.monotonic() + timeout
        if not (q._sem.acquire(False) if timeout is None else q._sem.acquire(True, timeout)):
            return False
        try:
            data = ForkingPickler.dumps(item)
            lock = q._wlock  # None on Windows, where a pipe write is atomic
            if lock is not None:
                wait = 0.0 if deadline is None else max(0.0, deadline - time.monotonic())
                if not (lock.acquire(True, wait) if wait else lock.acquire(False)):
                    q._sem.release()
                    return False
            try:
                q._writer.send_bytes(data)
            finally:
                if lock is not None:
                    lock.release()
        except BaseException:
            q._sem.release()
            raise
        return True

    def flush(self) -> None:
        """In a child process, push what this process buffered into the pipe before going on.

        A multiprocessing queue buffers items in a feeder thread of the
        process that put them; items put by *another* process may overtake
        them. Closing this process's handle and joining its feeder writes
        everything out. Call it only when this process will put no more.
        """
        if self.crosses_processes:
            self.queue.close()
            self.queue.join_thread()


def writer_for(q: Any) -> QueueWriter:
    """The writer for ``q``: the one it brings, if it has ``spoc_writer()``.

    Raises:
        TypeError: ``q`` has no ``put`` method.
    """
    open_writer = getattr(q, "spoc_writer", None)
    if callable(open_writer):
        writer: QueueWriter = open_writer()
        return writer
    if not (callable(getattr(q, "put", None)) and callable(getattr(q, "put_nowait", None))):
        raise TypeError(f"cannot write to {_a_queue(q)}: it has no put() and put_nowait()")
    return QueueWriter(q)


# -- async: waits go to a thread of the loop's executor ----------------------------


async def aget(reader: QueueReader, worker: AbstractWorker, until: float | None = None) -> tuple[bool, Any]:
    """``await`` version of :meth:`QueueReader.get`, waiting until ``until`` (``time.monotonic()``) at most.

    Takes an item at once when there is one; otherwise the wait runs in the
    loop's default executor, bounded to :data:`ASYNC_WAIT` seconds per round,
    and the item is taken back on the loop, so a cancelled wait loses nothing.
    """
    loop = asyncio.get_running_loop()
    while worker.is_running:
        got = reader.get_nowait()
        if got[0]:
            return got
        wait = ASYNC_WAIT
        if until is not None:
            wait = min(wait, until - time.monotonic())
            if wait <= 0:
                break
        await loop.run_in_executor(None, reader.wait, worker, wait)
    return _NOTHING


async def aput(writer: QueueWriter, worker: AbstractWorker, item: Any, grace: float) -> bool:
    """``await`` version of :meth:`QueueWriter.put`."""
    if writer.put_nowait(item):
        return True
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, writer.put, worker, item, grace)
