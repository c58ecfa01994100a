"""The one consume loop of the patterns: take -> handle -> account -> done.

Job processors, stage workers and the pipeline's source feeders all loop the
same way: take an item from a reader, hand it to the worker's handler, count
what became of it, report a failure, and tell the reader (``done``), even
when a ``BaseException`` cuts the handling short, so that ``queue.join()``
returns. That logic is :class:`Consumer`: steps that never wait, each
returning what the caller has to do (an ``"error"`` event to send, an item
to put). The waiting is done by two thin shells around it, :func:`consume`
(sync: ``reader.get``, calling the handler, ``emit``, ``writer.put``) and
:func:`aconsume` (async: ``aget``, awaiting the handler, ``aemit``,
``aput``), the way trio keeps ``send_nowait()`` as the logic and ``async
send()`` as a shell around it.

A worker subclasses :class:`Consumer` only for what is its own: the handler
(``process_job``, ``process_item``, the pipeline's intake), what a result
becomes (a stage passes it on), what an item that is no job means (a
stage's end-of-stream marker).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from spoc.workers import AbstractWorker

from ._queues import QueueReader, QueueWriter, aget, aput, reader_for
from ._support import PLAIN, Counters, aemit, awaitable, emit, log_failure, run_on_run_loop

__all__ = [
    "BUCKET_FIELDS",
    "DURATION_BUCKETS",
    "DURATION_FIELDS",
    "HANDLE",
    "HANDLE_INNER",
    "SUM_FIELD",
    "Consumer",
    "Events",
    "Put",
    "Several",
    "Verdict",
    "aconsume",
    "consume",
]

Event = dict[str, Any] | None
"""The data of an ``"error"`` event to send (``exception``, ``phase``, ...), or None for none."""
Events = Event | list[Event]
"""One event, several (the items of a batch), or None."""


DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""The upper bounds, in seconds, of the duration histograms' buckets (``+Inf`` follows)."""

BUCKET_FIELDS = (*(f"duration_le_{bound:g}" for bound in DURATION_BUCKETS), "duration_le_inf")
"""The counters of the buckets, one per bucket (not cumulative), the last one ``+Inf``."""
SUM_FIELD = "duration_sum"
"""The counter of the durations' sum."""
DURATION_FIELDS = (*BUCKET_FIELDS, SUM_FIELD)
"""The counters a duration histogram needs: one per bucket (not cumulative), and the sum."""


class Verdict(enum.Enum):
    """What :meth:`Consumer.arrived` says of an item taken."""

    HANDLE = "handle"  # hand it to the handler
    HANDLE_INNER = "handle inner"  # hand the item inside its envelope (``item.item``) to the handler
    SKIP = "skip"  # not a job: go on with the next one
    LEAVE = "leave"  # not a job, and the loop ends


HANDLE: tuple[Verdict, Sequence[Put]] = (Verdict.HANDLE, ())
"""What :meth:`Consumer.arrived` says of most items: one object, nothing made per item."""
HANDLE_INNER: tuple[Verdict, Sequence[Put]] = (Verdict.HANDLE_INNER, ())
"""What :meth:`Consumer.arrived` says of an item in an envelope (a tracked item, see ``_envelopes``)."""


class Several:
    """What :meth:`Consumer.handled` returns to put more than one thing, in order (the results of
    a batch handled at once); each put is followed by :meth:`Consumer.put_done`."""

    __slots__ = ("items",)

    def __init__(self, items: list[Any]) -> None:
        self.items = items


class Put(NamedTuple):
    """An item for the shell to put into a queue before it goes on (a stage's end markers).

    The shell waits while the queue is full, and keeps trying ``grace``
    seconds after a stop.
    """

    writer: QueueWriter
    item: Any
    grace: float


_NOTHING: tuple[Event, Any] = (None, None)


