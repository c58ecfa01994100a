"""Stage workers: the loop that takes an item, processes it and passes the result on.

:class:`StageWorker` (a thread) and :class:`ProcessStageWorker` (a process)
share one loop, :class:`_StageMixin`; the function-stage adapters at the end
turn a plain function into a stage class for :class:`Pipeline`.

End of stream
    A stage worker that leaves its loop writes one :data:`END_OF_STREAM`
    marker downstream, behind its own items (each writer's items reach a
    queue in order), so a stage fed by ``N`` workers receives ``N`` markers.
    In a pipeline, a stage counts the markers it takes in a counter shared by
    its workers (shared memory for process stages, :class:`StageLink`); the
    worker that takes the last one knows every upstream item has been taken,
    puts one marker back into its own input queue for each sibling, and
    leaves; each sibling leaves on its marker.

What a pipeline needs of a stage worker, it asks through
:meth:`_StageMixin.link_to_pipeline` and the public ``stats``; it reads
nothing private of the worker.
"""

from __future__ import annotations

import inspect
import time
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spoc.workers import AbstractWorker, ProcessWorker, ThreadWorker

from ._consume import (
    DURATION_FIELDS,
    HANDLE,
    HANDLE_INNER,
    Consumer,
    Event,
    Events,
    Put,
    Verdict,
    aconsume,
    consume,
)
from ._envelopes import DROPPED, Batch, Tracked, is_tombstone
from ._hops import END_OF_STREAM, count_down
from ._pipeline_errors import DeadLetter, PipelineStoppedError, picklable_letter
from ._pipeline_stats import STAGE_FIELDS, StageStats, stage_stats
from ._queues import check_shareable, reader_for, writer_for
from ._support import Counters, check_number, has_async, log_failure, new_counters, short_repr

if TYPE_CHECKING:
    from prometheus_client.core import Metric

__all__ = [
    "DEFAULT_PUT_GRACE",
    "ProcessStageWorker",
    "StageLink",
    "StageWorker",
    "function_stage",
    "is_stage_worker",
    "stage_kind",
]

_DEFAULT_STOP_TIMEOUT = 5.0
# The outcome of an item whose processing a BaseException cut short (it is a dead letter; see done()).
_INTERRUPTED = RuntimeError("process_item() was interrupted")
DEFAULT_PUT_GRACE = 0.5
"""Seconds a stopped stage worker keeps trying to pass its last result on, by default."""


