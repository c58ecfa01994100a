"""``RedisStreamReader``: how one worker takes jobs from a :class:`RedisStream`.

One reader per worker run (job processors and stage workers make their own).
It reads new entries with ``XREADGROUP ... BLOCK``, bounded by the stream's
``block`` so that a stop is never kept waiting longer; every so often it
takes over entries left pending too long (``XAUTOCLAIM``) and sends those
delivered too often, and those it cannot turn into a job, to the
dead-letter stream. Every Redis call (read, take-over, acknowledgement,
error note, dead letter, hand-back) goes through one outage handling:
connection errors are retried with backoff through the worker's stop-aware
sleep, and each outage is logged once at WARNING and reported once as
``lifecycle("error", phase="redis")``, its end logged at INFO: never a
crash, never a spin, never a silent retry.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis
from spoc.workers import AbstractWorker, Backoff
from spoc.workers._lifecycle import emit_lifecycle
from spoc.workers.patterns import QueueReader

from ._common import CONNECTION_ERRORS, JOB_FIELD, dead_letter_entry, text

if TYPE_CHECKING:
    from ._stream import RedisStream

__all__ = ["RedisStreamReader"]

logger = logging.getLogger("spoc.workers.redis")

_NOTHING: tuple[bool, Any] = (False, None)
_RETRY = Backoff(base=0.05, factor=2.0, cap=2.0, jitter=0.1)
_STOPPING_ATTEMPTS = 3  # tries of an acknowledgement or a hand-back once the worker is stopping


class RedisStreamReader(QueueReader):
    """Takes jobs from a :class:`RedisStream` for one worker and acknowledges them when done.

    Args:
        stream: the stream.
    """

    def __init__(self, stream: RedisStream) -> None:
        super().__init__(stream)
        self.stream = stream
        self.consumer = f"{socket.gethostname()}:{os.getpid()}"
        self._worker: AbstractWorker | None = None
        # (entry id, its fields (None: deleted from the stream), times delivered)
        self._buffer: collections.deque[tuple[bytes, dict[bytes, bytes] | None, int]] = collections.deque()
        self._current: bytes | None = None
        # Jobs done, not yet acknowledged: (entry id, whether an error note may exist). They are
        # acknowledged together, in the round trip that reads the next batch (or at release).
        self._acks: list[tuple[bytes, bool]] = []
        self._current_redelivered = False  # an error note may exist only for a job delivered before
        # Deferred jobs (a pipeline's, see defer()): settled from other threads, so through this lock.
        self._settle_lock = threading.Lock()
        self._settled: list[tuple[bytes, bool]] = []  # acknowledgements for _acks, at the next round trip
        self._deferred: set[bytes] = set()  # in a pipeline now: never taken over by this reader
        self._released = False  # the worker's loop ended: a settled job is acknowledged at once
        self._group_ready = False
        self._next_claim = 0.0
        self._claim_cursor: bytes | str = "0-0"
        self._failures = 0  # failed Redis calls in a row: an outage while > 0
        self._outage_began = 0.0
        self.claim_every = max(0.01, min(stream.claim_idle / 2, 5.0))

    # -- the QueueReader protocol ------------------------------------------------------------

    def arm(self, worker: AbstractWorker) -> Callable[[], None]:
        """Name this reader's consumer after the worker; the undo hands unstarted jobs back."""
        self._worker = worker
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{worker.name}"
        return self.release

    def get(self, worker: AbstractWorker, timeout: float | None = None) -> tuple[bool, Any]:
        """The next job, waiting at most ``timeout`` (None: until a stop)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        flushed = False
        while True:
            got = self._pop()
            if got[0]:
                return got
            if not worker.is_running:
                return _NOTHING  # release() sends the acknowledgements still pending
            wait = self.stream.block
            if deadline is not None:
                self._collect_settled()
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    if self._acks and not flushed:  # a caller may not come back soon: send them now
                        flushed = True
                        self._fill(worker, None)
                        continue
                    return _NOTHING
            worker.heartbeat()  # a blocking read is no hang
            self._fill(worker, wait)

    def get_nowait(self) -> tuple[bool, Any]:
        """A job already read, or one read now without blocking."""
        got = self._pop()
        if got[0] or self._worker is None:
            return got
        self._fill(self._worker, None)
        return self._pop()

    def wait(self, worker: AbstractWorker, timeout: float) -> None:
        """Read (blocking at most ``timeout``, bounded by ``block``) into the local buffer."""
        if not self._buffer and worker.is_running:
            worker.heartbeat()
            self._fill(worker, min(timeout, self.stream.block))

    def task_done(self) -> None:
        """The job last taken was handled: acknowledge it."""
        self.done(None)

    def done(self, error: BaseException | None) -> None:
        """Acknowledge the job last taken when ``error`` is None; else leave it pending, noting the error.

        A pending job is delivered again after the stream's ``claim_idle``.
        The acknowledgements of a batch go together, in the round trip that
        reads the next batch (or in the hand-back at a stop), so a batch of
        n jobs costs one round trip instead of n + 1; a job is never
        acknowledged before its ``process_job`` returned. An acknowledgement
        is retried through an outage until it lands; if the worker is
        stopped first, the job stays pending (and is logged).
        """
        entry_id, self._current = self._current, None
        if entry_id is None:
            return
        if error is None:
            self._acks.append((entry_id, self._current_redelivered))
        else:
            self._note(entry_id, error)

    def defer(self) -> tuple[bytes, bool] | None:
        """Detach the job last taken: acknowledged only when :meth:`settle` says so (a pipeline's item).

        Until then this reader does not take the entry over again; another
        consumer does once it stays pending longer than ``claim_idle``
        (when this process died), so ``claim_idle`` must exceed the time an
        item spends in the pipeline.
        """
        entry_id, self._current = self._current, None
        if entry_id is None:
            return None
        with self._settle_lock:
            self._deferred.add(entry_id)
        return entry_id, self._current_redelivered

    def settle(self, token: Any, error: BaseException | None) -> None:
        """The job of ``token`` has left the pipeline: acknowledge it (with the next round trip, or
        at once once the worker's loop ended), or, with ``error``, leave it pending, noting the error."""
        entry_id, redelivered = token
        with self._settle_lock:
            self._deferred.discard(entry_id)
            if error is None:
                self._settled.append((entry_id, redelivered))
            released = self._released
        if error is not None:
            self._note(entry_id, error)
        elif released:
            with self._settle_lock:  # one sender at a time once the worker's thread is gone
                self._collect_settled_locked()
                self._flush_acks()

    def _note(self, entry_id: bytes, error: BaseException) -> None:
        note = f"{type(error).__name__}: {error}"[:2000]
        if not self._retrying(
            "note a job's error",
            lambda: self._client().hset(self.stream.errors_key, entry_id, note),
        ):
            logger.error(
                "%r: job %s failed (%s); it is delivered again after %gs, its error not noted",
                self.stream,
                text(entry_id),
                note,
                self.stream.claim_idle,
            )

    def _collect_settled(self) -> None:
        """Move the acknowledgements settled by other threads to the ones this thread sends."""
        if self._settled:
            with self._settle_lock:
                self._collect_settled_locked()

    def _collect_settled_locked(self) -> None:
        self._acks.extend(self._settled)
        self._settled.clear()

    def give_back(self, item: Any) -> None:
        """Leave the job last taken unacknowledged: it is delivered again after ``claim_idle``."""
        self.done(RuntimeError("given back unprocessed: its consumer stopped"))

    def release(self) -> None:
        """Hand back, at once, the jobs read but not started (on stop): re-added as new entries.

        They would otherwise wait ``claim_idle`` before another consumer could
        take them. Re-adding (with all their fields) and acknowledging is one
        transaction; when Redis cannot be reached they stay pending instead.
        """
        with self._settle_lock:  # a settle() from another thread waits, then sends its own
            self._collect_settled_locked()
            self._released = True
            self._release_locked()

    def _release_locked(self) -> None:
        entries, self._buffer = list(self._buffer), collections.deque()
        if not entries:
            self._flush_acks()
            return
        stream = self.stream

        def hand_back() -> None:
            pipe = self._client().pipeline(transaction=True)
            self._queue_acks(pipe)
            for entry_id, fields, deliveries in entries:
                if fields:
                    pipe.xadd(stream.stream, fields, maxlen=stream.maxlen, approximate=True)
                pipe.xack(stream.stream, stream.group, entry_id)
                if deliveries > 1:
                    pipe.hdel(stream.errors_key, entry_id)
            pipe.execute()
            self._acks.clear()

        if not self._retrying("hand back unstarted jobs", hand_back):
            self._unacknowledged()
            logger.error(
                "%r: %d job(s) read by %s stay pending; they are delivered again after %gs",
                stream,
                len(entries),
                self.consumer,
                stream.claim_idle,
            )

    # -- reading ------------------------------------------------------------------------------

    def _client(self) -> Any:
        return self.stream.client()

    def _pop(self) -> tuple[bool, Any]:
        while self._buffer:
            entry_id, fields, deliveries = self._buffer.popleft()
            if not fields:  # deleted from the stream since: nothing left to process or keep
                self._deleted(entry_id)
                self._acks.append((entry_id, True))
                continue
            data = fields.get(JOB_FIELD)
            if data is None:
                names = ", ".join(sorted(text(k) for k in fields))
                self._dead_letter(
                    entry_id, fields, deliveries, f"no {text(JOB_FIELD)!r} field (has: {names})"
                )
                continue
            try:
                job = self.stream.codec.loads(data)
            except Exception as exc:
                reason = f"cannot be decoded: {type(exc).__name__}: {exc}"
                self._dead_letter(entry_id, fields, deliveries, reason, cause=exc)
                continue
            self._current = entry_id
            self._current_redelivered = deliveries > 1
            return True, job
        return _NOTHING

    def _fill(self, worker: AbstractWorker, block: float | None) -> None:
        """One round trip or two: take over stale entries when due, else read new ones.

        The acknowledgements of the jobs done since the last read go in the same round trip.
        """
        self._collect_settled()
        what = f"read jobs, acknowledging {len(self._acks)} done" if self._acks else "read jobs"
        try:
            if not self._group_ready:
                self.stream.ensure_group()
                self._group_ready = True
            now = time.monotonic()
            if now >= self._next_claim:
                self._next_claim = now + self.claim_every
                self._claim()
                if self._buffer:
                    return
            self._read(block)
        except CONNECTION_ERRORS as exc:
            worker.sleep(self._failed(what, exc, worker))
        except redis.ResponseError as exc:
            # The stream or group was deleted under us (NOGROUP), or the server
            # refuses the command: make the group again, back off, report once.
            self._group_ready = False
            worker.sleep(self._failed(what, exc, worker))
        else:
            self._recovered()

    def _read(self, block: float | None) -> None:
        stream = self.stream
        block_ms = None if block is None else max(1, int(block * 1000))
        args = (stream.group, self.consumer, {stream.stream: ">"})
        if self._acks:  # the last batch's acknowledgements and the next read: one round trip
            pipe = self._client().pipeline(transaction=False)
            self._queue_acks(pipe)
            pipe.xreadgroup(*args, count=stream.batch, block=block_ms)
            reply = pipe.execute()[-1]
            self._acks.clear()
        else:
            reply = self._client().xreadgroup(*args, count=stream.batch, block=block_ms)
        for _name, entries in reply or ():
            for entry_id, fields in entries:
                self._buffer.append((entry_id, fields, 1))

    def _claim(self) -> None:
        """Take over entries idle longer than ``claim_idle``; dead-letter those delivered too often."""
        stream = self.stream
        client = self._client()
        self._flush_acks(retry=False)  # not to take over (again) what was done here already
        reply = client.xautoclaim(
            stream.stream,
            stream.group,
            self.consumer,
            min_idle_time=int(stream.claim_idle * 1000),
            start_id=self._claim_cursor,
            count=stream.batch,
        )
        self._claim_cursor = reply[0]
        for entry_id in reply[2] if len(reply) > 2 else ():  # Redis 7: dropped from the group by the claim
            self._deleted(entry_id)
        held = self._held()
        entries = [(i, fields) for i, fields in reply[1] if i is not None and i not in held]
        if not entries:
            return
        counts = {
            text(p["message_id"]): int(p["times_delivered"])
            for p in client.xpending_range(
                stream.stream,
                stream.group,
                min=entries[0][0],
                max=entries[-1][0],
                count=len(entries) + 100,
                consumername=self.consumer,
            )
        }
        for entry_id, fields in entries:
            deliveries = counts.get(text(entry_id), stream.max_deliveries + 1)
            if deliveries > stream.max_deliveries and fields:
                # This delivery is the take-over itself: the job was handed out deliveries - 1 times.
                self._dead_letter(entry_id, fields, deliveries - 1, None)
            else:
                self._buffer.append((entry_id, fields, deliveries))

    def _held(self) -> set[bytes]:
        """The entries this reader holds already (read, in hand, in a pipeline, acknowledged but not
        sent): a take-over of its own must not deliver them a second time."""
        held = {entry_id for entry_id, _, _ in self._buffer}
        held.update(entry_id for entry_id, _ in self._acks)
        if self._current is not None:
            held.add(self._current)
        with self._settle_lock:
            held.update(self._deferred)
            held.update(entry_id for entry_id, _ in self._settled)
        return held

    def _deleted(self, entry_id: bytes) -> None:
        logger.warning(
            "%r: entry %s was deleted from the stream (XDEL, or trimmed by maxlen) before it was processed",
            self.stream,
            text(entry_id),
        )

    # -- acknowledging, dead letters -----------------------------------------------------------

    def _queue_acks(self, pipe: Any) -> None:
        """Add the pending acknowledgements to ``pipe``: one ``XACK``, one ``HDEL`` of error notes."""
        stream = self.stream
        if not self._acks:  # XACK with no id is an error (it would fail a whole transaction)
            return
        pipe.xack(stream.stream, stream.group, *(entry_id for entry_id, _ in self._acks))
        noted = [entry_id for entry_id, may_have_note in self._acks if may_have_note]
        if noted:
            pipe.hdel(stream.errors_key, *noted)

    def _flush_acks(self, retry: bool = True) -> None:
        """Send the pending acknowledgements now (at a stop, or before a take-over)."""
        if not self._acks:
            return

        def send() -> None:
            pipe = self._client().pipeline(transaction=False)
            self._queue_acks(pipe)
            pipe.execute()
            self._acks.clear()

        if not retry:
            send()  # a connection error goes to the caller's outage handling
        elif not self._retrying("acknowledge jobs", send):
            self._unacknowledged()

    def _unacknowledged(self) -> None:
        for entry_id, _ in self._acks:
            logger.error(
                "%r: job %s was processed but is not acknowledged: it is delivered again after %gs",
                self.stream,
                text(entry_id),
                self.stream.claim_idle,
            )
        self._acks.clear()

    def _dead_letter(
        self,
        entry_id: bytes,
        fields: dict[bytes, bytes],
        deliveries: int,
        reason: str | None,
        cause: BaseException | None = None,
    ) -> None:
        """Move an entry to the dead-letter stream, with all its fields and why; then report it.

        The dead letter is added and the entry acknowledged in one
        transaction (``MULTI``/``EXEC``): a crash between the two cannot lose
        it. ``reason`` None: the error last noted for it.
        """
        stream = self.stream
        why = reason or ""

        def write() -> None:
            nonlocal why
            client = self._client()
            if reason is None:
                last = client.hget(stream.errors_key, entry_id)
                why = text(last) if last else "delivered too often, no error noted (its workers died?)"
            pipe = client.pipeline(transaction=True)
            pipe.xadd(
                stream.dead_letter_stream, dead_letter_entry(fields, entry_id, why, deliveries, self.consumer)
            )
            pipe.xack(stream.stream, stream.group, entry_id)
            pipe.hdel(stream.errors_key, entry_id)
            pipe.execute()

        if not self._retrying("dead-letter a job", write):
            logger.error(
                "%r: entry %s could not go to %r (%s); it stays pending, delivered again after %gs",
                stream,
                text(entry_id),
                stream.dead_letter_stream,
                reason or "delivered too often",
                stream.claim_idle,
            )
            return
        logger.error(
            "%r: entry %s went to %r after %d deliveries: %s",
            stream,
            text(entry_id),
            stream.dead_letter_stream,
            deliveries,
            why,
        )
        if self._worker is not None:
            error = RuntimeError(f"entry {text(entry_id)} went to {stream.dead_letter_stream!r}: {why}")
            error.__cause__ = cause
            emit_lifecycle(self._worker, "error", exception=error, phase="dead-letter")

    # -- outages --------------------------------------------------------------------------------

    def _failed(self, what: str, exc: BaseException, worker: AbstractWorker | None = None) -> float:
        """One failed Redis call; the first of an outage is logged and reported. Returns the backoff."""
        self._failures += 1
        delay = _RETRY.delay(self._failures - 1)
        if self._failures == 1:
            self._outage_began = time.monotonic()
            logger.warning(
                "%r: Redis error while trying to %s: %r; retrying with backoff", self.stream, what, exc
            )
            worker = worker or self._worker
            if worker is not None:
                emit_lifecycle(worker, "error", exception=exc, phase="redis")
        else:
            logger.debug("%r: still failing to %s (%r), next try in %.3fs", self.stream, what, exc, delay)
        return delay

    def _recovered(self) -> None:
        """A Redis call got through: the end of an outage, if there was one, is logged."""
        if self._failures:
            logger.info(
                "%r: Redis answers again, after %d failed attempt(s) in %.1fs",
                self.stream,
                self._failures,
                time.monotonic() - self._outage_began,
            )
            self._failures = 0

    def _retrying(self, what: str, action: Callable[[], Any]) -> bool:
        """Run ``action`` until it gets through, with the outage handling of reads; False if it did not.

        While the worker runs, connection errors are retried with backoff
        through its stop-aware sleep; once it is stopping (or with no
        worker), :data:`_STOPPING_ATTEMPTS` attempts are made. A server's
        refusal (``ResponseError``) is reported and not retried.
        """
        stopping_tries = 0
        while True:
            try:
                action()
            except CONNECTION_ERRORS as exc:
                delay = self._failed(what, exc)
                worker = self._worker
                if worker is not None and worker.is_running:
                    worker.sleep(delay)
                    continue
                stopping_tries += 1
                if stopping_tries >= _STOPPING_ATTEMPTS:
                    return False
                time.sleep(_RETRY.delay(stopping_tries - 1))  # stopping: short, bounded pauses
            except redis.ResponseError as exc:
                logger.error("%r: Redis refused to %s: %r", self.stream, what, exc)
                if self._worker is not None:
                    emit_lifecycle(self._worker, "error", exception=exc, phase="redis")
                return False
            else:
                self._recovered()
                return True
