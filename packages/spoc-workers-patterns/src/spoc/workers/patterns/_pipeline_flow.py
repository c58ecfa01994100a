"""How items flow through a started pipeline, and how it ends: the engine under :class:`Pipeline`.

An item goes in through :meth:`_PipelineFlow._accept` (from ``Pipeline.put``
or a feeder) into the first queue, through the stage workers from hop to
hop, and out of the last queue in :meth:`_PipelineFlow._take_results` (from
``Pipeline.results`` and every wait, which collect results into a buffer
meanwhile). The end marker goes in behind the last accepted item
(:meth:`_PipelineFlow._close_input`); the end of stream is told in ``_stages``.

Conservation
    Every accepted item is emitted (put into the results), dropped on
    purpose (``process_item`` returned None), or reported as failed: a
    lifecycle ``"error"`` event with ``item=`` and a :class:`DeadLetter` in
    ``Pipeline.dead_letters``. That holds on a normal end, when a stage
    raises, and on ``Pipeline.stop``, which stops the input and lets the
    accepted items drain stage by stage within its budget; only past the
    budget are the workers stopped, and whatever is still queued becomes a
    dead letter. Only a process killed while holding an item loses it; the
    pipeline then reports it in ``PipelineStats.lost``. What a stage
    passed on is in the next queue's pipe already (stage workers write into
    a multiprocessing queue's pipe themselves: ``_queues.QueueWriter``), and
    results and dead letters are counted where they arrive, so that count
    is exact.

Failure
    A stage worker that ends FAILED (setup or main raised, its process
    died) stops the pipeline as soon as its server sees it: every worker is
    stopped, what waits between stages becomes a dead letter, and every
    wait for a result, a blocked ``Pipeline.put`` included, ends with a
    :class:`PipelineFailedError` (``Pipeline.join`` returns).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from spoc.workers import AbstractWorker, Server, WorkerEvent, WorkerState

from ._envelopes import DROPPED, Tracked, is_tombstone
from ._feeders import Feeder, SourceFeeder
from ._hops import END_OF_STREAM, TAKE_AT_ONCE, Hop, drain
from ._pipeline_build import StageSpec
from ._pipeline_errors import DeadLetter, PipelineFailedError, PipelineStoppedError, stage_failure
from ._pipeline_state import PipelineState, PipelineStatus
from ._plain_queue import put_if_room
from ._switch import StageSwitch

__all__ = ["PUMP_WAIT"]

logger = logging.getLogger("spoc.workers.patterns")

PUMP_WAIT = 0.05
"""The parent's longest wait before it looks at the workers again."""
_CALLER_WAIT = 0.005  # a blocked put()/close() alternates this long between its put and the results
_PEAK_SAMPLE = 16  # without back-pressure, the in-flight peak is sampled every this many items
_S = PipelineState


