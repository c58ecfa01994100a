"""The parent's side of a pipeline's process stage: a private pipe pair per worker, per run.

A :class:`StageSwitch` stands between a process stage and the thread hops
around it (``_hops.Hop``, in the parent). Its *distributor* thread takes
items from the hop before the stage and writes each into the input pipe of
one of the stage's workers (one whose pipe has room); its *collector*
thread reads every worker's output pipe and puts results into the hop after
the stage, and dead letters into the pipeline's queue of them. Each pipe has
one writer and one reader and no lock, so a worker SIGKILLed at any moment
wedges no one (see ``_channels``).

Each worker sends back one fate per item it took (its result, a dead
letter, or ``DROPPED``). Until its fate comes back, an item stays counted
in the size of the hop before the stage (``Hop.take_held``), so the
pipeline's ``maxsize`` bounds what is inside the stage too.

When a worker's run ends (its output pipe's end of file):

* the parent reads what the worker left unread in its input pipe (it keeps
  a copy of the reading end) and counts the bytes. Those are the last
  messages written to it, so that count tells which messages the worker
  never took: they are handed to the next run, or to a sibling;
* a message the worker took and did not finish is lost with it, and only
  that one (a batch with ``Pipeline(batch=n)``): the pipeline's ``lost``
  counts it, as every accepted item is otherwise accounted for;
* a new run (a Server's restart, ``add_stage(..., restart="on-failure")``)
  gets fresh pipes from :meth:`StageSwitch.renew`, called from
  ``ProcessStageWorker.before_launch``.

End of stream: once every writer upstream has sent its end marker and
nothing waits to be re-sent, the distributor sends one marker to each
worker's run; each worker passes it on and leaves. Once every worker has
passed its marker on, the collector puts one marker downstream.

After :meth:`StageSwitch.stop` (the pipeline stops or failed) nothing more
is sent; what the switch holds, and what the workers leave unread, becomes
a dead letter of the stage (:class:`PipelineStoppedError`).
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import os
import queue
import select
import selectors
import struct
import threading
import time
from collections.abc import Callable
from multiprocessing.reduction import ForkingPickler
from typing import Any

from ._channels import Channel, Letter
from ._envelopes import DROPPED, Batch, Tracked
from ._hops import END_OF_STREAM, Hop
from ._pipeline_errors import DeadLetter, PipelineStoppedError
from ._switch_runs import Run, Slot, count, frame_size, items_of

__all__ = ["StageSwitch"]

logger = logging.getLogger("spoc.workers.patterns")

_WAIT = 0.05  # the threads' longest wait before they look at the stop again
_CHUNK = 1 << 16
_NONE: Any = object()


class StageSwitch:
    """The distributor and collector of one process stage (see the module's text).

    Args:
        pipeline: the pipeline's name (for messages).
        stage: the stage's name.
        upstream: the hop before the stage (this switch is its one reader).
        downstream: the hop after the stage.
        dead_letters: the pipeline's queue of dead letters.
        ends_expected: how many end markers the upstream hop will carry.
        batch: at most this many items per message into a worker's pipe.
        linger: how long a batch begun waits for more items (a lone item is late by that much).
        on_failure: called (in the failed thread) if the distributor or the collector fails:
            nothing would flow through the stage any more, so the pipeline fails.
    """

    def __init__(
        self,
        pipeline: str,
        stage: str,
        *,
        upstream: Hop,
        downstream: Hop,
        dead_letters: queue.Queue[Any],
        ends_expected: int,
        batch: int,
        linger: float,
        on_failure: Callable[[BaseException], None],
    ) -> None:
        self.label = f"pipeline {pipeline!r}, stage {stage!r}"
        self.stage = stage
        self.upstream = upstream
        self.downstream = downstream
        self.dead_letters = dead_letters
        self.ends_expected = ends_expected
        self.batch = max(1, batch)
        self.linger = linger
        self.on_failure = on_failure
        self.slots: list[Slot] = []
        self._runs: list[Run] = []  # runs whose output pipe has not ended yet
        self.resent = 0  # items re-sent after the run that had them ended
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._redo: collections.deque[Any] = collections.deque()  # to send again, before the rest
        self._stopping = False
        self._ends = 0  # end markers taken from upstream
        self._end_passed = False
        self._turn = 0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._threads = [
            threading.Thread(target=self._distribute, name=f"{pipeline}.{stage}.distributor", daemon=True),
            threading.Thread(target=self._collect, name=f"{pipeline}.{stage}.collector", daemon=True),
        ]

    # -- set up, runs, stop ---------------------------------------------------------

    def add_slot(self, name: str) -> tuple[Channel, Channel]:
        """A worker of the stage: the channels to give it as its input and output queues."""
        inbox, outbox = Channel(f"the input of {name!r}"), Channel(f"the output of {name!r}")
        self.slots.append(Slot(name, inbox, outbox))
        return inbox, outbox

    def renew(self, name: str) -> Callable[[bool], None]:
        """Fresh pipes for the next run of worker ``name``, in its channels; returns what to call
        once its child was made (``ProcessWorker.before_launch``)."""
        slot = next(s for s in self.slots if s.name == name)
        child_input, to_child = multiprocessing.Pipe(duplex=False)
        from_child, child_output = multiprocessing.Pipe(duplex=False)
        slot.inbox.conn, slot.outbox.conn = child_input, child_output

        def launched(ok: bool) -> None:
            child_output.close()  # the child's alone now: its end is this pipe's end of file
            run = Run(slot, to_child, child_input, from_child)
            if not ok:
                run.close()
                return
            os.set_blocking(from_child.fileno(), False)
            with self._changed:
                slot.run = run
                self._runs.append(run)
                self._changed.notify_all()
            self._wake()

        return launched

    def start(self) -> None:
        """Start the distributor and the collector."""
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Send nothing more: what is held or comes back unread is a dead letter now (any thread)."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self.upstream.wake()
        self._wake()

    def close(self, timeout: float) -> None:
        """:meth:`stop`, then wait ``timeout`` at most for both threads (the workers have ended)."""
        self.stop()
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(timeout)
                if thread.is_alive():
                    logger.error("%s: %s did not end within %gs", self.label, thread.name, timeout)
        if not self._threads[1].is_alive():
            for run in list(self._runs):
                self._recover(run)
        with self._changed:
            wake_r, wake_w, self._wake_w = self._wake_r, self._wake_w, -1
        os.close(wake_r)
        os.close(wake_w)

    def _wake(self) -> None:
        with self._changed:  # not once closed: the number may belong to another file by then
            if self._wake_w < 0:
                return
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass  # full of wake-ups already

    # -- distributor ----------------------------------------------------------------

    def _distribute(self) -> None:
        try:
            while True:
                message = self._next_message()
                if message is _NONE:
                    break
                self._send(message)
        except Exception as exc:
            logger.exception("%s: the distributor failed", self.label)
            self.on_failure(exc)
        with self._changed:
            rest = list(self._redo)
            self._redo.clear()
        for message in rest:
            self._left_over(message)

    def _next_message(self) -> Any:
        """The next message to send: an item to send again, the next from upstream, or (once
        every end marker came) an end marker for a run that has none yet; _NONE after a stop."""
        while True:
            with self._changed:
                if self._stopping:
                    return _NONE
                if self._redo:
                    return self._redo.popleft()
                if self._ends >= self.ends_expected:
                    if self._end_wanted():
                        return END_OF_STREAM
                    self._changed.wait(_WAIT)
                    continue
            try:  # they stay counted in the hop's size until their fate comes back (_route)
                items = self.upstream.take_held(self.batch, _WAIT, self._wanted)
            except queue.Empty:
                continue
            if len(items) < self.batch and self.linger > 0:
                items += self._linger(len(items))
            kept = [item for item in items if item is not END_OF_STREAM]
            if len(kept) < len(items):
                self.upstream.release(len(items) - len(kept))
                with self._changed:
                    self._ends += len(items) - len(kept)
            if kept:
                return kept[0] if self.batch == 1 else Batch(kept)

    def _linger(self, taken: int) -> list[Any]:
        """More items for the batch begun, for ``linger`` seconds at most, until it is full or
        an end marker comes."""
        more: list[Any] = []
        due = time.monotonic() + self.linger
        while taken + len(more) < self.batch and END_OF_STREAM not in more:
            remaining = due - time.monotonic()
            if remaining <= 0:
                break
            try:
                more += self.upstream.take_held(self.batch - taken - len(more), remaining, self._wanted)
            except queue.Empty:
                break
        return more

    def _wanted(self) -> bool:
        return self._stopping or bool(self._redo)

    def _end_wanted(self) -> bool:
        """A run without its end marker, of a worker that has not passed one on (holds the lock)."""
        return bool(self._open_runs())

    def _open_runs(self) -> list[Run]:
        """The runs that may be sent a message: up, without their end marker, of a worker that
        has not passed one on (holds the lock)."""
        return [
            s.run
            for s in self.slots
            if s.run is not None and not s.run.down and not s.run.got_end and not s.finished
        ]

    def _send(self, message: Any) -> None:
        """Write ``message`` into a run's input pipe that has room, waiting for one."""
        try:
            data = ForkingPickler.dumps(message)
        except Exception as exc:
            self._unsendable(message, exc)
            return
        size = frame_size(len(data))
        while True:
            with self._lock:
                if self._stopping:
                    self._left_over(message)
                    return
                runs = self._open_runs()
            if not runs:
                with self._changed:
                    self._changed.wait(_WAIT)
                continue
            chosen = self._with_room(message, runs, size)
            if chosen is None:
                continue
            with self._lock:
                if chosen.down or self._stopping:
                    continue
                chosen.sending = True
                chosen.sent.append((message, size))
                chosen.largest = max(chosen.largest, size)
                if message is END_OF_STREAM:
                    chosen.got_end = True
                else:
                    chosen.sent_items += count(message)
            try:
                chosen.to_child.send_bytes(data)
            except (OSError, ValueError) as exc:  # closed under it: _recover counts what got in
                logger.error("%s: could not write to %r: %r", self.label, chosen.slot.name, exc)
            with self._changed:
                chosen.written(size)
                self._changed.notify_all()
            return

    def _with_room(self, message: Any, runs: list[Run], size: int) -> Run | None:
        """The next run, in turn, whose input pipe has room for a message of ``size`` bytes; None
        after a wait of ``_WAIT`` without one. A run whose unfinished items cannot fill half its
        pipe has room for sure; the others are asked (a system call)."""
        self._turn += 1
        turns = len(runs)
        if message is END_OF_STREAM:
            runs = runs[:1]
        else:
            runs = [runs[(self._turn + i) % turns] for i in range(turns)]
        for run in runs:
            if (run.sent_items - run.fated + 1) * max(run.largest, size) < run.capacity // 2:
                return run
        try:
            ready = select.select((), [r.to_child for r in runs], (), _WAIT)[1]
        except (OSError, ValueError):  # a pipe closed meanwhile (its run ended): look again
            return None
        return next((r for r in runs if r.to_child in ready), None)

    def _unsendable(self, message: Any, exc: Exception) -> None:
        for item in items_of(message):
            error = TypeError(f"{self.label}: the item cannot be pickled for the stage's processes: {exc!r}")
            self._letter(item, error)
        self.upstream.release(count(message))

    def _left_over(self, message: Any) -> None:
        """A message not sent (or sent and not read) after a stop: its items are dead letters."""
        if message is END_OF_STREAM:
            return
        self.upstream.release(count(message))
        for item in items_of(message):
            error = PipelineStoppedError(
                f"{self.label}: the pipeline stopped while the item waited for the stage"
            )
            self._letter(item, error)

    def _letter(self, item: Any, error: BaseException) -> None:
        tag = None
        if type(item) is Tracked:
            tag, item = item
        letter = DeadLetter(stage=self.stage, item=item, error=error)
        self.dead_letters.put(letter if tag is None else Tracked(tag, letter))

    # -- collector ------------------------------------------------------------------

    def _collect(self) -> None:
        selector = selectors.DefaultSelector()
        try:
            selector.register(self._wake_r, selectors.EVENT_READ, None)
            watched: set[Run] = set()
            while True:
                with self._lock:
                    runs = set(self._runs)  # the last run of a worker restarted already too
                    if not runs and (self._stopping or self._end_passed):
                        return
                for run in runs - watched:
                    selector.register(run.from_child, selectors.EVENT_READ, run)
                for run in watched - runs:
                    selector.unregister(run.from_child)
                watched = runs
                for key, _ in selector.select(_WAIT):
                    run = key.data
                    if run is None:
                        os.read(self._wake_r, _CHUNK)
                    elif not self._read(run):  # its end: forget it before its pipes close
                        selector.unregister(run.from_child)
                        watched.discard(run)
                        self._recover(run)
        except Exception as exc:
            logger.exception("%s: the collector failed", self.label)
            self.on_failure(exc)
        finally:
            selector.close()

    def _read(self, run: Run) -> bool:
        """Read what the run wrote and pass it on; False at the end of its output pipe."""
        try:
            chunk = os.read(run.from_child.fileno(), _CHUNK)
        except BlockingIOError:
            return True
        except OSError:
            chunk = b""
        if not chunk:  # the run ended: what it wrote last is read
            if run.buffer:
                logger.error(
                    "%s: worker %r ended in the middle of writing a result (%d bytes); it is lost",
                    self.label,
                    run.slot.name,
                    len(run.buffer),
                )
            return False
        buffer = run.buffer
        buffer += chunk
        start = 0
        bodies: list[bytes] = []
        while len(buffer) - start >= 4:
            size = struct.unpack_from("!i", buffer, start)[0]
            head = 4
            if size == -1:
                if len(buffer) - start < 12:
                    break
                size, head = struct.unpack_from("!Q", buffer, start + 4)[0], 12
            if len(buffer) - start - head < size:
                break
            bodies.append(bytes(buffer[start + head : start + head + size]))
            start += head + size
        del buffer[:start]
        if bodies:
            self._route(run, bodies)
        return True

    def _route(self, run: Run, bodies: list[bytes]) -> None:
        """Pass on what a run sent: results downstream, dead letters to the pipeline; count the
        fates, which make room in the hop before the stage."""
        fates = 0
        results: list[Any] = []
        for body in bodies:
            try:
                message = ForkingPickler.loads(body)
            except Exception:
                logger.exception(
                    "%s: a message from worker %r could not be read; it is lost", self.label, run.slot.name
                )
                continue
            if message is END_OF_STREAM:
                run.slot.finished = True
            elif type(message) is Letter:
                self.dead_letters.put(message.letter)
                fates += 1
            else:
                items = items_of(message)
                fates += len(items)
                results += [item for item in items if item is not DROPPED]  # DROPPED: a fate only
        if results:
            self._put_downstream(results)
        run.fated += fates  # this thread alone writes it
        self.upstream.release(fates)
        if run.slot.finished:
            self._pass_end_on()

    def _put_downstream(self, items: list[Any]) -> None:
        hop = self.downstream
        while True:
            if self._stopping:
                hop.put_anyway(items)  # emptied by the pipeline's end, after this thread ended
                return
            items = hop.put_some(items, _WAIT)
            if not items:
                return

    def _pass_end_on(self) -> None:
        with self._lock:
            if self._end_passed or not all(s.finished for s in self.slots):
                return
            self._end_passed = True
        self._put_downstream([END_OF_STREAM])

    # -- a run's end ----------------------------------------------------------------

    def _recover(self, run: Run) -> None:
        """The run ended: read what it left unread, send it again (or make it dead letters after
        a stop), and close its pipes."""
        with self._changed:
            run.down = True
            if run in self._runs:
                self._runs.remove(run)
            if run.slot.run is run:
                run.slot.run = None
        unread = self._read_unread(run)
        with self._changed:
            sent = list(run.sent)
            left: list[Any] = []
            for message, size in reversed(sent):  # the unread bytes are the last messages written
                if size > unread:
                    break
                unread -= size
                left.append(message)
            left.reverse()
            items = [m for m in left if m is not END_OF_STREAM]
            unread = sum(count(m) for m in items)
            lost = run.sent_items - run.fated - unread
            stopping = self._stopping
            if not stopping:  # still counted in the upstream hop's size, as they wait again
                self._redo.extendleft(reversed(items))
                self.resent += unread
                self._changed.notify_all()
        self.upstream.release(lost)  # taken by the run and not finished: lost with it
        if lost:
            logger.error(
                "%s: worker %r ended with %d item(s) taken and not finished: they are lost",
                self.label,
                run.slot.name,
                lost,
            )
        run.close()
        if items:
            if stopping:
                for message in items:
                    self._left_over(message)
            else:
                logger.warning(
                    "%s: worker %r ended with %d message(s) unread; they go to the next run",
                    self.label,
                    run.slot.name,
                    len(items),
                )
                self.upstream.wake()

    def _read_unread(self, run: Run) -> int:
        """Read, and count, the bytes left in the run's input pipe; waits for a write under way
        (reading is what lets it finish)."""
        fd = run.child_input.fileno()
        os.set_blocking(fd, False)
        total = 0
        while True:
            try:
                chunk = os.read(fd, _CHUNK)
            except BlockingIOError:
                chunk = b""
            total += len(chunk)
            if chunk:
                continue
            with self._changed:
                if not run.sending:
                    break
                self._changed.wait(0.001)
        while True:  # what the last write put in after the look above
            try:
                chunk = os.read(fd, _CHUNK)
            except BlockingIOError:
                break
            if not chunk:
                break
            total += len(chunk)
        return total