class Consumer:
    """The logic of one consume loop, in steps that never wait (see the module docstring).

    The defaults are a job processor's: a handler that returns normally
    processed the item (counted in ``done_field``), one that raised failed it
    (counted in ``failed_field``, logged, reported as an ``"error"`` event
    with ``phase`` and ``{subject: item}``, and the worker goes on).

    Args:
        worker: the worker whose loop this is.
        source: the queue or job source to read (see :func:`reader_for`).
        handler: the worker's handler of one item, ``def`` or ``async def``.
        counters: the worker's counters, or None when it counts nothing.
        phase: the ``"error"`` event's ``phase`` for a failed handler.
        subject: the event's key for the item (``"job"``, ``"item"``).
        interrupted: what the reader is told (:meth:`QueueReader.done`) of an
            item whose handling a ``BaseException`` cut short.
    """

    done_field = "processed"
    failed_field = "failed"
    screens = False
    """Whether :meth:`arrived` is asked about each item (a stage's end marker); else every item is handled."""

    def __init__(
        self,
        worker: AbstractWorker,
        source: Any,
        handler: Callable[[Any], Any],
        counters: Counters | None,
        *,
        phase: str,
        subject: str,
        interrupted: BaseException,
    ) -> None:
        self.worker = worker
        self.reader: QueueReader = reader_for(source)
        self.handler = handler
        self.counters = counters
        self.phase = phase
        self.subject = subject
        self.interrupted = interrupted
        self._observe: Callable[[str | None, float], None] | None = None
        if counters is not None and SUM_FIELD in counters.fields:  # the worker keeps a duration histogram
            self._observe = counters.observer(DURATION_BUCKETS, BUCKET_FIELDS, SUM_FIELD)
        self.output: QueueWriter | None = None  # where results go (a stage's output queue)
        self.grace = 0.0  # how long a put keeps trying after a stop

    due: float | None = None
    """When results held back for a batch must be put (``time.monotonic()``); None while none are."""

    # -- the steps ------------------------------------------------------------------

    def unreadable(self, exc: Exception) -> Event:
        """Taking an item raised (e.g. it could not be unpickled): count, log, say what to report.

        The shell then calls the reader's ``task_done()``. Raise to end the loop.
        """
        self.count(self.failed_field)
        log_failure(self.worker, f"reading a {self.subject} from the queue", exc)
        return {"exception": exc, "phase": "get", self.subject: None}

    def arrived(self, item: Any) -> tuple[Verdict, Sequence[Put]]:
        """An item was taken: hand it over, or not (and what to put first); asked when :attr:`screens`."""
        return HANDLE

    def handled(self, item: Any, result: Any, error: Exception | None, started: float) -> tuple[Events, Any]:
        """The handler returned ``result`` or raised ``error``: account for it.

        Returns:
            the event(s) to send, and the result to put into :attr:`output`
            (then :meth:`put_done`): None for nothing, :class:`Several` for
            more than one.
        """
        if error is None:
            self.account(started, self.done_field)
            return _NOTHING
        self.account(started, self.failed_field)
        log_failure(self.worker, f"{self.phase}()", error)
        return {"exception": error, "phase": self.phase, self.subject: item}, None

    def put_done(self, result: Any, ok: bool) -> Events:
        """The put :meth:`handled` asked for was made (``ok``) or given up after a stop."""
        return None

    def cut_short(self, item: Any, exc: BaseException) -> Events:
        """A ``BaseException`` ends the handling of ``item``, and the loop (it is raised on)."""
        return None

    def done(self, outcome: BaseException | None) -> None:
        """Tell the reader what became of the item last taken (even on a ``BaseException``)."""
        self.reader.done(outcome)

    def take_batch(self) -> Any:
        """The results held back for a batch, to put now (then :meth:`put_done`); None for none."""
        return None

    def unhandled(self, items: list[Any]) -> Events:
        """The loop ended with ``items`` taken (the rest of a batch) but not handled: give them back."""
        for item in items:
            self.reader.give_back(item)
        return None

    def account(self, started: float, field: str | None = None) -> None:
        """Add 1 to counter ``field`` (None: none) and, when the worker keeps a duration histogram
        (:data:`DURATION_FIELDS`), count the handling begun at ``started`` (``time.perf_counter()``) in it."""
        counters = self.counters
        if counters is None:
            return
        if self._observe is not None:
            self._observe(field, time.perf_counter() - started)
        elif field is not None:
            counters.add(field)

    def count(self, field: str) -> None:
        """Add 1 to counter ``field`` (when the worker counts)."""
        if self.counters is not None:
            self.counters.add(field)


# -- the shells: only the waiting -----------------------------------------------------