@dataclass
class StageLink:
    """What a pipeline tells each worker of a stage (pickled with process workers)."""

    stage: str
    next_stage: str
    siblings: int
    markers_left: Any  # multiprocessing.Value("i") or LocalCount, shared by the stage's workers
    dead_letters: Any  # a queue of DeadLetter records, read by the pipeline
    batch: int = 1  # results sent at once into a multiprocessing output queue (see Pipeline)
    linger: float = 0.0  # how long a result may wait for a batch to fill
    switch: Any = None  # a process stage's StageSwitch, in the parent only (see _switch)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "switch": None}  # its threads and pipes stay in the parent


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
        self._counters = new_counters(self, (*STAGE_FIELDS, *DURATION_FIELDS))
        self._link: StageLink | None = None

    def link_to_pipeline(self, link: StageLink) -> None:
        """Used by :class:`Pipeline`, before the start: make this worker one of ``link.stage``'s.

        The worker then counts end markers in ``link.markers_left``, wakes its
        ``link.siblings`` on the last one, and reports its failed items as
        :class:`DeadLetter` records into ``link.dead_letters``.
        """
        self._link = link

    @abstractmethod
    def process_item(self, item: Any) -> Any:
        """Process one item and return the result to pass on; override it, as ``def`` or ``async def``.

        Returning None drops the item (counted in ``stats.dropped``); anything
        else goes into ``output_queue``. An exception is reported as a
        lifecycle ``"error"`` event with ``phase="process_item"`` and
        ``item=item`` (and, in a :class:`Pipeline`, as a :class:`DeadLetter`);
        the worker goes on with the next item.
        """

    def process_batch(self, items: list[Any]) -> Any:
        """Optional: process the items that arrived together at once, as ``def`` or ``async def``.

        Define it instead of (or besides) :meth:`process_item` to handle
        items in bulk (a vectorised computation, one database round trip).
        It gets the item taken and those that came with it: the rest of a
        batch from a process hop, or what the stage's one worker took from a
        thread hop at once, up to the pipeline's ``batch`` (32 when that is
        1), never across an end marker; with little traffic, one item. It
        returns one result per item, in order (None drops that item); raising
        makes every item of the batch a dead letter. Counts stay per item.
        """
        raise NotImplementedError

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A class that defines only process_batch handles a lone item as a batch of one.
        batches = cls.process_batch is not _StageMixin.process_batch
        if batches and getattr(cls.process_item, "__isabstractmethod__", False):
            cls.process_item = _one_as_a_batch  # type: ignore[method-assign]

    @property
    def stats(self) -> StageStats:
        """This worker's counters (for a process worker, read from shared memory)."""
        return stage_stats(self.name, self.kind, self._counters.snapshot())

    def jobs_done(self) -> int:
        """Items finished over all runs: passed on, failed or dropped (for ``Recycle(jobs=...)``)."""
        values = self._counters.snapshot()
        return int(values["items_out"] + values["failed"] + values["dropped"])

    def collect_metrics(self) -> Iterator[Metric]:
        """This worker's Prometheus families, read in the parent at each scrape (see ``/metrics``).

        ``spoc_stage_items_total{stage, outcome}`` (``out``, ``failed``,
        ``dropped``), the histogram ``spoc_stage_item_duration_seconds{stage}``
        of ``process_item()``, and ``spoc_stage_queue_depth{stage}``, the
        items waiting in the input queue, when the queue can tell.
        """
        from ._metrics import counter_family, depth_family, duration_family  # noqa: PLC0415 (when scraped)

        values = self._counters.snapshot()
        labels = {"stage": stage_name(self._link, self)}
        yield counter_family(
            "spoc_stage_items",
            "Items a stage worker finished, by outcome: out (passed on), failed, dropped.",
            labels,
            values,
            {"out": "items_out", "failed": "failed", "dropped": "dropped"},
        )
        yield duration_family(
            "spoc_stage_item_duration_seconds", "Seconds process_item() took, per item.", labels, values
        )
        depth = depth_family(
            "spoc_stage_queue_depth", "Items waiting in the stage's input queue.", labels, self.input_queue
        )
        if depth is not None:
            yield depth

    # -- the loop ------------------------------------------------------------------

    def main(self) -> Awaitable[None] | None:
        """Process items until the end-of-stream marker or a stop (async when ``process_item`` is)."""
        from ._stage_batches import BatchStageConsumer, takes_batches  # noqa: PLC0415 (it builds on this module)

        batches = takes_batches(self)
        kind = BatchStageConsumer if batches else _StageConsumer
        consumer = kind(self, self._link, self._counters)
        if has_async(self.process_batch if batches else self.process_item, self.lifecycle):
            return aconsume(consumer)
        consume(consumer)
        return None


def _one_as_a_batch(self: _StageMixin, item: Any) -> Any:
    """``process_item`` of a class that defines only ``process_batch``."""
    result = self.process_batch([item])
    if inspect.isawaitable(result):
        return _first_of(result)
    return result[0]


async def _first_of(results: Awaitable[list[Any]]) -> Any:
    return (await results)[0]


def stage_name(link: StageLink | None, worker: AbstractWorker) -> str:
    """The name of the stage ``worker`` belongs to (its own name outside a pipeline)."""
    return link.stage if link is not None else worker.name


