"""Pipelines: stage workers joined by bounded queues, and the builder that wires them.

End of stream
    A finite pipeline ends by itself. :meth:`Pipeline.close` puts one
    :data:`END_OF_STREAM` marker behind the last accepted item. Every stage
    worker that leaves its loop writes one marker downstream, behind its own
    items (each writer's items reach a queue in order), so a stage fed by
    ``N`` workers receives ``N`` markers. A stage counts the markers it takes
    in a counter shared by its workers (shared memory for process stages);
    the worker that takes the last one knows every upstream item has been
    taken, puts one marker back into its own input queue for each sibling,
    and leaves; each sibling leaves on its marker. The results are complete
    when the last stage's markers have all arrived.

Conservation
    Every accepted item is emitted (put into the results), dropped on
    purpose (``process_item`` returned None), or reported as failed: a
    lifecycle ``"error"`` event with ``item=`` and a :class:`DeadLetter` in
    :attr:`Pipeline.dead_letters`. That holds on a normal end, when a stage
    raises, and on :meth:`Pipeline.stop`, which stops the input and lets the
    accepted items drain stage by stage within its budget; only past the
    budget are the workers stopped, and whatever is still queued becomes a
    dead letter. Only a process killed while holding an item loses it; the
    pipeline then reports it in :attr:`PipelineStats.lost`. What a stage
    passed on is in the next queue's pipe already (stage workers write into
    a multiprocessing queue's pipe themselves: ``_queues.QueueWriter``), and
    results and dead letters are counted where they arrive, so that count
    is exact.

Failure
    A stage worker that ends FAILED (setup or main raised, its process
    died) stops the pipeline as soon as its server sees it: every worker is
    stopped, what waits between stages becomes a dead letter, and every
    wait for a result, a blocked :meth:`Pipeline.put` included, ends with a
    :class:`PipelineFailedError` (:meth:`Pipeline.join` returns).
"""

from __future__ import annotations

import collections
import inspect
import io
import logging
import multiprocessing
import os
import pickle
import queue
import struct
import threading
import time
import traceback
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait as wait_for_handles
from multiprocessing.reduction import ForkingPickler
from types import TracebackType
from typing import Any, Literal

from spoc.workers import (
    START_METHOD_ENV,
    AbstractWorker,
    ProcessWorker,
    Server,
    ThreadWorker,
    WorkerEvent,
    WorkerRemoteError,
    WorkerState,
    run_async_safely,
)
from spoc.workers._deprecation import renamed

from ._queues import (
    QueueReader,
    QueueWriter,
    aget,
    aput,
    check_shareable,
    is_process_queue,
    reader_for,
    release_process_queue,
    release_semaphores,
    writer_for,
)
from ._support import aemit, awaitable, check_number, emit, has_async, log_failure, new_counters

__all__ = [
    "END_OF_STREAM",
    "DeadLetter",
    "Pipeline",
    "PipelineFailedError",
    "PipelineStats",
    "PipelineStoppedError",
    "ProcessStageWorker",
    "StageStats",
    "StageWorker",
]

logger = logging.getLogger("spoc.workers.patterns")

StageKind = Literal["thread", "process"]

_FIELDS = ("items_in", "items_out", "failed", "dropped")
_DEFAULT_STOP_TIMEOUT = 5.0
_DEFAULT_PUT_GRACE = 0.5
_PUMP_WAIT = 0.05  # the parent's longest wait before it looks at the workers again
_CALLER_WAIT = 0.005  # a blocked put()/close() alternates this long between its put and the results
_PEAK_SAMPLE = 16  # without back-pressure, the in-flight peak is sampled every this many items


class _EndOfStream:
    """The end-of-stream marker; one object per process, the same after pickling."""

    _instance: _EndOfStream | None = None

    def __new__(cls) -> _EndOfStream:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __reduce__(self) -> str:
        return "END_OF_STREAM"

    def __repr__(self) -> str:
        return "END_OF_STREAM"


END_OF_STREAM: Any = _EndOfStream()
"""The marker that ends a stream of items.

A stage worker that takes it from its input passes one downstream and ends
its loop (the worker then ends STOPPED). A :class:`Pipeline` sends and
counts the markers itself; put it yourself only when you wire stage workers
by hand: one per worker reading the queue.
"""


class PipelineStoppedError(RuntimeError):
    """Why an item became a dead letter when a stage or the pipeline was stopped.

    Either a stage worker was stopped while its output queue stayed full (the
    item was processed but not passed on), or the pipeline was stopped past
    its budget while the item still waited in a queue.
    """


class PipelineFailedError(RuntimeError):
    """A stage worker failed, so the pipeline stopped: raised by :meth:`Pipeline.put`,
    :meth:`Pipeline.close` and, after the last result, by :meth:`Pipeline.results`.

    The message names the failed stages and workers and why they failed;
    ``__cause__`` is the first failed worker's exception. Every accepted item
    is still accounted for in :meth:`Pipeline.stats` and
    :attr:`Pipeline.dead_letters`.

    Attributes:
        pipeline: the pipeline's name.
        stages: the names of the stages whose workers failed.
        workers: the names of the failed workers.
    """

    def __init__(
        self, message: str, pipeline: str, stages: tuple[str, ...], workers: tuple[str, ...]
    ) -> None:
        super().__init__(message)
        self.pipeline = pipeline
        self.stages = stages
        self.workers = workers

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.pipeline, self.stages, self.workers))


@dataclass(frozen=True)
class DeadLetter:
    """An item that did not make it through the pipeline, and why.

    Attributes:
        stage: the stage the item was meant for: the one that raised on it,
            whose worker could not pass its result on, or whose input queue
            still held it when the pipeline was stopped.
        item: the item: the stage's input when ``process_item`` raised or the
            item was still queued; the stage's *result* when it could not be
            passed on (``error`` is then a :class:`PipelineStoppedError`).
        error: the exception (a :class:`~spoc.workers.WorkerRemoteError`
            stands for one that could not be pickled back from a process).
        worker: the name of the worker that reported it (None when the
            pipeline found the item in a queue).
    """

    stage: str
    item: Any
    error: BaseException
    worker: str | None = None


@dataclass(frozen=True)
class StageStats:
    """Counters of one stage worker, or of all the workers of a pipeline stage.

    Attributes:
        name: the worker's or the stage's name.
        kind: ``"thread"`` or ``"process"``.
        workers: how many workers are counted.
        items_in: items taken from the input queue (end markers not counted).
        items_out: results passed downstream (written into the next queue).
        failed: items reported as failed (``process_item`` raised, or the
            result could not be passed on).
        dropped: items for which ``process_item`` returned None.
        in_flight: items taken but not yet accounted for:
            ``items_in - items_out - failed - dropped``.
    """

    name: str
    kind: str
    workers: int
    items_in: int
    items_out: int
    failed: int
    dropped: int
    in_flight: int