def consume(consumer: Consumer) -> None:
    """The sync shell: take and handle items until the worker is stopped or the consumer leaves."""
    worker, reader, output = consumer.worker, consumer.reader, consumer.output
    get, handler, handled = reader.get, consumer.handler, consumer.handled
    # Consumer.done only calls reader.done: a call less per item.
    done: Callable[[BaseException | None], None] = (
        reader.done if type(consumer).done is Consumer.done else consumer.done
    )
    put_done = consumer.put_done
    screen = consumer.arrived if consumer.screens else None
    clock = time.perf_counter
    disarm = reader.arm(worker)
    try:
        while worker.is_running:
            due = consumer.due  # results held back for a batch wait no longer than that
            if due is not None and time.monotonic() >= due:
                _put_held(consumer, worker)
                due = None
            try:
                got, item = get(worker) if due is None else get(worker, max(0.0, due - time.monotonic()))
            except Exception as exc:
                event = consumer.unreadable(exc)
                try:
                    _emit(worker, event)
                finally:
                    reader.task_done()
                continue
            if not got:
                continue
            outcome: BaseException | None = consumer.interrupted
            try:
                if screen is not None:
                    verdict, puts = screen(item)
                    if puts:  # they go behind the results held back
                        _put_held(consumer, worker)
                    for put in puts:
                        put.writer.put(worker, put.item, put.grace)
                    if verdict is Verdict.HANDLE_INNER:
                        item = item.item
                    elif verdict is not Verdict.HANDLE:
                        outcome = None
                        if verdict is Verdict.LEAVE:
                            return
                        continue
                started = clock()
                result: Any = None
                error: Exception | None = None
                try:
                    result = handler(item)
                    if type(result) not in PLAIN and awaitable(result):  # a def's awaitable: the run's loop
                        result = run_on_run_loop(worker, result)
                except Exception as exc:
                    error = exc
                except BaseException as exc:
                    _emit(worker, consumer.cut_short(item, exc))
                    raise
                events, passing = handled(item, result, error, started)
                if events is not None:
                    _emit(worker, events)
                if passing is not None and output is not None:
                    if type(passing) is Several:
                        for one in passing.items:
                            _emit(worker, put_done(one, output.put(worker, one, consumer.grace)))
                    else:
                        events = put_done(passing, output.put(worker, passing, consumer.grace))
                        if events is not None:
                            _emit(worker, events)
                outcome = error
            finally:
                done(outcome)  # even on BaseException, so that queue.join() returns
    finally:
        try:
            _put_held(consumer, worker)
            _emit(worker, consumer.unhandled(reader.take_leftovers()))
        finally:
            disarm()


def _put_held(consumer: Consumer, worker: AbstractWorker) -> None:
    batch = consumer.take_batch()
    if batch is not None and consumer.output is not None:
        ok = consumer.output.put(worker, batch, consumer.grace)
        _emit(worker, consumer.put_done(batch, ok))


async def _aput_held(consumer: Consumer, worker: AbstractWorker) -> None:
    batch = consumer.take_batch()
    if batch is not None and consumer.output is not None:
        ok = await aput(consumer.output, worker, batch, consumer.grace)
        await _aemit(worker, consumer.put_done(batch, ok))


async def aconsume(consumer: Consumer) -> None:
    """The async shell: :func:`consume` with ``aget``, an awaited handler, ``aemit`` and ``aput``."""
    worker, reader, output = consumer.worker, consumer.reader, consumer.output
    disarm = reader.arm(worker)
    try:
        while worker.is_running:
            if consumer.due is not None and time.monotonic() >= consumer.due:
                await _aput_held(consumer, worker)
            try:
                got, item = await aget(reader, worker, consumer.due)
            except Exception as exc:
                event = consumer.unreadable(exc)
                try:
                    await _aemit(worker, event)
                finally:
                    reader.task_done()
                continue
            if not got:
                continue
            outcome: BaseException | None = consumer.interrupted
            try:
                if consumer.screens:
                    verdict, puts = consumer.arrived(item)
                    if puts:  # they go behind the results held back
                        await _aput_held(consumer, worker)
                    for put in puts:
                        await aput(put.writer, worker, put.item, put.grace)
                    if verdict is Verdict.HANDLE_INNER:
                        item = item.item
                    elif verdict is not Verdict.HANDLE:
                        outcome = None
                        if verdict is Verdict.LEAVE:
                            return
                        continue
                started = time.perf_counter()
                result: Any = None
                error: Exception | None = None
                try:
                    result = consumer.handler(item)
                    if awaitable(result):
                        result = await result
                except Exception as exc:
                    error = exc
                except BaseException as exc:
                    await _aemit(worker, consumer.cut_short(item, exc))
                    raise
                events, passing = consumer.handled(item, result, error, started)
                await _aemit(worker, events)
                if passing is not None and output is not None:
                    for one in passing.items if type(passing) is Several else (passing,):
                        ok = await aput(output, worker, one, consumer.grace)
                        await _aemit(worker, consumer.put_done(one, ok))
                outcome = error
            finally:
                consumer.done(outcome)
    finally:
        try:
            await _aput_held(consumer, worker)
            await _aemit(worker, consumer.unhandled(reader.take_leftovers()))
        finally:
            disarm()


def _emit(worker: AbstractWorker, events: Events) -> None:
    for event in events if isinstance(events, list) else (events,):
        if event is not None:
            emit(worker, "error", **event)


async def _aemit(worker: AbstractWorker, events: Events) -> None:
    for event in events if isinstance(events, list) else (events,):
        if event is not None:
            await aemit(worker, "error", **event)