class _StageConsumer(Consumer):
    """A stage worker's steps of the consume loop: process the item, then pass the result on.

    Given by the stage what a pipeline told it (``link``), it counts end
    markers and writes dead letters; the stage itself is read only through
    its public attributes.
    """

    screens = True  # the end-of-stream marker is no item

    def __init__(self, worker: _StageMixin, link: StageLink | None, counters: Counters) -> None:
        super().__init__(
            worker,
            worker.input_queue,
            # A function stage's process_item only calls its function: call it directly.
            worker.function if isinstance(worker, _CallsFunction) else worker.process_item,
            counters,
            phase="process_item",
            subject="item",
            interrupted=_INTERRUPTED,
        )
        self.stage = worker
        self.link = link
        self.writer = self.output = writer_for(worker.output_queue)
        self.grace = worker.put_grace
        self.add = counters.add
        self.name = stage_name(link, worker)
        self.next_name = link.next_stage if link is not None else f"the output of {worker.name}"
        self.who = f"{type(worker).__name__} {worker.name!r}"
        # Results into a process hop go in batches when the pipeline asks for it.
        self.batch = link.batch if link is not None and self.writer.crosses_processes else 1
        self.linger = link.linger if link is not None else 0.0
        self.held: list[Any] = []
        # A pipeline's process stage sends the results of each batch it got as one batch, at the
        # batch's end: a SIGKILL then loses at most the batch in hand (see _switch).
        self.per_batch = self.writer.reports_drops
        self.tag: Any = None  # the tag of the tracked item being handled (see _envelopes)
        self.tracking = False  # whether a tracked item came: results may then hold tombstones

    def unreadable(self, exc: Exception) -> Event:  # e.g. an item that cannot be unpickled here
        return self.fail(None, exc, "get", self.name)

    def arrived(self, item: Any) -> tuple[Verdict, Sequence[Put]]:
        stage = self.stage
        if item is not END_OF_STREAM:
            if type(item) is Tracked:
                return self.arrived_tracked(item)
            self.add("items_in")
            return HANDLE
        leave, siblings = self.end_decision()
        if not leave:
            return Verdict.SKIP, ()
        own = writer_for(stage.input_queue)
        puts = [Put(own, END_OF_STREAM, self.grace) for _ in range(siblings)]
        puts.append(Put(self.writer, END_OF_STREAM, self.grace))
        return Verdict.LEAVE, puts

    def arrived_tracked(self, item: Tracked) -> tuple[Verdict, Sequence[Put]]:
        """A tracked item is handled from inside its envelope; a tombstone is passed on as it is."""
        self.tracking = True
        if item.item is DROPPED:
            return Verdict.SKIP, self.pass_on(item)
        self.tag = item.tag
        self.add("items_in")
        return HANDLE_INNER

    def retag(self, obj: Any) -> Any:
        """``obj`` in the envelope of the tracked item being handled (as it is for an untracked one)."""
        tag, self.tag = self.tag, None
        return obj if tag is None else Tracked(tag, obj)

    def pass_on(self, obj: Any) -> Sequence[Put]:
        """The puts that pass ``obj`` on behind the results held back (none when it is held too)."""
        if self.batch == 1:
            return (Put(self.writer, obj, self.grace),)
        self.hold(obj)
        return ()

    def hold(self, obj: Any) -> Batch | None:
        """Hold ``obj`` back for a batch; the batch, when it is full."""
        held = self.held
        held.append(obj)
        if len(held) == 1:
            self.due = time.monotonic() + self.linger
        if len(held) >= self.batch or (self.per_batch and not self.reader.ready()):
            return self.take_batch()
        return None

    def end_decision(self) -> tuple[bool, int]:
        """(leave the loop?, how many markers to give to siblings) for one marker taken."""
        link = self.link
        if link is None:
            return True, 0
        left = count_down(link.markers_left)
        if left > link.siblings:
            return False, 0  # one upstream worker finished; others still produce
        if left == link.siblings:
            return True, link.siblings  # the last upstream marker: wake the siblings
        return True, 0  # a sibling's marker

    def handled(self, item: Any, result: Any, error: Exception | None, started: float) -> tuple[Events, Any]:
        self.account(started)  # the duration of process_item(), whatever became of the item
        if error is not None:
            return self.fail(self.retag(item), error, "process_item", self.name), None
        if result is None:
            self.count("dropped")
            if self.tag is None and not self.writer.reports_drops:
                return None, None
            result = DROPPED  # its tombstone goes on, for the pipeline to settle it (or its switch)
        try:
            if self.writer.must_pickle:  # (the check is a call per item otherwise)
                self.writer.check_picklable(result)
        except Exception as exc:
            return self.fail(
                self.retag(item),
                self.unpicklable("the result of process_item()", exc),
                "process_item",
                self.name,
            ), None
        if self.tag is not None:
            result = self.retag(result)
        if self.batch == 1:
            return None, result
        return None, self.hold(result)

    def unpicklable(self, what: str, exc: Exception) -> TypeError:
        """The error of an item whose result (``what``) cannot be pickled into the next process hop."""
        error = TypeError(
            f"{self.who}: {what} cannot be pickled to cross to the next stage's processes: {exc!r}"
        )
        error.__cause__ = exc
        return error

    def take_batch(self) -> Batch | None:
        if not self.held:
            return None
        batch, self.held, self.due = Batch(self.held), [], None
        return batch

    def put_done(self, result: Any, ok: bool) -> Events:
        results = result.items if type(result) is Batch else None
        if ok:
            out = 1 if results is None else len(results)
            if self.tracking or self.writer.reports_drops:  # a tombstone is no result
                out -= sum(1 for one in (results or (result,)) if one is DROPPED or is_tombstone(one))
            if out:
                self.add("items_out", out)
            return None
        not_passed_on = PipelineStoppedError(
            f"{self.who} was stopped while its output queue stayed full for put_grace="
            f"{self.grace:g}s: its result was not passed on to {self.next_name!r}"
        )
        if results is None:
            return self.fail(result, not_passed_on, "put", self.next_name)
        return [self.fail(one, not_passed_on, "put", self.next_name) for one in results]

    def unhandled(self, items: list[Any]) -> Events:
        """The rest of a batch taken when the stop came: each one is a dead letter."""
        stopped = PipelineStoppedError(f"{self.who} was stopped before it processed the item")
        events: list[Event] = []
        for item in items:
            if item is END_OF_STREAM:
                continue
            if not is_tombstone(item):
                self.add("items_in")
            events.append(self.fail(item, stopped, "process_item", self.name))
        return events

    def fail(self, item: Any, error: BaseException, phase: str, stage: str) -> Event:
        """Log, dead-letter and count a failed item; the ``"error"`` event to send.

        A tracked item's letter carries its tag; a tombstone that could not be
        passed on is no failure (its item was dropped on purpose): it goes to
        the pipeline through the dead letters' queue, to be settled there.
        """
        tag = None
        if type(item) is Tracked:
            tag, item = item
            if item is DROPPED:
                self.dead_letter(Tracked(tag, DROPPED))
                return None
        log_failure(self.stage, f"{phase} of item {short_repr(item)}", error)
        letter = DeadLetter(stage=stage, item=item, error=error, worker=self.stage.name)
        self.dead_letter(letter if tag is None else Tracked(tag, letter))
        self.count("failed")
        return {"exception": error, "phase": phase, "item": item}

    def dead_letter(self, letter: DeadLetter | Tracked) -> None:
        """In a pipeline, report a failed item (a :class:`DeadLetter`, tracked or not)."""
        link = self.link
        if link is None:
            return
        writer = writer_for(link.dead_letters)
        if writer.crosses_processes:
            if type(letter) is DeadLetter:
                letter = picklable_letter(letter)
            elif isinstance(letter, Tracked) and type(letter.item) is DeadLetter:
                letter = Tracked(letter.tag, picklable_letter(letter.item))
        # Written into the pipe at once (see QueueWriter), so a SIGKILL does not take it along;
        # through the feeder only if the queue's write lock stays taken (its holder was killed).
        if not writer.put(self.stage, letter, self.grace):
            link.dead_letters.put(letter)

    def cut_short(self, item: Any, exc: BaseException) -> Events:  # the item is a dead letter, not lost
        return self.fail(self.retag(item), exc, "process_item", self.name)

    def done(self, outcome: BaseException | None) -> None:
        """Every item taken is done for its source, a failed one too: it became a dead letter."""
        self.reader.task_done()


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
        put_grace: float = DEFAULT_PUT_GRACE,
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
        put_grace: float = DEFAULT_PUT_GRACE,
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

    def before_launch(self) -> Callable[[bool], None] | None:
        """In a :class:`Pipeline`, each run gets fresh private pipes from its stage's switch."""
        link = self._link
        if link is None or link.switch is None:
            return None
        launched: Callable[[bool], None] = link.switch.renew(self.name)
        return launched