@dataclass(frozen=True)
class PipelineStats:
    """A snapshot of a pipeline's counters.

    ``accepted == emitted + failed + dropped + in_flight`` at every moment;
    once the pipeline has ended, ``in_flight`` is 0 unless a process was
    killed while holding an item (then it equals ``lost``).

    Attributes:
        accepted: items :meth:`Pipeline.put` or a feed accepted.
        emitted: results that came out of the last stage, counted as the
            pipeline takes them from the results queue.
        failed: dead letters received (``len(dead_letters)``): items reported
            as failed by any stage, plus those found in a queue when the
            pipeline stopped (past a stop's budget, or after a failure).
        dropped: items a stage dropped on purpose (``process_item`` returned None).
        in_flight: accepted items not yet emitted, failed or dropped (the
            results queue's included).
        peak_in_flight: the most items in flight seen when an item was accepted.
        lost: after the end, items that vanished with a killed process (at
            most the one each killed process held); else 0.
        ended: every stage worker has ended.
        failed_workers: names of stage workers that ended FAILED (the pipeline
            then stops).
        stages: per-stage counters, in stage order.
    """

    accepted: int
    emitted: int
    failed: int
    dropped: int
    in_flight: int
    peak_in_flight: int
    lost: int
    ended: bool
    failed_workers: tuple[str, ...]
    stages: tuple[StageStats, ...]

    def __call__(self) -> PipelineStats:
        """``pipeline.stats()``, the spelling before ``stats`` became a property: deprecated."""
        renamed("Pipeline.stats()", "Pipeline.stats")
        return self


class _Hop(queue.Queue):  # type: ignore[type-arg]
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


class _LocalCount:
    """A thread stage's marker counter, shaped like ``multiprocessing.Value``."""

    def __init__(self, value: int) -> None:
        self.value = value
        self._lock = threading.Lock()

    def get_lock(self) -> threading.Lock:
        return self._lock


@dataclass
class _StageLink:
    """What a pipeline tells each worker of a stage (pickled with process workers)."""

    stage: str
    next_stage: str
    siblings: int
    markers_left: Any  # multiprocessing.Value("i") or _LocalCount, shared by the stage's workers
    dead_letters: Any  # a queue of DeadLetter records, read by the pipeline


def _count_down(counter: Any) -> int:
    with counter.get_lock():
        counter.value -= 1
        return int(counter.value)


# -- stage workers ------------------------------------------------------------------


class _StageMixin(AbstractWorker):
    """The loop shared by :class:`StageWorker` and :class:`ProcessStageWorker`."""

    input_queue: Any
    output_queue: Any
    put_grace: float

    def _init_stage(self, input_queue: Any, output_queue: Any, put_grace: float) -> None:
        reader_for(input_queue)
        writer_for(output_queue)
        self.input_queue = input_queue
        self.output_queue = output_queue
        self.put_grace = check_number(f"{type(self).__name__} {self.name!r}", "put_grace", put_grace)
        self._counters = new_counters(self, _FIELDS)
        self._link: _StageLink | None = None

    @abstractmethod
    def process_item(self, item: Any) -> Any:
        """Process one item and return the result to pass on; override it, as ``def`` or ``async def``.

        Returning None drops the item (counted in ``stats.dropped``); anything
        else goes into ``output_queue``. An exception is reported as a
        lifecycle ``"error"`` event with ``phase="process_item"`` and
        ``item=item`` (and, in a :class:`Pipeline`, as a :class:`DeadLetter`);
        the worker goes on with the next item.
        """

    @property
    def stats(self) -> StageStats:
        """This worker's counters (for a process worker, read from shared memory)."""
        return _stage_stats(self.name, self.kind, [self])

    # -- the loop ------------------------------------------------------------------

    def main(self) -> Awaitable[None] | None:
        """Process items until the end-of-stream marker or a stop (async when ``process_item`` is)."""
        if has_async(self.process_item, self.lifecycle):
            return self._amain()
        reader = reader_for(self.input_queue)
        writer = writer_for(self.output_queue)
        disarm = reader.arm(self)
        try:
            while self.is_running:
                try:
                    got, item = reader.get(self)
                except Exception as exc:  # e.g. an item that cannot be unpickled here
                    self._report(None, exc, "get", self._stage_name())
                    reader.task_done()
                    continue
                if not got:
                    continue
                try:
                    if item is END_OF_STREAM:
                        if self._end_of_stream(writer):
                            return None
                        continue
                    self._counters.add("items_in")
                    try:
                        result = self.process_item(item)
                        if awaitable(result):  # a plain def that returned an awaitable
                            result = run_async_safely(_as_coroutine(result))
                    except Exception as exc:
                        self._report(item, exc, "process_item", self._stage_name())
                        continue
                    except BaseException as exc:  # it ends main(): the item is a dead letter, not lost
                        self._report(item, exc, "process_item", self._stage_name())
                        raise
                    self._pass_on(writer, item, result)
                finally:
                    reader.task_done()
        finally:
            disarm()
        return None

    async def _amain(self) -> None:
        reader = reader_for(self.input_queue)
        writer = writer_for(self.output_queue)
        disarm = reader.arm(self)
        try:
            while self.is_running:
                try:
                    got, item = await aget(reader, self)
                except Exception as exc:
                    await self._areport(None, exc, "get", self._stage_name())
                    reader.task_done()
                    continue
                if not got:
                    continue
                try:
                    if item is END_OF_STREAM:
                        if await self._aend_of_stream(writer):
                            return
                        continue
                    self._counters.add("items_in")
                    try:
                        result = self.process_item(item)
                        if awaitable(result):
                            result = await result
                    except Exception as exc:
                        await self._areport(item, exc, "process_item", self._stage_name())
                        continue
                    except BaseException as exc:  # it ends main(): the item is a dead letter, not lost
                        await self._areport(item, exc, "process_item", self._stage_name())
                        raise
                    await self._apass_on(writer, item, result)
                finally:
                    reader.task_done()
        finally:
            disarm()

    # -- passing on ----------------------------------------------------------------

    def _pass_on(self, writer: QueueWriter, item: Any, result: Any) -> None:
        checked = self._check_result(writer, item, result)
        if checked is None:
            return
        if writer.put(self, result, self.put_grace):
            self._counters.add("items_out")
        else:
            self._report(result, self._not_passed_on(), "put", self._next_stage_name())

    async def _apass_on(self, writer: QueueWriter, item: Any, result: Any) -> None:
        checked = self._check_result(writer, item, result)
        if checked is None:
            return
        if await aput(writer, self, result, self.put_grace):
            self._counters.add("items_out")
        else:
            await self._areport(result, self._not_passed_on(), "put", self._next_stage_name())

    def _check_result(self, writer: QueueWriter, item: Any, result: Any) -> Any:
        """None when there is nothing to pass on (dropped, or failed to pickle), else True."""
        if result is None:
            self._counters.add("dropped")
            return None
        try:
            writer.check_picklable(result)
        except Exception as exc:
            error = TypeError(
                f"{self._who()}: the result of process_item() cannot be pickled for the "
                f"multiprocessing queue to the next stage: {exc!r}"
            )
            error.__cause__ = exc
            self._report(item, error, "process_item", self._stage_name())
            return None
        return True

    def _not_passed_on(self) -> PipelineStoppedError:
        return PipelineStoppedError(
            f"{self._who()} was stopped while its output queue stayed full for put_grace="
            f"{self.put_grace:g}s: its result was not passed on to {self._next_stage_name()!r}"
        )

    # -- end of stream -------------------------------------------------------------

    def _end_decision(self) -> tuple[bool, int]:
        """(leave the loop?, how many markers to give to siblings) for one marker taken."""
        link = self._link
        if link is None:
            return True, 0
        left = _count_down(link.markers_left)
        if left > link.siblings:
            return False, 0  # one upstream worker finished; others still produce
        if left == link.siblings:
            return True, link.siblings  # the last upstream marker: wake the siblings
        return True, 0  # a sibling's marker

    def _end_of_stream(self, writer: QueueWriter) -> bool:
        leave, siblings = self._end_decision()
        if not leave:
            return False
        if siblings:
            own = writer_for(self.input_queue)
            for _ in range(siblings):
                own.put(self, END_OF_STREAM, self.put_grace)
        writer.put(self, END_OF_STREAM, self.put_grace)
        return True

    async def _aend_of_stream(self, writer: QueueWriter) -> bool:
        leave, siblings = self._end_decision()
        if not leave:
            return False
        if siblings:
            own = writer_for(self.input_queue)
            for _ in range(siblings):
                await aput(own, self, END_OF_STREAM, self.put_grace)
        await aput(writer, self, END_OF_STREAM, self.put_grace)
        return True

    # -- failures ------------------------------------------------------------------

    def _report(self, item: Any, error: BaseException, phase: str, stage: str) -> None:
        log_failure(self, f"{phase} of item {_short(item)}", error)
        self._dead_letter(item, error, stage)
        self._counters.add("failed")
        emit(self, "error", exception=error, phase=phase, item=item)

    async def _areport(self, item: Any, error: BaseException, phase: str, stage: str) -> None:
        log_failure(self, f"{phase} of item {_short(item)}", error)
        self._dead_letter(item, error, stage)
        self._counters.add("failed")
        await aemit(self, "error", exception=error, phase=phase, item=item)

    def _dead_letter(self, item: Any, error: BaseException, stage: str) -> None:
        link = self._link
        if link is None:
            return
        letter = DeadLetter(stage=stage, item=item, error=error, worker=self.name)
        if is_process_queue(link.dead_letters):
            letter = _picklable_letter(letter)
        # Written into the pipe at once (see QueueWriter), so a SIGKILL does not take it along;
        # through the feeder only if the queue's write lock stays taken (its holder was killed).
        if not writer_for(link.dead_letters).put(self, letter, self.put_grace):
            link.dead_letters.put(letter)

    # -- names ---------------------------------------------------------------------

    def _stage_name(self) -> str:
        return self._link.stage if self._link is not None else self.name

    def _next_stage_name(self) -> str:
        return self._link.next_stage if self._link is not None else f"the output of {self.name}"

    def _who(self) -> str:
        return f"{type(self).__name__} {self.name!r}"