class _PipelineFlow:
    """The state and the internals of a :class:`Pipeline`, which adds the public calls."""

    name: str
    maxsize: int

    def __init__(self) -> None:
        self._stages: list[StageSpec] = []
        self._status = PipelineStatus()  # the state (see _pipeline_state) and the failure latch
        # Locks, taken in this order, each guarding only what is named:
        # - _put_lock: one writer into the first queue at a time, so the end marker goes in
        #   behind every accepted item and nothing after it (the moves to CLOSING and ENDING).
        # - _lock (re-entrant): the stages, the results buffer, the counts (accepted, emitted,
        #   peak, markers seen, drained), the dead letters, the feeders and the pending feeds;
        #   start(), stop() and feed() decide under it.
        # - the status's own: the state and the failed workers; never held while calling out
        #   (the server's listener takes it).
        self._put_lock = threading.Lock()
        self._lock = threading.RLock()
        self._server: Server | None = None
        self._hops: list[Hop] = []  # _hops[i] feeds stage i; _hops[-1] holds the results
        self._stage_of: dict[str, str] = {}  # stage worker name -> stage name
        self._release: Callable[[], None] = _nothing  # ends the switches, once started
        self._switches: list[StageSwitch] = []  # of the process stages (see _switch)
        self._final_markers = 1  # end markers the results hop will carry
        self._restartable: set[str] = set()  # stage workers the server restarts when they fail
        self._switch_errors: dict[str, BaseException] = {}  # "<pipeline>.<stage>.switch" -> its error
        self._dead_letter_queue: Any = None
        self._dead_letters: list[DeadLetter] = []
        self._results: collections.deque[Any] = collections.deque()
        self._markers_seen = 0
        self._pending_feeds: list[tuple[Any, bool, bool]] = []  # (items or source, close, is a source)
        self._feeders: list[Feeder] = []
        self._tracks = False  # whether items may come in a Tracked envelope (fed from a source)
        self._accepted = 0
        self._emitted = 0  # results taken from the last queue: counted where they arrive
        self._drained = 0  # dead letters the pipeline found in a queue (not reported by a worker)
        self._peak = 0

    def _stage_workers(self) -> tuple[AbstractWorker, ...]:
        return tuple(w for stage in self._stages for w in stage.instances)

    # -- in --------------------------------------------------------------------------

    def _start_feeder(self, items: Any, close: bool, is_source: bool = False) -> None:
        server = self._server
        assert server is not None
        with self._lock:
            name = f"{self.name}.feed-{len(self._feeders) + 1}"
            args = (name, items, self._feeder_accept, self._feeder_close, close)
            feeder = SourceFeeder(len(self._feeders), *args) if is_source else Feeder(*args)
            self._tracks = self._tracks or is_source
            self._feeders.append(feeder)
        server.add_worker(feeder)

    def _feeder_accept(self, item: Any, feeder: Feeder) -> bool:
        return self._accept(item, feeder, None)

    def _feeder_close(self, feeder: Feeder) -> bool:
        return self._close_input(feeder=feeder)

    def _accept(self, item: Any, feeder: Feeder | None, timeout: float | None) -> bool:
        """Put ``item`` into the first queue; False when the input is closed or stopped.

        A caller's own thread collects results while it waits (so that one
        thread may put everything, then read the results); a feeder does not,
        so that a slow reader of :meth:`results` slows the feed down.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        first = self._hops[0]
        local = isinstance(first, Hop)
        wait = PUMP_WAIT if feeder is not None else _CALLER_WAIT
        waited = False
        with self._put_lock:
            while True:
                if self._status.failed():
                    if feeder is None:
                        raise self._failure_error()
                    return False
                if not self._status.accepting() or (feeder is not None and not feeder.is_running):
                    return False
                if local and put_if_room(first, item):
                    break
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
        return total + sum(w.stats.dropped for s in self._stages for w in s.instances)

    def _close_input(self, feeder: Feeder | None = None, deadline: float | None = None) -> bool:
        """Wait for the other feeds to end, then put the end marker, once. False when it could not
        (a failure, the deadline, the feeder's stop)."""
        for other in list(self._feeders):
            while other is not feeder and other.is_alive():
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                if feeder is None:
                    self._pump(PUMP_WAIT)
                else:
                    other.join(PUMP_WAIT)
        first = self._hops[0]
        wait = PUMP_WAIT if feeder is not None else _CALLER_WAIT
        status = self._status
        with self._put_lock:
            if status.failed() or status.ended() or status.state is _S.ENDING:
                return not status.failed()  # the marker is in, or no longer needed; or a failure
            status.refuse_input()  # OPEN -> CLOSING
            while True:
                try:
                    first.put(END_OF_STREAM, True, wait)
                except queue.Full:
                    pass
                else:
                    status.move(_S.ENDING, only_from=frozenset({_S.CLOSING}))  # not after a failure
                    return True
                if status.failed() or status.ended():
                    return False
                if feeder is not None and not feeder.is_running:
                    return False
                if feeder is None:
                    self._pump(_CALLER_WAIT)
                if deadline is not None and time.monotonic() >= deadline:
                    return False

    # -- out, and the watch over the workers -------------------------------------------

    def _take_results(self, wait: float) -> list[Any]:
        """Read the results in the last queue, waiting up to ``wait`` for the first; counts end markers.

        From a :class:`Hop`, what is there (up to :data:`TAKE_AT_ONCE` items)
        is taken under one hold of its lock; from a multiprocessing queue, one item.
        """
        if self._status.ended():
            return []
        final = self._hops[-1]
        try:
            taken = [final.get_nowait() if wait <= 0 else final.get_unless(wait, self._has_failed)]
        except queue.Empty:
            return []
        taken += final.take_available(TAKE_AT_ONCE - 1)
        with self._lock:
            return self._arrived(taken)

    def _arrived(self, taken: list[Any]) -> list[Any]:
        """What came out of the last queue: the results in it; counts end markers (holds the lock).

        A tracked result stays in its envelope until :meth:`results` yields
        it; a tombstone (a tracked item dropped on its way) is settled now.
        """
        results = [item for item in taken if item is not END_OF_STREAM]
        self._markers_seen += len(taken) - len(results)
        if self._tracks:
            kept = []
            for item in results:
                if is_tombstone(item):
                    self._settle(item.tag, None)
                else:
                    kept.append(item)
            results = kept
        self._emitted += len(results)
        return results

    def _settle(self, tag: tuple[int, Any], error: BaseException | None) -> None:
        """A tracked item has left the pipeline: tell the feeder of its source (see ``_envelopes``)."""
        index, token = tag
        feeder = self._feeders[index]
        assert isinstance(feeder, SourceFeeder)
        feeder.settle(token, error)

    def _add_letter(self, letter: Any) -> None:
        """Keep a dead letter as its queue delivered it; a tracked one's source is told (see
        ``_envelopes``), and a tombstone a stage could not pass on is only settled (holds the lock)."""
        if type(letter) is Tracked:
            tag, letter = letter
            if letter is DROPPED:
                self._settle(tag, None)
                return
            stopped = isinstance(letter.error, PipelineStoppedError)  # not processed: delivered again
            self._settle(tag, letter.error if stopped else None)
        self._dead_letters.append(letter)

    def _complete(self) -> bool:
        """No more results will come."""
        return self._status.ended() or self._markers_seen >= self._final_markers

    def _pump(self, wait: float) -> None:
        """One round of waiting: collect results into the buffer, dead letters, watch the workers."""
        if self._status.failed():
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
        moved = 0
        while moved <= self.maxsize:
            if self._complete():
                return
            results = self._take_results(wait)
            if results:
                moved += len(results)
                with self._lock:
                    self._results.extend(results)
            elif wait == 0:
                return
            wait = 0

    def _wait_for_workers(self, wait: float) -> None:
        alive = [w for w in (*self._stage_workers(), *self._feeders) if w.is_alive()]
        if alive and wait > 0:
            alive[0].join(wait)

    def _housekeeping(self) -> None:
        self._drain_dead_letters()
        self._check_workers()
        if self._status.failed():
            self._empty_queues_between_stages()

    def _empty_queues_between_stages(self) -> None:
        """After a failure nothing flows any more: what waits for a stage is a dead letter now,
        so that a stage blocked on a full queue ends at once instead of after its put_grace."""
        for index in range(len(self._stages)):
            q = self._hops[index]
            while not self._status.ended():
                try:
                    item = q.get_nowait()
                except queue.Empty:
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
        if type(item) is Tracked:
            tag, item = item
            if item is DROPPED:  # dropped on purpose already: only its source is to be told
                self._settle(tag, None)
                return
            self._settle(tag, error)
        self._dead_letters.append(DeadLetter(stage=stage, item=item, error=error))
        self._drained += 1

    def _all_ended(self) -> bool:
        return not any(w.is_alive() for w in (*self._stage_workers(), *self._feeders))

    def _check_workers(self) -> None:
        """Look at the stage workers' states (a process worker's is read from its pipe, which
        tells the server's listener of a failure too)."""
        if self._status.ended():
            return
        for worker in self._stage_workers():
            if worker.state is WorkerState.FAILED and worker.name not in self._restartable:
                self._stage_failed(worker.name, worker.exception)

    def _on_server_event(self, event: WorkerEvent) -> None:
        """The server's listener: a stage worker that ended FAILED stops the pipeline at once,
        unless the server restarts it; then only once the server gives up on it."""
        if event.worker not in self._stage_of:
            return
        if event.kind == "gave_up":
            self._stage_failed(event.worker, event.exception)
        elif event.kind == "state" and event.state is WorkerState.FAILED:
            if event.worker in self._restartable:
                logger.warning(
                    "pipeline %r: stage worker %r failed (%r); it is restarted",
                    self.name,
                    event.worker,
                    event.exception,
                )
                return
            self._stage_failed(event.worker, event.exception)

    def _stage_failed(self, name: str, exception: BaseException | None) -> None:
        """A stage worker failed: stop the whole pipeline (once per worker; any thread)."""
        if not self._status.worker_failed(name):
            return
        logger.error(
            "pipeline %r: stage worker %r failed (%r); stopping the pipeline", self.name, name, exception
        )
        self._status.wake()
        for switch in self._switches:
            switch.stop()
        server = self._server
        if server is not None:
            server.stop()

    def _switch_failed(self, stage: str, exception: BaseException) -> None:
        """A process stage's switch failed (a bug): nothing flows through that stage any more."""
        name = f"{self.name}.{stage}.switch"
        self._switch_errors[name] = exception
        self._stage_of[name] = stage
        self._stage_failed(name, exception)

    def _has_failed(self) -> bool:
        return self._status.failed()

    def _failure_error(self) -> PipelineFailedError:
        by_name = {w.name: w for w in self._stage_workers()}
        failed = [
            (self._stage_of[n], n, by_name[n].exception if n in by_name else self._switch_errors.get(n))
            for n in self._status.failed_workers
        ]
        return stage_failure(self.name, failed)

    def _drain_dead_letters(self) -> None:
        dead = self._dead_letter_queue
        while dead is not None and not self._status.ended():
            try:
                letter = dead.get_nowait()
            except (queue.Empty, OSError, ValueError, EOFError):
                return
            with self._lock:
                self._add_letter(letter)

    def _force_stop(self, timeout: float) -> None:
        server = self._server
        assert server is not None
        self._status.refuse_input()
        for switch in self._switches:
            switch.stop()
        server.stop()
        deadline = time.monotonic() + timeout
        while not self._all_ended() and time.monotonic() < deadline:
            self._pump(min(PUMP_WAIT, max(0.0, deadline - time.monotonic())))
        server.join_all(max(0.0, deadline - time.monotonic()))
        self._finish()

    def _collect_last_dead_letters(self) -> None:
        """Read the dead letters still in transit: as many as the workers counted (2 s at most)."""
        dead = self._dead_letter_queue
        if dead is None:
            return
        expected = sum(w.stats.failed for s in self._stages for w in s.instances)
        deadline = time.monotonic() + 2.0
        while True:
            missing = expected - (len(self._dead_letters) - self._drained)
            wait = min(PUMP_WAIT, deadline - time.monotonic()) if missing > 0 else 0.0
            try:
                letter = dead.get(True, wait) if wait > 0 else dead.get_nowait()
            except (queue.Empty, OSError, ValueError, EOFError):
                if missing <= 0 or time.monotonic() >= deadline:
                    return
                continue
            self._add_letter(letter)

    def _finish(self) -> None:
        """After the workers ended: empty every queue (results to the buffer, the rest to dead
        letters) and close this process's handles of the multiprocessing queues."""
        with self._lock:
            if self._status.ended():
                return
            server = self._server
            if server is not None:
                server.join_all(0)  # reap, read the last status
            # The switches first: what they hold or read last goes into the hops and dead letters.
            self._release()
            last = len(self._hops) - 1
            for index, q in enumerate(self._hops):
                # On a normal end every queue is empty (the end markers came behind every item).
                items = drain(q)
                if index == last:
                    self._results.extend(self._arrived(items))
                    continue
                for item in items:
                    if item is not END_OF_STREAM:
                        self._queued_dead_letter(index, item)
            self._collect_last_dead_letters()
            self._status.finished()
            self._status.disarm()
        lost = self._accepted - self._accounted()  # stats.lost, now that every worker ended
        if lost:
            logger.error("pipeline %r: %d item(s) were lost with a killed process", self.name, lost)


def _nothing() -> None:
    return None
