"""Pipelines: the :class:`Pipeline` that wires stage workers with bounded queues, and its calls.

The rooms of a pipeline, each a module: the stage workers and their loop
(``_stages``); the queues between stages and the end-of-stream marker
(``_hops``); checking stages and making the queues and workers
(``_pipeline_build``); the state and the failure latch (``_pipeline_state``);
the feeders of :meth:`Pipeline.feed` (``_feeders``); the errors and the
dead letter (``_pipeline_errors``), the statistics (``_pipeline_stats``).
An item's way in and out, conservation and failure are in
``_pipeline_flow``, whose class this one extends with the public calls.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from spoc.workers import START_METHOD_ENV, AbstractWorker
from spoc.workers._checks import check_count

from ._envelopes import Tracked
from ._hops import END_OF_STREAM
from ._pipeline_build import StageKind, make_stage, unbuild, wire
from ._pipeline_errors import DeadLetter, PipelineFailedError, PipelineStoppedError
from ._pipeline_flow import PUMP_WAIT, _PipelineFlow
from ._pipeline_state import PipelineState
from ._pipeline_stats import PipelineStats, StageStats, stage_totals
from ._queues import reader_for
from ._stages import DEFAULT_PUT_GRACE, ProcessStageWorker, StageWorker
from ._support import check_number

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

DEFAULT_LINGER = 0.005
"""Seconds a result waits at most for its batch to fill, by default (see ``Pipeline(batch=...)``)."""

logger = logging.getLogger("spoc.workers.patterns")

_S = PipelineState


class Pipeline(_PipelineFlow):
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
        batch: the most results a stage worker sends at once into a
            process hop (a queue with a process stage at either end): one
            pickle and one pipe write for up to ``batch`` items, the lever
            that multiplies a process hop's throughput. 1 (the default):
            item by item. Items are still handled one by one and counted
            one by one, in the same order; a process hop then holds up to
            ``maxsize`` batches. Thread hops and the pipeline's own input
            are not batched.
        linger: the longest a result waits for its batch to fill, in
            seconds (default 0.005): a lone item is sent ``linger`` after
            it was processed at the latest.

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
        batch: int = 1,
        linger: float = DEFAULT_LINGER,
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
        self.batch = check_count(f"pipeline {name!r}", "batch", batch)
        self.linger = check_number(f"pipeline {name!r}", "linger", linger)
        super().__init__()  # the state and its locks: see _PipelineFlow

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
            if self._status.started():
                raise ValueError(f"pipeline {self.name!r}: add stages before start()")
            spec = make_stage(
                self.name, stage, workers=workers, kind=kind, name=name, options=options, taken=self._stages
            )
            self._stages.append(spec)
        return self

    # -- running ---------------------------------------------------------------------

    @property
    def workers(self) -> tuple[AbstractWorker, ...]:
        """The stage workers, in stage order (empty before :meth:`start`)."""
        return self._stage_workers()

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
            if self._status.started():
                raise RuntimeError(f"pipeline {self.name!r} runs once; make a new one")
            if not self._stages:
                raise RuntimeError(f"pipeline {self.name!r}: add a stage before start()")
            method = (
                self.start_method or os.environ.get(START_METHOD_ENV) or multiprocessing.get_start_method()
            )
            wiring = wire(
                self.name,
                self._stages,
                maxsize=self.maxsize,
                method=method,
                start_method=self.start_method,
                shutdown_timeout=self.shutdown_timeout,
                listener=self._on_server_event,
                switch_failed=self._switch_failed,
                batch=self.batch,
                linger=self.linger,
            )
            self._hops, self._dead_letter_queue = wiring.hops, wiring.dead_letters
            self._stage_of, self._release = wiring.stage_of, wiring.release
            self._switches, self._final_markers = list(wiring.switches.values()), wiring.final_markers
            self._restartable = {
                w.name for stage in self._stages if stage.restart != "never" for w in stage.instances
            }
            self._status.arm(self._hops[-1])
            self._server = wiring.server
            try:
                for switch in self._switches:
                    switch.start()
                wiring.server.start()
            except BaseException:
                self._server = None
                unbuild(self._stages, wiring)
                self._status.disarm()
                raise
            # NEW -> OPEN; after a stop() before start(), SHUT -> CLOSING; after a failure
            # meanwhile, FAILING stays
            if not self._status.move(_S.OPEN, only_from=frozenset({_S.NEW})):
                self._status.move(_S.CLOSING, only_from=frozenset({_S.SHUT}))
            pending, self._pending_feeds = self._pending_feeds, []
        for items, close, is_source in pending:
            self._start_feeder(items, close, is_source)

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
        if not self._status.started():
            raise RuntimeError(f"pipeline {self.name!r}: start() it before put()")
        if not self._accept(item, None, timeout):
            raise RuntimeError(f"pipeline {self.name!r} is closed or stopped; the item was not accepted")

    def feed(self, items: Iterable[Any], *, close: bool = True) -> None:
        """Put the items of ``items`` in from a background thread, then :meth:`close` (by default).

        Callable before :meth:`start` (feeding begins with it). Iterate
        :meth:`results`, or :meth:`join`, meanwhile.
        """
        if self._may_feed(items, close, False):
            self._start_feeder(items, close)

    def feed_from(self, source: Any) -> None:
        """Take items from ``source`` in a background thread until :meth:`stop`.

        ``source`` is a queue (``queue.Queue``, a multiprocessing queue) or a
        job source such as ``spoc-workers-redis``'s ``RedisStream``. A queue's
        item is done for it once the pipeline accepted it. A job source that
        acknowledges late (whose reader's ``defer()`` gives a token, as
        ``RedisStream``'s does) is *at least once, end to end*: an item is
        acknowledged only when it has left the pipeline (its result
        consumed from :meth:`results`, dropped by a stage, or a dead letter
        of a failing ``process_item``), so an item inside a process that
        dies is delivered again. One that a stop turned into a dead letter
        (:class:`PipelineStoppedError`), or taken while the pipeline stops,
        is left unacknowledged, to be delivered again. Such a pipeline has
        no end of input: it runs until :meth:`stop`. Callable before
        :meth:`start`.

        Raises:
            TypeError: ``source`` is neither a queue nor a job source.
            RuntimeError: the pipeline is closed or stopped.
        """
        reader_for(source)  # a TypeError now, not in the feeder's thread
        if self._may_feed(source, False, True):
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
        if not self._status.started():
            raise RuntimeError(f"pipeline {self.name!r}: start() it before close()")
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._close_input(deadline=deadline):
            if self._status.failed():
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

        The result of an item from a job source that acknowledges late (see
        :meth:`feed_from`) is acknowledged once the loop's body ran for it:
        when the loop comes back for the next result, or leaves.

        Raises:
            RuntimeError: the pipeline is not started.
            PipelineFailedError: a stage worker failed (after the last result).
        """
        if not self._status.started():
            raise RuntimeError(f"pipeline {self.name!r}: start() it before results()")
        housekept = time.monotonic()
        while True:
            with self._lock:
                buffered = bool(self._results)
                item = self._results.popleft() if buffered else None
                complete = not buffered and self._complete()
            if buffered:
                if type(item) is not Tracked:
                    yield item
                    continue
                try:
                    yield item.item
                finally:  # the loop's body ran: it came back for the next one, or left (see _envelopes)
                    self._settle(item.tag, None)
                continue
            if complete:
                break
            if self._status.failed():  # no end marker will come: collect what is left, then end
                if not self.join(self.shutdown_timeout):
                    self._force_stop(DEFAULT_PUT_GRACE + 0.5)
                continue
            results = self._take_results(PUMP_WAIT)
            if results:
                with self._lock:
                    self._results.extend(results)  # yielded from the buffer, each once
            now = time.monotonic()
            if not results or now - housekept > PUMP_WAIT:
                housekept = now
                self._housekeeping()
        if not self.join(self.shutdown_timeout):
            logger.warning(
                "pipeline %r: every result has come but its workers did not end within %.3gs",
                self.name,
                self.shutdown_timeout,
            )
        if self._status.failed():
            raise self._failure_error()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every stage worker has ended (after :meth:`close`, or a failure), collecting results.

        After a stage worker failed, it returns (True) once the other workers
        have stopped; it does not raise: see ``stats.failed_workers``.

        Returns:
            True when the pipeline has ended.
        """
        if not self._status.started():
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._status.ended():
            if self._all_ended():
                self._finish()
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._pump(PUMP_WAIT if remaining is None else min(PUMP_WAIT, remaining))
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
            status = self._status
            status.refuse_input()  # OPEN -> CLOSING, NEW -> SHUT
            if not status.started():
                return True
            if status.ended():
                return status.state is _S.FINISHED
        budget = self.shutdown_timeout if timeout is None else float(timeout)
        began = time.monotonic()
        graceful = began + 0.75 * budget
        for feeder in self._feeders:
            feeder.stop()
        closed = self._close_input(deadline=graceful)  # False after a failure: then join
        ended = (closed or status.failed()) and self.join(max(0.0, graceful - time.monotonic()))
        clean = closed and ended and not status.failed()
        if not status.ended():
            logger.warning("pipeline %r did not drain within %.3gs; stopping its workers", self.name, budget)
            self._force_stop(max(began + budget - time.monotonic(), DEFAULT_PUT_GRACE + 0.5))
        return clean

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc_info: object) -> None:
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
        stages = tuple(stage_totals(s.name, s.kind, (w.stats for w in s.instances)) for s in self._stages)
        with self._lock:
            accepted, emitted, peak, finished = (
                self._accepted,
                self._emitted,
                self._peak,
                self._status.ended(),
            )
            failed = len(self._dead_letters)
            failed_workers = tuple(self._status.failed_workers)
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

    def _may_feed(self, items: Any, close: bool, is_source: bool) -> bool:
        """True when a feed may start now; False when it was queued for start()."""
        with self._lock:
            if self._status.failed():
                raise self._failure_error()
            if self._status.state not in (_S.NEW, _S.OPEN):
                raise RuntimeError(f"pipeline {self.name!r} is closed or stopped")
            if not self._status.started():
                self._pending_feeds.append((items, close, is_source))
                return False
        return True