def _short(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 80 else text[:77] + "..."


def _picklable_letter(letter: DeadLetter) -> DeadLetter:
    """The letter itself when it pickles; else with a stand-in error, then a stand-in item."""
    try:
        ForkingPickler.dumps(letter)
        return letter
    except Exception:
        pass
    error = letter.error
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    remote = WorkerRemoteError(f"{type(error).__module__}.{type(error).__qualname__}", str(error), text)
    letter = DeadLetter(stage=letter.stage, item=letter.item, error=remote, worker=letter.worker)
    try:
        ForkingPickler.dumps(letter)
        return letter
    except Exception:
        return DeadLetter(stage=letter.stage, item=repr(letter.item), error=remote, worker=letter.worker)


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _stage_stats(name: str, kind: str, workers: Iterable[_StageMixin]) -> StageStats:
    totals = dict.fromkeys(_FIELDS, 0)
    count = 0
    for worker in workers:
        count += 1
        for field, value in worker._counters.snapshot().items():
            totals[field] += int(value)
    return StageStats(
        name=name,
        kind=kind,
        workers=count,
        items_in=totals["items_in"],
        items_out=totals["items_out"],
        failed=totals["failed"],
        dropped=totals["dropped"],
        in_flight=totals["items_in"] - totals["items_out"] - totals["failed"] - totals["dropped"],
    )


class StageWorker(_StageMixin, ThreadWorker):
    """A thread worker that takes items from ``input_queue``, processes them, and passes results on.

    Override :meth:`process_item` (``def`` or ``async def``): return the
    result to put into ``output_queue``, or None to drop the item. The wait
    for input wakes within milliseconds of ``stop()``; a put into a full
    ``output_queue`` waits (back-pressure). On ``stop()`` the item in hand is
    finished and passed on; if the output stays full for ``put_grace``
    seconds after the stop, it is reported as failed rather than lost. The
    worker ends by itself when it takes :data:`END_OF_STREAM` (passing one
    on). Use :class:`Pipeline` to wire stages without handling queues.

    Examples:
        >>> class Parse(StageWorker):
        ...     def process_item(self, line):
        ...         return line.split(",") if line else None

    Args:
        name: the worker's name (defaults to the class name).
        input_queue: where items come from: a :class:`queue.Queue` or a
            :mod:`multiprocessing` queue (the latter when the previous stage
            runs in processes).
        output_queue: where results go, likewise.
        put_grace: seconds a stopped worker keeps trying to pass on its last
            result into a full output queue (default 0.5).
        daemon: see :class:`~spoc.workers.AbstractWorker`.
        stop_timeout: see :class:`~spoc.workers.AbstractWorker`.

    Raises:
        TypeError: a queue is not a queue.
    """

    def __init__(
        self,
        name: str | None,
        input_queue: Any,
        output_queue: Any,
        *,
        put_grace: float = _DEFAULT_PUT_GRACE,
        daemon: bool = True,
        stop_timeout: float = _DEFAULT_STOP_TIMEOUT,
    ) -> None:
        super().__init__(name, daemon=daemon, stop_timeout=stop_timeout)
        self._init_stage(input_queue, output_queue, put_grace)


class ProcessStageWorker(_StageMixin, ProcessWorker):
    """:class:`StageWorker` in a child process, for CPU-bound stages; same interface.

    Both queues must cross the process boundary: :mod:`multiprocessing`
    queues made from the context of the worker's start method, e.g.
    ``multiprocessing.get_context(worker.start_method).Queue(8)``. Given a
    :class:`queue.Queue` it raises ``TypeError`` at once instead of hanging.
    Results must pickle; one that does not is reported as failed. The
    counters live in shared memory, so ``stats`` read in the parent is right.
    Define subclasses in an importable module (``spawn``, ``forkserver``).

    Args:
        name: see :class:`StageWorker`.
        input_queue: a :mod:`multiprocessing` queue.
        output_queue: a :mod:`multiprocessing` queue.
        put_grace: see :class:`StageWorker`.
        daemon: see :class:`~spoc.workers.ProcessWorker`.
        stop_timeout: see :class:`~spoc.workers.ProcessWorker`.
        start_method: see :class:`~spoc.workers.ProcessWorker`.

    Raises:
        TypeError: a queue is a :class:`queue.Queue` (or another queue that
            cannot cross processes), or not a queue.
    """

    def __init__(
        self,
        name: str | None,
        input_queue: Any,
        output_queue: Any,
        *,
        put_grace: float = _DEFAULT_PUT_GRACE,
        daemon: bool = True,
        stop_timeout: float = _DEFAULT_STOP_TIMEOUT,
        start_method: str | None = None,
    ) -> None:
        super().__init__(name, daemon=daemon, stop_timeout=stop_timeout, start_method=start_method)
        owner = f"{type(self).__name__} {self.name!r}"
        fix = (
            "Use multiprocessing queues made from the worker's start method, e.g. "
            "multiprocessing.get_context(worker.start_method).Queue(maxsize), or let "
            "spoc.workers.patterns.Pipeline wire the stages."
        )
        check_shareable(owner, "input_queue", input_queue, fix)
        check_shareable(owner, "output_queue", output_queue, fix)
        self._init_stage(input_queue, output_queue, put_grace)


# -- stages made from functions (module level: spawn children import them) ----------


class _FunctionStage(StageWorker):
    def __init__(self, name: str | None, input_queue: Any, output_queue: Any, *, function: Any, **kw: Any):
        super().__init__(name, input_queue, output_queue, **kw)
        self.function = function

    def process_item(self, item: Any) -> Any:
        return self.function(item)


class _AsyncFunctionStage(_FunctionStage):
    async def process_item(self, item: Any) -> Any:
        return await self.function(item)


class _ProcessFunctionStage(ProcessStageWorker):
    def __init__(self, name: str | None, input_queue: Any, output_queue: Any, *, function: Any, **kw: Any):
        super().__init__(name, input_queue, output_queue, **kw)
        self.function = function

    def process_item(self, item: Any) -> Any:
        return self.function(item)


class _AsyncProcessFunctionStage(_ProcessFunctionStage):
    async def process_item(self, item: Any) -> Any:
        return await self.function(item)


# -- the builder ------------------------------------------------------------------


@dataclass
class _Stage:
    name: str
    factory: Any
    kind: StageKind
    workers: int
    options: dict[str, Any]
    instances: list[_StageMixin]


class _Feeder(ThreadWorker):
    """Puts the items of an iterable into a pipeline, then (optionally) closes its input."""

    def __init__(self, name: str, pipeline: Pipeline, items: Iterable[Any], close: bool) -> None:
        super().__init__(name)
        self.pipeline = pipeline
        self.items = items
        self.close_after = close

    def main(self) -> None:
        try:
            for item in self.items:
                if not self.is_running or not self.pipeline._accept(item, self, None):
                    return
        except Exception:
            logger.exception("%r: the iterable given to feed() raised; the input is closed", self.name)
        if self.close_after and self.is_running:
            self.pipeline._close_input(feeder=self)


class _SourceFeeder(_Feeder):
    """Takes items from a queue or job source until stopped and puts them into a pipeline.

    A job source's item is acknowledged (``done(None)``) once the pipeline
    accepted it; one taken while the pipeline stops is given back: left
    unacknowledged to a job source (delivered again), put back into a queue.
    """

    def main(self) -> None:
        reader = reader_for(self.items)
        disarm = reader.arm(self)
        try:
            while self.is_running:
                got, item = reader.get(self)
                if not got:
                    continue
                accepted = False
                try:
                    accepted = self.pipeline._accept(item, self, None)
                finally:
                    if accepted:
                        reader.done(None)
                    else:
                        self._give_back(reader, item)
        finally:
            disarm()

    def _give_back(self, reader: QueueReader, item: Any) -> None:
        try:
            reader.give_back(item)
        except Exception:
            logger.error(
                "%r: the pipeline stopped before accepting item %s, and it could not go back to its source",
                self.name,
                _short(item),
            )


class Pipeline:
    """Wire stages with bounded queues; feed items in; iterate the results.

    Each stage is a :class:`StageWorker` or :class:`ProcessStageWorker`
    subclass, or a plain function (``kind="thread"`` or ``"process"``),
    with as many workers as you ask. The pipeline picks the queue of each
    hop: a :class:`queue.Queue` between threads, a :mod:`multiprocessing`
    queue (from the context of the pipeline's start method) wherever a
    process is at either end. Every queue, the results too, holds at most
    ``maxsize`` items, so a slow stage slows its producers down instead of
    piling up memory.

    Items go in with :meth:`put`, :meth:`feed` or :meth:`feed_from` (a
    queue or job source, until stopped); :meth:`close` marks the
    end of input, after which the pipeline ends by itself once every item
    has passed. :meth:`results` yields the results as they come.
    :meth:`join`, :meth:`close` and :meth:`stop` keep collecting results while
    they wait (for a later :meth:`results`), so they never block on a full
    results queue. See the module notes for how the end of stream and the
    conservation of items work. A pipeline runs once.

    Examples:
        >>> pipeline = Pipeline("words", maxsize=8)
        >>> _ = pipeline.add_stage(str.split).add_stage(len)
        >>> with pipeline:
        ...     pipeline.start()
        ...     pipeline.feed(["a b", "c d e"])
        ...     sorted(pipeline.results())
        [2, 3]

    Args:
        name: the pipeline's name, prefixed to its workers' names.
        maxsize: capacity of every queue (> 0).
        start_method: the start method of every process stage (also given
            to their constructors); by default that of
            :class:`~spoc.workers.ProcessWorker`.
        shutdown_timeout: the default budget of :meth:`stop`, in seconds.

    Raises:
        TypeError, ValueError: an argument is of the wrong type or out of range.
    """

    def __init__(
        self,
        name: str = "pipeline",
        *,
        maxsize: int = 8,
        start_method: str | None = None,
        shutdown_timeout: float = 10.0,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"Pipeline name must be a non-empty str, got {name!r}")
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"pipeline {name!r}: maxsize must be an int >= 1, got {maxsize!r}")
        if start_method is not None and start_method not in multiprocessing.get_all_start_methods():
            raise ValueError(f"pipeline {name!r}: unknown start method {start_method!r}")
        self.name = name
        self.maxsize = maxsize
        self.start_method = start_method
        self.shutdown_timeout = check_number(f"pipeline {name!r}", "shutdown_timeout", shutdown_timeout)
        self._stages: list[_Stage] = []
        self._lock = threading.RLock()
        self._put_lock = threading.Lock()
        self._server: Server | None = None
        self._hops: list[Any] = []
        self._shared_counts: list[Any] = []  # multiprocessing.Value marker counts of process stages
        self._dead_letter_queue: Any = None
        self._dead_letters: list[DeadLetter] = []
        self._results: collections.deque[Any] = collections.deque()
        self._markers_seen = 0
        self._pending_feeds: list[tuple[Any, bool, bool]] = []  # (items or source, close, is a source)
        self._feeders: list[_Feeder] = []
        self._accepted = 0
        self._emitted = 0  # results taken from the last queue: counted where they arrive
        self._drained = 0
        self._peak = 0
        self._started = False
        self._closed = False
        self._marker_sent = False
        self._stopping = False
        self._finished = False
        self._failed_workers: list[str] = []
        self._fail_lock = threading.Lock()  # never held while calling out: the server's listener takes it
        self._latch: tuple[int, int] | None = None  # a pipe written on failure, for a results queue that
        # is a multiprocessing queue (its readers wait on its pipe and this one)
        self._stage_of: dict[str, str] = {}  # stage worker name -> stage name

    # -- building --------------------------------------------------------------------

    def add_stage(
        self,
        stage: type[StageWorker] | type[ProcessStageWorker] | Callable[[Any], Any],
        *,
        workers: int = 1,
        kind: StageKind | None = None,
        name: str | None = None,
        **options: Any,
    ) -> Pipeline:
        """Append a stage; returns the pipeline, so calls chain.

        Args:
            stage: a :class:`StageWorker` or :class:`ProcessStageWorker`
                subclass, built as ``stage(name, input_queue=..., output_queue=...,
                **options)``; or a function of one item (``def`` or ``async
                def``; for a process stage, a module-level function).
            workers: how many workers run this stage (>= 1).
            kind: ``"thread"`` or ``"process"``; for a class it follows from
                the class, for a function it defaults to ``"thread"``.
            name: the stage's name (default: the class or function name).
            **options: more keyword arguments for each worker's constructor
                (``put_grace``, ``stop_timeout``, your own).

        Raises:
            TypeError: ``stage`` is neither a stage class nor a callable.
            ValueError: a bad ``workers``, ``kind`` or ``name``, or the pipeline started.
        """
        with self._lock:
            if self._started:
                raise ValueError(f"pipeline {self.name!r}: add stages before start()")
            if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
                raise ValueError(f"pipeline {self.name!r}: workers must be an int >= 1, got {workers!r}")
            if kind not in (None, "thread", "process"):
                raise ValueError(f"pipeline {self.name!r}: kind must be 'thread' or 'process', got {kind!r}")
            factory: Any
            if isinstance(stage, type):
                if not issubclass(stage, _StageMixin):
                    raise TypeError(
                        f"pipeline {self.name!r}: a stage class must subclass StageWorker or "
                        f"ProcessStageWorker, got {stage.__name__}"
                    )
                actual: StageKind = "process" if issubclass(stage, ProcessWorker) else "thread"
                if kind is not None and kind != actual:
                    raise ValueError(
                        f"pipeline {self.name!r}: {stage.__name__} is a {actual} stage, not kind={kind!r}"
                    )
                kind, factory, default_name = actual, stage, stage.__name__
            elif callable(stage):
                kind = kind or "thread"
                is_async = inspect.iscoroutinefunction(stage)
                if kind == "process":
                    factory = _AsyncProcessFunctionStage if is_async else _ProcessFunctionStage
                else:
                    factory = _AsyncFunctionStage if is_async else _FunctionStage
                options = {**options, "function": stage}
                default_name = getattr(stage, "__name__", "") or "stage"
                if not default_name.isidentifier():
                    default_name = f"stage{len(self._stages) + 1}"
            else:
                raise TypeError(f"pipeline {self.name!r}: a stage must be a stage class or a function")
            taken = {s.name for s in self._stages}
            if name is not None:
                if not isinstance(name, str) or not name or name in taken or name == "results":
                    raise ValueError(f"pipeline {self.name!r}: stage name {name!r} is empty or taken")
            else:
                name, n = default_name, 1
                while name in taken or name == "results":
                    n += 1
                    name = f"{default_name}-{n}"
            self._stages.append(_Stage(name, factory, kind, workers, options, []))
        return self

    # -- running ---------------------------------------------------------------------

    @property
    def workers(self) -> tuple[AbstractWorker, ...]:
        """The stage workers, in stage order (empty before :meth:`start`)."""
        return tuple(w for stage in self._stages for w in stage.instances)

    def start(self) -> None:
        """Make the queues and workers and start them (process stages first).

        Each stage worker is built as ``stage(name, input_queue, output_queue,
        **options)``. If one cannot be built or started, those started are
        stopped, the queues are closed, and the error is raised.

        Raises:
            RuntimeError: no stages, or started already.
            ValueError: a process stage's start method differs from the pipeline's.
            spoc.workers.WorkerNotPicklableError: under ``spawn``/``forkserver``,
                a process stage (or its function) cannot be sent to its child.
        """
        with self._lock:
            if self._started:
                raise RuntimeError(f"pipeline {self.name!r} runs once; make a new one")
            if not self._stages:
                raise RuntimeError(f"pipeline {self.name!r}: add a stage before start()")
            method = (
                self.start_method or os.environ.get(START_METHOD_ENV) or multiprocessing.get_start_method()
            )
            context: Any = multiprocessing.get_context(method)
            stages = self._stages
            kinds = ["thread", *(s.kind for s in stages), "thread"]  # the pipeline itself is a thread end
            self._hops = [
                context.Queue(self.maxsize) if "process" in (kinds[i], kinds[i + 1]) else _Hop(self.maxsize)
                for i in range(len(stages) + 1)
            ]
            any_process = any(s.kind == "process" for s in stages)
            self._dead_letter_queue = context.Queue() if any_process else queue.Queue()
            if is_process_queue(self._hops[-1]):
                self._latch = os.pipe()
            server = Server(self.name, shutdown_timeout=self.shutdown_timeout)
            # A stage worker that fails is seen at once: a thread reports its end itself, and
            # the server's supervisor waits on every process's sentinel and status pipe.
            server.add_listener(self._on_server_event)
            self._server = server
            try:
                for index, stage in enumerate(stages):
                    self._build_stage(index, stage, context, method, server)
                server.start()
            except BaseException:
                self._server = None
                self._stage_of.clear()
                for stage in stages:
                    stage.instances.clear()
                self._release_shared()
                self._close_latch()
                raise
            self._started = True
            pending, self._pending_feeds = self._pending_feeds, []
        for items, close, is_source in pending:
            self._start_feeder(items, close, is_source)

    def _release_shared(self) -> None:
        """Close this process's ends of the multiprocessing queues and release their semaphores
        (and those of the stages' marker counts) now: nothing is left for the garbage collector."""
        for q in [*self._hops, self._dead_letter_queue]:
            if is_process_queue(q):
                release_process_queue(q)
        release_semaphores(*(count.get_lock() for count in self._shared_counts))

    def _build_stage(self, index: int, stage: _Stage, context: Any, method: str, server: Server) -> None:
        stages = self._stages
        upstream = 1 if index == 0 else stages[index - 1].workers
        total = upstream + stage.workers - 1  # end markers this stage will take (see the module notes)
        markers: Any = context.Value("i", total) if stage.kind == "process" else _LocalCount(total)
        if stage.kind == "process":
            self._shared_counts.append(markers)
        link = _StageLink(
            stage=stage.name,
            next_stage=stages[index + 1].name if index + 1 < len(stages) else "results",
            siblings=stage.workers - 1,
            markers_left=markers,
            dead_letters=self._dead_letter_queue,
        )
        options = dict(stage.options)
        if stage.kind == "process" and self.start_method is not None:
            options.setdefault("start_method", self.start_method)
        for i in range(stage.workers):
            suffix = f"-{i + 1}" if stage.workers > 1 else ""
            name = f"{self.name}.{stage.name}{suffix}"
            worker = stage.factory(name, self._hops[index], self._hops[index + 1], **options)
            if not isinstance(worker, _StageMixin):
                raise TypeError(
                    f"pipeline {self.name!r}: stage {stage.name!r} made {worker!r}, not a stage worker"
                )
            if isinstance(worker, ProcessWorker) and worker.start_method != method:
                raise ValueError(
                    f"pipeline {self.name!r}: worker {worker.name!r} uses start method "
                    f"{worker.start_method!r}, the pipeline's queues are for {method!r}; "
                    "pass start_method to Pipeline()"
                )
            worker._link = link
            self._stage_of[name] = stage.name
            stage.instances.append(worker)
            server.add_worker(worker)

    def put(self, item: Any, timeout: float | None = None) -> None:
        """Put one item in; waits while the first queue is full (results are collected meanwhile).

        A put waiting for room when a stage worker fails raises
        :class:`PipelineFailedError` as soon as the failure is seen; the item
        was not accepted.

        Raises:
            PipelineFailedError: a stage worker failed (a ``RuntimeError``).
            RuntimeError: the pipeline is not started, closed or stopped.
            queue.Full: ``timeout`` seconds passed without room.
        """
        if not self._started:
            raise RuntimeError(f"pipeline {self.name!r}: start() it before put()")
        if not self._accept(item, None, timeout):
            raise RuntimeError(f"pipeline {self.name!r} is closed or stopped; the item was not accepted")

    def feed(self, items: Iterable[Any], *, close: bool = True) -> None:
        """Put the items of ``items`` in from a background thread, then :meth:`close` (by default).

        Callable before :meth:`start` (feeding begins with it). Iterate
        :meth:`results`, or :meth:`join`, meanwhile.
        """
        with self._lock:
            if self._failed_workers:
                raise self._failure_error()
            if self._closed or self._stopping:
                raise RuntimeError(f"pipeline {self.name!r} is closed or stopped")
            if not self._started:
                self._pending_feeds.append((items, close, False))
                return
        self._start_feeder(items, close)

    def feed_from(self, source: Any) -> None:
        """Take items from ``source`` in a background thread until :meth:`stop`.

        ``source`` is a queue (``queue.Queue``, a multiprocessing queue) or a
        job source such as ``spoc-workers-redis``'s ``RedisStream``: then an
        item is acknowledged once the pipeline accepted it (it is in the
        pipeline's care from then on: :meth:`stop` drains it), and an item
        taken while the pipeline stops is left unacknowledged, to be
        delivered again. Such a pipeline has no end of input: it runs until
        :meth:`stop`. Callable before :meth:`start`.

        Raises:
            TypeError: ``source`` is neither a queue nor a job source.
            RuntimeError: the pipeline is closed or stopped.
        """
        reader_for(source)  # a TypeError now, not in the feeder's thread
        with self._lock:
            if self._failed_workers:
                raise self._failure_error()
            if self._closed or self._stopping:
                raise RuntimeError(f"pipeline {self.name!r} is closed or stopped")
            if not self._started:
                self._pending_feeds.append((source, False, True))
                return
        self._start_feeder(source, False, True)

    def close(self, timeout: float | None = None) -> None:
        """Mark the end of input: no more :meth:`put`; the pipeline ends once every item has passed.

        Waits for running feeds to end and for room for the end marker,
        collecting results meanwhile. Idempotent.

        Raises:
            RuntimeError: the pipeline is not started.
            PipelineFailedError: a stage worker failed before the end marker went in.
            TimeoutError: ``timeout`` passed first.
        """
        if not self._started:
            raise RuntimeError(f"pipeline {self.name!r}: start() it before close()")
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._close_input(deadline=deadline):
            if self._failed_workers:
                raise self._failure_error()
            raise TimeoutError(f"pipeline {self.name!r}: close() timed out")

    def results(self) -> Iterator[Any]:
        """Yield the results as they arrive, until every item has passed (or the pipeline stopped).

        Results that :meth:`put`, :meth:`join`, :meth:`close` or :meth:`stop`
        collected come first. Each result is yielded once, whichever thread
        iterates. When the last one has come, the pipeline's workers are
        joined (at most ``shutdown_timeout`` seconds), so the pipeline has
        ended when the loop does.

        When a stage worker fails, the pipeline stops: the iteration yields
        the results that still come out, waits for the workers to end, then
        raises :class:`PipelineFailedError` naming the failed stage, in every
        thread that iterates (and in every later call). The items that did
        not come out are in :attr:`dead_letters` or :attr:`PipelineStats.lost`.

        Raises:
            RuntimeError: the pipeline is not started.
            PipelineFailedError: a stage worker failed (after the last result).
        """
        if not self._started:
            raise RuntimeError(f"pipeline {self.name!r}: start() it before results()")
        housekept = time.monotonic()
        while True:
            with self._lock:
                buffered = bool(self._results)
                item = self._results.popleft() if buffered else None
                complete = not buffered and self._complete()
            if buffered:
                yield item
                continue
            if complete:
                break
            if self._failed_workers:  # no end marker will come: collect what is left, then end
                if not self.join(self.shutdown_timeout):
                    self._force_stop(_DEFAULT_PUT_GRACE + 0.5)
                continue
            got, item = self._take_result(_PUMP_WAIT)
            if got:
                yield item
            now = time.monotonic()
            if not got or now - housekept > _PUMP_WAIT:
                housekept = now
                self._housekeeping()
        if not self.join(self.shutdown_timeout):
            logger.warning(
                "pipeline %r: every result has come but its workers did not end within %.3gs",
                self.name,
                self.shutdown_timeout,
            )
        if self._failed_workers:
            raise self._failure_error()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every stage worker has ended (after :meth:`close`, or a failure), collecting results.

        After a stage worker failed, it returns (True) once the other workers
        have stopped; it does not raise: see ``stats.failed_workers``.

        Returns:
            True when the pipeline has ended.
        """
        if not self._started:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._finished:
            if self._all_ended():
                self._finish()
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._pump(_PUMP_WAIT if remaining is None else min(_PUMP_WAIT, remaining))
        return True

    def stop(self, timeout: float | None = None) -> bool:
        """Stop taking input and drain, stage by stage, within ``timeout`` seconds.

        Feeds stop, :meth:`put` refuses, and the end marker goes in behind
        the accepted items: each stage finishes what it holds and passes it
        on. Past three quarters of the budget, the workers are stopped (each
        finishes the item in hand); whatever is still queued then becomes a
        :class:`DeadLetter`. Results are collected for :meth:`results`.

        Args:
            timeout: the budget in seconds (default ``shutdown_timeout``).

        Returns:
            True when every accepted item drained without forcing.
        """
        with self._lock:
            self._stopping = True
            if not self._started:
                self._closed = True
                return True
            if self._finished:
                return not self._failed_workers
        budget = self.shutdown_timeout if timeout is None else float(timeout)
        began = time.monotonic()
        graceful = began + 0.75 * budget
        for feeder in self._feeders:
            feeder.stop()
        clean = self._close_input(deadline=graceful) and self.join(max(0.0, graceful - time.monotonic()))
        clean = clean and not self._failed_workers
        if not self._finished:
            logger.warning("pipeline %r did not drain within %.3gs; stopping its workers", self.name, budget)
            self._force_stop(max(began + budget - time.monotonic(), _DEFAULT_PUT_GRACE + 0.5))
        return clean

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- observing -------------------------------------------------------------------

    @property
    def dead_letters(self) -> list[DeadLetter]:
        """The items reported as failed so far, oldest first (a copy)."""
        self._drain_dead_letters()
        with self._lock:
            return list(self._dead_letters)

    @property
    def stats(self) -> PipelineStats:
        """A snapshot of the pipeline's and every stage's counters.

        ``pipeline.stats()`` (a method until now) still works, with a ``DeprecationWarning``.
        """
        self._drain_dead_letters()
        stages = tuple(_stage_stats(s.name, s.kind, s.instances) for s in self._stages)
        with self._lock:
            accepted, emitted, peak, finished = self._accepted, self._emitted, self._peak, self._finished
            failed = len(self._dead_letters)
            failed_workers = tuple(self._failed_workers)
        dropped = sum(s.dropped for s in stages)
        in_flight = accepted - emitted - failed - dropped
        return PipelineStats(
            accepted=accepted,
            emitted=emitted,
            failed=failed,
            dropped=dropped,
            in_flight=in_flight,
            peak_in_flight=peak,
            lost=in_flight if finished else 0,
            ended=finished,
            failed_workers=failed_workers,
            stages=stages,
        )

    def __repr__(self) -> str:
        return f"<Pipeline {self.name!r} stages={[s.name for s in self._stages]}>"

    # -- internals: input ------------------------------------------------------------

    def _start_feeder(self, items: Any, close: bool, is_source: bool = False) -> None:
        server = self._server
        assert server is not None
        kind = _SourceFeeder if is_source else _Feeder
        with self._lock:
            feeder = kind(f"{self.name}.feed-{len(self._feeders) + 1}", self, items, close)
            self._feeders.append(feeder)
        server.add_worker(feeder)

    def _accept(self, item: Any, feeder: _Feeder | None, timeout: float | None) -> bool:
        """Put ``item`` into the first queue; False when the input is closed or stopped.

        A caller's own thread collects results while it waits (so that one
        thread may put everything, then read the results); a feeder does not,
        so that a slow reader of :meth:`results` slows the feed down.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        first = self._hops[0]
        wait = _PUMP_WAIT if feeder is not None else _CALLER_WAIT
        waited = False
        with self._put_lock:
            while True:
                if self._failed_workers:
                    if feeder is None:
                        raise self._failure_error()
                    return False
                if self._closed or self._stopping or (feeder is not None and not feeder.is_running):
                    return False
                try:
                    first.put(item, True, wait)
                    break
                except queue.Full:
                    waited = True
                if feeder is None:
                    self._pump(_CALLER_WAIT)
                if deadline is not None and time.monotonic() >= deadline:
                    raise queue.Full
            with self._lock:
                self._accepted += 1
                accepted = self._accepted
        # Reading every worker's counters costs microseconds per item: sample the
        # peak when the input pushed back (the queues are full: the likely peak)
        # and every _PEAK_SAMPLE items otherwise.
        if waited or accepted % _PEAK_SAMPLE == 0:
            in_flight = accepted - self._accounted()
            with self._lock:
                self._peak = max(self._peak, in_flight)
        return True

    def _accounted(self) -> int:
        """Items no longer in flight: emitted, failed (dead letters received) or dropped."""
        total = self._emitted + len(self._dead_letters)
        for stage in self._stages:
            for worker in stage.instances:
                total += int(worker._counters.snapshot()["dropped"])
        return total

    def _close_input(self, feeder: _Feeder | None = None, deadline: float | None = None) -> bool:
        """Wait for the other feeds to end, then put the end marker, once. False when it could not."""
        for other in list(self._feeders):
            while other is not feeder and other.is_alive():
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                if feeder is None:
                    self._pump(_PUMP_WAIT)
                else:
                    other.join(_PUMP_WAIT)
        first = self._hops[0]
        wait = _PUMP_WAIT if feeder is not None else _CALLER_WAIT
        with self._put_lock:
            if self._marker_sent:
                return True
            self._closed = True
            while True:
                try:
                    first.put(END_OF_STREAM, True, wait)
                except queue.Full:
                    pass
                else:
                    self._marker_sent = True
                    return True
                if self._failed_workers or self._finished:
                    return False
                if feeder is not None and not feeder.is_running:
                    return False
                if feeder is None:
                    self._pump(_CALLER_WAIT)
                if deadline is not None and time.monotonic() >= deadline:
                    return False

    # -- internals: output and supervision ---------------------------------------------

    def _take_result(self, wait: float) -> tuple[bool, Any]:
        """Read one result from the last queue, waiting up to ``wait``; counts end markers."""
        if self._finished:
            return False, None
        final = self._hops[-1]
        try:
            if wait <= 0:
                item = final.get_nowait()
            elif isinstance(final, _Hop):
                item = final.get_unless(wait, self._has_failed)
            else:  # a multiprocessing queue: wait on its pipe and on the latch a failure writes to
                try:
                    item = final.get_nowait()
                except queue.Empty:
                    latch = self._latch  # None once a concurrent _finish() closed it
                    wait_for_handles([final._reader, *(latch[:1] if latch else ())], wait)
                    item = final.get_nowait()
        except queue.Empty:
            return False, None
        except (OSError, ValueError, EOFError):  # closed by a concurrent _finish()
            return False, None
        with self._lock:
            if item is END_OF_STREAM:
                self._markers_seen += 1
                return False, None
            self._emitted += 1
        return True, item

    def _complete(self) -> bool:
        """No more results will come."""
        return self._finished or self._markers_seen >= self._stages[-1].workers

    def _pump(self, wait: float) -> None:
        """One round of waiting: collect results into the buffer, dead letters, watch the workers."""
        if self._failed_workers:
            # Nothing flows any more: empty the queues now, then wait in a worker's own join,
            # which its end cuts short.
            self._collect_results(0.0)
            self._housekeeping()
            self._wait_for_workers(wait)
            return
        if self._complete():
            self._wait_for_workers(wait)
        else:
            self._collect_results(wait)
        self._housekeeping()

    def _collect_results(self, wait: float) -> None:
        """Move what the last queue holds (and no more) to the buffer, waiting ``wait`` for the first."""
        for _ in range(self.maxsize + 1):
            if self._complete():
                return
            got, item = self._take_result(wait)
            if got:
                with self._lock:
                    self._results.append(item)
            elif wait == 0:
                return
            wait = 0

    def _wait_for_workers(self, wait: float) -> None:
        alive = [w for w in (*self.workers, *self._feeders) if w.is_alive()]
        if alive and wait > 0:
            alive[0].join(wait)

    def _housekeeping(self) -> None:
        self._drain_dead_letters()
        self._check_workers()
        if self._failed_workers:
            self._empty_queues_between_stages()

    def _empty_queues_between_stages(self) -> None:
        """After a failure nothing flows any more: what waits for a stage is a dead letter now,
        so that a stage blocked on a full queue ends at once instead of after its put_grace."""
        for index in range(len(self._stages)):
            q = self._hops[index]
            while not self._finished:
                try:
                    item = q.get_nowait()
                except (queue.Empty, OSError, ValueError, EOFError):
                    break
                if item is not END_OF_STREAM:
                    with self._lock:
                        self._queued_dead_letter(index, item)

    def _queued_dead_letter(self, index: int, item: Any) -> None:
        """``item`` was found waiting for stage ``index`` of a pipeline that stopped (holds the lock)."""
        stage = self._stages[index].name
        error = PipelineStoppedError(
            f"pipeline {self.name!r} stopped while the item waited for stage {stage!r}"
        )
        self._dead_letters.append(DeadLetter(stage=stage, item=item, error=error))
        self._drained += 1

    def _all_ended(self) -> bool:
        return not any(w.is_alive() for w in (*self.workers, *self._feeders))

    def _check_workers(self) -> None:
        """Look at the stage workers' states (a process worker's is read from its pipe, which
        tells the server's listener of a failure too)."""
        if self._finished:
            return
        for worker in self.workers:
            if worker.state is WorkerState.FAILED:
                self._stage_failed(worker.name, worker.exception)

    def _on_server_event(self, event: WorkerEvent) -> None:
        """The server's listener: a stage worker that ended FAILED stops the pipeline at once."""
        if event.kind == "state" and event.state is WorkerState.FAILED and event.worker in self._stage_of:
            self._stage_failed(event.worker, event.exception)

    def _stage_failed(self, name: str, exception: BaseException | None) -> None:
        """A stage worker failed: stop the whole pipeline (once per worker; any thread)."""
        with self._fail_lock:
            if self._finished or name in self._failed_workers:
                return
            self._failed_workers.append(name)
            self._stopping = True
        logger.error(
            "pipeline %r: stage worker %r failed (%r); stopping the pipeline", self.name, name, exception
        )
        self._wake_result_waiters()
        server = self._server
        if server is not None:
            server.stop()

    def _has_failed(self) -> bool:
        return bool(self._failed_workers)

    def _wake_result_waiters(self) -> None:
        """Cut short every wait for a result: no more will come through the stages."""
        final = self._hops[-1] if self._hops else None
        if isinstance(final, _Hop):
            final.wake()
        elif self._latch is not None:
            try:
                os.write(self._latch[1], b"!")  # never read: it stays readable
            except OSError:  # closed: the pipeline has finished
                pass

    def _close_latch(self) -> None:
        latch, self._latch = self._latch, None
        for fd in latch or ():
            try:
                os.close(fd)
            except OSError:
                pass

    def _failure_error(self) -> PipelineFailedError:
        names = tuple(self._failed_workers)
        by_name = {w.name: w for w in self.workers}
        stages = tuple(dict.fromkeys(self._stage_of[n] for n in names))
        reasons = []
        for n in names:
            exc = by_name[n].exception
            reasons.append(f"stage {self._stage_of[n]!r}, worker {n!r}: {_describe(exc)}")
        error = PipelineFailedError(
            f"pipeline {self.name!r} stopped because a stage worker failed ({'; '.join(reasons)})",
            self.name,
            stages,
            names,
        )
        error.__cause__ = by_name[names[0]].exception
        return error

    def _drain_dead_letters(self) -> None:
        dead = self._dead_letter_queue
        while dead is not None and not self._finished:
            try:
                letter = dead.get_nowait()
            except (queue.Empty, OSError, ValueError, EOFError):
                return
            with self._lock:
                self._dead_letters.append(letter)

    def _force_stop(self, timeout: float) -> None:
        server = self._server
        assert server is not None
        with self._lock:
            self._stopping = True
        server.stop()
        deadline = time.monotonic() + timeout
        while not self._all_ended() and time.monotonic() < deadline:
            self._pump(min(_PUMP_WAIT, max(0.0, deadline - time.monotonic())))
        server.join_all(max(0.0, deadline - time.monotonic()))
        self._finish()

    def _collect_last_dead_letters(self) -> None:
        """Read the dead letters still in transit: as many as the workers counted (2 s at most)."""
        dead = self._dead_letter_queue
        if dead is None:
            return
        expected = sum(int(w._counters.snapshot()["failed"]) for s in self._stages for w in s.instances)
        deadline = time.monotonic() + 2.0
        while True:
            missing = expected - (len(self._dead_letters) - self._drained)
            wait = min(_PUMP_WAIT, deadline - time.monotonic()) if missing > 0 else 0.0
            try:
                letter = dead.get(True, wait) if wait > 0 else dead.get_nowait()
            except (queue.Empty, OSError, ValueError, EOFError):
                if missing <= 0 or time.monotonic() >= deadline:
                    return
                continue
            self._dead_letters.append(letter)

    def _finish(self) -> None:
        """After the workers ended: empty every queue (results to the buffer, the rest to dead
        letters) and close this process's handles of the multiprocessing queues."""
        with self._lock:
            if self._finished:
                return
            server = self._server
            if server is not None:
                server.join_all(0)  # reap, read the last status
            last = len(self._hops) - 1
            complete = self._complete()
            for index, q in enumerate(self._hops):
                # On a normal end every queue is empty (the end markers came behind every item).
                # Else only this process's feeder thread (put() and feeds use it) may still hold
                # items for a queue: stage workers write into the pipe itself (see QueueWriter).
                wait = _PUMP_WAIT if not complete and _feeds_here(q) else 0.0
                # Only stage workers read a queue before the results; once all of them are gone,
                # its read lock may be ignored (one killed while holding it leaves it taken).
                readers_gone = index < last and not any(w.is_alive() for w in self._stages[index].instances)
                for item in _drain(q, wait, readers_gone):
                    if item is END_OF_STREAM:
                        if index == last:
                            self._markers_seen += 1
                    elif index == last:
                        self._results.append(item)
                        self._emitted += 1
                    else:
                        self._queued_dead_letter(index, item)
            self._collect_last_dead_letters()
            self._release_shared()
            self._finished = True
            self._close_latch()
        lost = self.stats.lost
        if lost:
            logger.error("pipeline %r: %d item(s) were lost with a killed process", self.name, lost)


def _drain(q: Any, wait: float, readers_gone: bool = False) -> list[Any]:
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


def _feeds_here(q: Any) -> bool:
    """A multiprocessing queue whose feeder thread runs in this process."""
    return is_process_queue(q) and q._thread is not None


def _read_lock_lost(q: Any) -> bool:
    if q._rlock.acquire(True, _PUMP_WAIT):
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


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no exception recorded"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