# -- stages made from functions (module level: spawn children import them) ----------


class _CallsFunction:
    """A stage whose ``process_item`` is ``function``; combined with either stage class."""

    function: Any

    def __init__(self, name: str | None, input_queue: Any, output_queue: Any, *, function: Any, **kw: Any):
        super().__init__(name, input_queue, output_queue, **kw)  # type: ignore[call-arg]
        self.function = function

    def process_item(self, item: Any) -> Any:
        return self.function(item)


class _CallsAsyncFunction(_CallsFunction):
    async def process_item(self, item: Any) -> Any:
        return await self.function(item)


class _FunctionStage(_CallsFunction, StageWorker):
    pass


class _AsyncFunctionStage(_CallsAsyncFunction, StageWorker):
    pass


class _ProcessFunctionStage(_CallsFunction, ProcessStageWorker):
    pass


class _AsyncProcessFunctionStage(_CallsAsyncFunction, ProcessStageWorker):
    pass


def function_stage(function: Any, kind: str) -> type[StageWorker] | type[ProcessStageWorker]:
    """The stage class that calls ``function`` (``def`` or ``async def``) in a thread or a process."""
    is_async = inspect.iscoroutinefunction(function)
    if kind == "process":
        return _AsyncProcessFunctionStage if is_async else _ProcessFunctionStage
    return _AsyncFunctionStage if is_async else _FunctionStage


def is_stage_worker(obj: object) -> bool:
    """True for a stage worker, or (given a class) a stage worker class."""
    return issubclass(obj, _StageMixin) if isinstance(obj, type) else isinstance(obj, _StageMixin)


def stage_kind(cls: type) -> str:
    """``"process"`` or ``"thread"``: what carries the workers of stage class ``cls``."""
    return "process" if issubclass(cls, ProcessWorker) else "thread"
