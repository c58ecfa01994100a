"""The supervisor: one monitor thread per Server that notices ends and hangs and restarts.

It blocks in :func:`multiprocessing.connection.wait` on a self-pipe (poked by
thread workers as they end, by state changes and by the Server) and on every
process worker's status pipe and sentinel, so a crash or a SIGKILL is seen at
once; its only timeouts are the next scheduled restart, kill or heartbeat
deadline. The restart semantics follow Erlang/OTP supervisors: per-worker
policies ``never`` / ``on-failure`` / ``always``, strategies ``one_for_one`` /
``one_for_all`` / ``rest_for_one``, exponential backoff reset after a stable
period, and a restart intensity beyond which the server gives up.

One look at the workers is :meth:`Supervisor.look`, a step that never
blocks; the server's monitor thread is a thin loop around it, and so is the
loop of :class:`~spoc.workers.patterns.HealthMonitor`, which supervises
workers without a server.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

from ._backoff import Backoff
from ._errors import WorkerHungError
from ._events import RestartReason, Strategy, WorkerEvent
from ._intensity import RestartIntensity
from ._process import wait_for_change
from ._signals import WakeupPipe
from ._state import TERMINAL_STATES, WorkerState
from ._supervised import Supervised, describe_outcome, outcome_of, should_restart

__all__ = ["Control", "Supervisor"]

logger = logging.getLogger("spoc.workers.server")

LEAVING_POLL = 0.005
"""Seconds between looks at a worker that has ended but not yet left its thread or process,
while its restart is due (its leaving wakes nobody for sure)."""

Control = Literal["restart", "stop"]
"""What an operator may ask of one worker (:meth:`Supervisor.request`)."""


class Supervisor:
    """The restart logic of one server, and the monitor thread that runs it.

    A server calls :meth:`ensure_running` and :meth:`poke`; a worker that
    supervises others itself (a ``HealthMonitor``) calls :meth:`look` in its
    own loop instead, and waits on :meth:`worker_waitables`.

    Args:
        server_name: the name in events (``WorkerEvent.server``).
        records: returns the supervised workers, in the order they were added.
        emit: receives every :class:`WorkerEvent` (restart, hung, gave_up).
        on_give_up: called once the restart intensity is exceeded.
        on_change: called after each look of the monitor thread.
        strategy, max_restarts, restart_window, backoff, stable_after: see
            :class:`~spoc.workers.Server`; ``max_restarts=None`` never gives up.
        respect_stop: leave alone a worker whose own ``stop()`` was called
            for the run that ended (a monitor's "stopped on purpose"); a
            server restarts an ``"always"`` worker whatever stopped it.
        label: who supervises, at the start of log lines (default ``server 'name'``).
    """

    def __init__(
        self,
        server_name: str,
        records: Callable[[], list[Supervised]],
        emit: Callable[[WorkerEvent], None],
        on_give_up: Callable[[], None],
        on_change: Callable[[], None],
        *,
        strategy: Strategy,
        max_restarts: int | None,
        restart_window: float,
        backoff: Backoff,
        stable_after: float,
        respect_stop: bool = False,
        label: str | None = None,
    ) -> None:
        self.server_name = server_name
        self.label = label if label is not None else f"server {server_name!r}"
        self.respect_stop = respect_stop
        self._records = records
        self._emit = emit
        self._on_give_up = on_give_up
        self._on_change = on_change
        self.strategy = strategy
        self.intensity = RestartIntensity(max_restarts, restart_window)
        self.backoff = backoff
        self.stable_after = stable_after
        self.gave_up = False
        self.stopping = False
        self.failed: BaseException | None = None  # what ended the monitor thread by surprise
        self._wakeup = WakeupPipe()
        self._thread: threading.Thread | None = None
        self._active = False  # a monitor thread runs and has not decided to leave
        self._lock = threading.Lock()
        self._requests: deque[tuple[Supervised, Control]] = deque()
        self._rounds = 0  # looks the monitor thread has begun
        self._decided = 0  # the last look after which it decided to wait, or to leave
        self._round_done = threading.Condition()

    # -- control (any thread) --------------------------------------------------

    def reset(self) -> None:
        """Start afresh (the server starts again): forget past restarts and giving up."""
        self.gave_up = False
        self.stopping = False
        self.intensity.reset()

    def poke(self) -> None:
        """Make the monitor look again now (safe from a signal handler)."""
        self._wakeup.wake()

    def request(self, record: Supervised, action: Control) -> None:
        """Have the monitor thread restart or stop ``record``'s worker (an operator's request).

        Neither counts toward the restart intensity; ``"stop"`` holds the
        worker (no restart by its policy) until a ``"restart"``.
        """
        self._requests.append((record, action))
        self.ensure_running()

    def ping(self, timeout: float) -> float | None:
        """Wake the monitor thread and wait until it begins a new look.

        Returns:
            the seconds it took, or None when no answer came within
            ``timeout`` (or no monitor thread runs: see :attr:`active`).
        """
        begun = time.monotonic()
        with self._round_done:
            target = self._rounds + 1
            self.poke()
            answered = self._round_done.wait_for(lambda: self._rounds >= target, timeout)
        return time.monotonic() - begun if answered else None

    @property
    def active(self) -> bool:
        """Whether a monitor thread runs (it leaves when nothing can happen until a start)."""
        with self._lock:
            return self._active

    def ensure_running(self) -> None:
        """Start the monitor thread unless it runs."""
        with self._lock:
            if self._active:
                self.poke()
                return
            self._active = True
            self._thread = threading.Thread(
                target=self._loop, name=f"{self.server_name}:supervisor", daemon=True
            )
            self._thread.start()

    def join(self, timeout: float | None) -> None:
        """Wait for the monitor thread to end (after ``stopping`` was set)."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            self.poke()
            thread.join(timeout)

    def join_when_settled(self, timeout: float) -> None:
        """After every worker ended: wait for a look that saw it; join the thread if it then left.

        So a server whose workers all ended by themselves is joined with its
        monitor thread (and the wake-up pipe it waits on). A restart still due
        keeps the thread, and this returns after that one look.
        """
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return
        deadline = time.monotonic() + timeout
        with self._round_done:
            begun = self._rounds
            self.poke()
            # Decided after a look begun after the poke, or leaving already (it then notifies no more).
            self._round_done.wait_for(lambda: self._decided > begun or not self._active, timeout)
        if not self.active:
            thread.join(max(0.0, deadline - time.monotonic()))

    def settled(self) -> bool:
        """True when every worker has ended and no restart is pending."""
        return all(record.settled() for record in self._records())

    # -- the monitor thread ---------------------------------------------------------

    def _may_leave(self, records: list[Supervised]) -> bool:
        """Decide, under the lock, whether the monitor thread ends now.

        It ends when the server stops or nothing can happen until something is
        started again; ``ensure_running`` takes the same lock, so a worker
        added at that moment gets a fresh monitor thread, never a leaving one.
        """
        with self._lock:
            if self.stopping or all(record.settled() for record in records):
                self._active = False
                return True
            return False

    def _decided_after(self, this_round: int) -> None:
        with self._round_done:
            self._decided = this_round
            self._round_done.notify_all()

    def _loop(self) -> None:
        # The self-pipe is open only while this thread may wait on it.
        with self._wakeup.held():
            try:
                self._watch()
            except Exception as exc:  # a bug here must not go unnoticed
                with self._lock:
                    self._active = False
                    self.failed = exc
                logger.exception("%s: the supervisor failed", self.label)
                raise

    def look(self) -> float | None:
        """One look at every worker: deal with the runs that ended, start the restarts due,
        declare the silent workers hung. Never blocks.

        Returns:
            the next moment (``time.monotonic()``) worth a look even if
            nothing changes, or None when only a change is.
        """
        now = time.monotonic()
        records = self._records()
        for record in records:
            self._check_end(record, now)
        if self.stopping:  # re-read: another thread may have set it meanwhile
            self._requests.clear()
            return None
        self._apply_requests(now)
        self._start_due(records, now)
        return _sooner(self._check_liveness(records, now), self._check_recycles(records, now))

    def worker_waitables(self) -> list[Any]:
        """What to wait on to see a worker change (process workers' pipes and sentinels)."""
        waitables: list[Any] = []
        for record in self._records():
            waitables += record.worker.supervision.waitables()
        return waitables

    def _watch(self) -> None:
        while True:
            with self._round_done:
                self._rounds += 1
                this_round = self._rounds
                self._round_done.notify_all()
            deadline = self.look()
            if self.stopping:
                if self._may_leave(self._records()):
                    self._decided_after(this_round)
                    return
                continue  # a start() cleared it meanwhile: look again
            self._on_change()  # whoever waits for the server to settle looks again
            leaving = self._may_leave(self._records())
            self._decided_after(this_round)
            if leaving:
                return
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            wait_for_change([self._wakeup, *self.worker_waitables()], timeout)
            self._wakeup.drain()

    def _check_end(self, record: Supervised, now: float) -> None:
        worker = record.worker
        state = worker.state
        run = worker.supervision.run
        if state not in TERMINAL_STATES or record.handled_run == run:
            return
        record.ended_state, record.ended_exception = state, worker.exception
        try:
            self._ended(record, state, now)
        finally:
            # Marked handled only once any restart is scheduled: until then the
            # server does not count as settled (run_forever must not return).
            record.handled_run = run
            if record.restart_at is None:
                record.declared_hung = False

    def _ended(self, record: Supervised, state: WorkerState, now: float) -> None:
        worker = record.worker
        record.kill_at = None
        outcome = outcome_of(worker)
        if state is WorkerState.FAILED:
            record.last_error = describe_outcome(outcome)
        if self.stopping or record.stop_intended or self.stopped_on_purpose(record):
            return
        if record.held or not should_restart(record.restart, state):
            return
        reason: RestartReason = (
            "hang"
            if isinstance(worker.exception, WorkerHungError)
            else "crash"
            if state is WorkerState.FAILED
            else "exit"
        )
        if record.running_since is not None and now - record.running_since >= self.stable_after:
            record.attempt = 0  # it was stable: the backoff starts over
        if self.intensity.exceeded(now):
            self._give_up(record)
            return
        delay = self.backoff.delay(record.attempt)
        record.attempt += 1
        for member in self._group(record):
            if member is not record and member.worker.state not in TERMINAL_STATES:
                member.stop_intended = True
                member.worker.stop()
            if member is not record and (member.restart == "never" or member.held):
                continue  # OTP: a temporary worker goes down with its group, for good
            self._schedule(
                member,
                now,
                delay,
                reason=reason if member is record else "group",
                why=f"({describe_outcome(outcome)})" if member is record else f"with {worker.name!r}",
                outcome=outcome if member is record else None,
            )

    def _schedule(
        self,
        record: Supervised,
        now: float,
        delay: float,
        *,
        reason: RestartReason,
        why: str,
        outcome: dict[str, Any] | None = None,
        level: int = logging.INFO,
    ) -> None:
        """Restart ``record``'s worker ``delay`` seconds after ``now`` (once it has ended), and say so."""
        record.restart_at = now + delay
        record.restart_delay = delay
        record.restart_reason = reason
        message = f"worker {record.worker.name!r} restarts in {delay:.3f}s {why}"
        logger.log(
            level,
            "%s: %s",
            self.label,
            message,
            extra={
                "spoc_server": self.server_name,
                "spoc_worker": record.worker.name,
                "spoc_reason": reason,
                "spoc_restarts": record.restarts,
                "spoc_delay": round(delay, 3),
            },
        )
        self._emit(
            WorkerEvent(
                kind="restart",
                server=self.server_name,
                worker=record.worker.name,
                state=record.worker.state,
                restarts=record.restarts,
                delay=delay,
                reason=reason,
                message=message,
                **(outcome or {}),
            )
        )

    def _apply_requests(self, now: float) -> None:
        """Carry out the operators' requests (see :meth:`request`), oldest first."""
        while self._requests:
            record, action = self._requests.popleft()
            worker = record.worker
            running = worker.state not in TERMINAL_STATES
            if running:
                record.stop_intended = True
            # The record is set before the stop: whoever sees the worker stopped sees why.
            # An operator's act: logged at WARNING, shown at the default levels.
            if action == "restart":
                record.held = False
                self._schedule(record, now, 0.0, reason="manual", why="(on request)", level=logging.WARNING)
            else:
                record.held = True
                record.restart_at = None
                record.restart_reason = None
            if running:
                worker.stop()
            if action == "stop":
                message = f"worker {worker.name!r} stopped on request; it is not restarted until asked"
                logger.warning(
                    "%s: %s",
                    self.label,
                    message,
                    extra={
                        "spoc_server": self.server_name,
                        "spoc_worker": worker.name,
                        "spoc_reason": "manual",
                    },
                )
                self._emit(self._event("stop", record, None, message, reason="manual"))

    def _recycle(self, record: Supervised, why: str, now: float) -> None:
        """Stop the worker gracefully and start it again at once: a ``"recycled"`` event."""
        worker = record.worker
        message = f"worker {worker.name!r} is recycled: {why}"
        logger.info(
            "%s: %s",
            self.label,
            message,
            extra={"spoc_server": self.server_name, "spoc_worker": worker.name, "spoc_reason": "recycle"},
        )
        self._emit(self._event("recycled", record, None, message, reason="recycle"))
        record.stop_intended = True
        self._schedule(record, now, 0.0, reason="recycle", why=f"(recycled: {why})")
        worker.stop()

    def _check_recycles(self, records: list[Supervised], now: float) -> float | None:
        """Recycle the runs that reached a limit; return the next moment worth a look."""
        deadline: float | None = None
        for record in records:
            watch = record.recycle
            if watch is None or not watch.watches(record.worker):
                continue
            why = watch.check(record.worker, now)
            if why is not None:
                self._recycle(record, why, now)
            else:
                deadline = _sooner(deadline, watch.next_moment())
        return deadline

    def _group(self, failed: Supervised) -> list[Supervised]:
        """The records stopped and restarted with ``failed``: itself and, per strategy,
        the others still running."""
        if self.strategy == "one_for_one":
            return [failed]
        records = self._records()
        if self.strategy == "rest_for_one":
            records = records[records.index(failed) :]
        return [r for r in records if r is failed or r.worker.state not in TERMINAL_STATES]

    def _start_due(self, records: list[Supervised], now: float) -> None:
        for record in records:  # in the order the workers were added
            if record.restart_at is None or record.restart_at > now:
                continue
            worker = record.worker
            if not record.stop_intended and (
                worker.state not in TERMINAL_STATES or self.stopped_on_purpose(record)
            ):
                record.restart_at = None  # started again by someone else, or stopped since: not due
                record.declared_hung = False
                continue
            if worker.is_alive():
                continue  # its last run is still leaving its thread or process
            record.stop_intended = False
            record.declared_hung = False
            record.running_since = None
            record.restarts += 1
            reason = record.restart_reason or "crash"
            record.reasons[reason] = record.reasons.get(reason, 0) + 1
            record.restart_reason = None
            try:
                record.worker.start()
            except Exception as exc:
                record.last_error = f"restart failed: {exc!r}"
                logger.exception("%s: restarting %r failed", self.label, record.worker.name)
                record.restart_at = None
                self._give_up(record, f"worker {record.worker.name!r} could not be restarted ({exc!r})")
                return
            record.restart_at = None  # only now: the new run keeps the server from settling
            if self.stopping:
                # The server began to stop while this restart was under way; its stop()
                # sets the flag before it stops each worker, so either it stopped this
                # new run or this check sees the flag. Either way, the run stops.
                record.worker.stop()

    def _check_liveness(self, records: list[Supervised], now: float) -> float | None:
        """Declare silent workers hung; return the next moment worth a look."""
        deadline: float | None = None

        def sooner(moment: float) -> None:
            nonlocal deadline
            deadline = moment if deadline is None else min(deadline, moment)

        for record in records:
            worker = record.worker
            # A restart due of a worker still running (a group restart, a recycle)
            # waits for its end, which wakes us. Ended but not yet gone from its
            # thread or process: look again soon.
            if record.restart_at is not None and worker.state in TERMINAL_STATES:
                alive = worker.is_alive()
                sooner(max(record.restart_at, now + LEAVING_POLL) if alive else record.restart_at)
            if record.kill_at is not None:
                if record.kill_at <= now and worker.is_alive():
                    logger.warning("%s: killing hung worker %r", self.label, worker.name)
                    worker.supervision.kill()
                    record.kill_at = None
                elif record.kill_at > now:
                    sooner(record.kill_at)
            timeout = record.heartbeat_timeout
            run = worker.supervision.run
            if timeout is None or record.hung_run == run or worker.state is not WorkerState.RUNNING:
                continue
            silent = worker.supervision.silent_for(now)
            if silent > timeout:
                record.hung_run = run
                self._hung(record, silent)
                if record.kill_at is not None:  # the kill is due even if nothing else happens
                    sooner(record.kill_at)
            else:
                sooner(now + timeout - silent)
        return deadline

    def _hung(self, record: Supervised, silent: float) -> None:
        worker = record.worker
        message = f"worker {worker.name!r} is hung: no heartbeat for {silent:.2f}s"
        error = WorkerHungError(message, silent)
        record.last_error = message
        record.declared_hung = True
        stack = worker.supervision.stack()
        if stack is not None:
            logger.error("%s: %s; its stack:\n%s", self.label, message, stack)
        else:
            logger.error("%s: %s; asking for its stacks, then terminating it", self.label, message)
        self._emit(self._event("hung", record, error, message))
        kill_after = worker.supervision.declare_hung(error)
        if kill_after is not None:
            record.kill_at = time.monotonic() + kill_after

    def stopped_on_purpose(self, record: Supervised) -> bool:
        """With ``respect_stop``: someone called the worker's ``stop()`` (a hung thread's run
        abandoned by the supervisor was told to stop too, but it crashed)."""
        return self.respect_stop and not record.declared_hung and record.worker.supervision.stop_requested

    def _give_up(self, record: Supervised, reason: str | None = None) -> None:
        if self.gave_up:
            return
        self.gave_up = True
        if reason is None:
            reason = f"{self.intensity} (last: worker {record.worker.name!r}, {record.last_error})"
        message = f"{reason}; giving up and stopping"
        logger.error("%s: %s", self.label, message)
        self._emit(self._event("gave_up", record, record.worker.exception, message))
        self._on_give_up()

    def _event(
        self,
        kind: str,
        record: Supervised,
        exc: BaseException | None,
        message: str,
        reason: RestartReason | None = None,
    ) -> WorkerEvent:
        return WorkerEvent(
            kind=kind,
            server=self.server_name,
            worker=record.worker.name,
            state=record.worker.state,
            exception=exc,
            restarts=record.restarts,
            reason=reason,
            message=message,
        )


def _sooner(first: float | None, second: float | None) -> float | None:
    """The earlier of two moments, either of which may be None (no moment)."""
    if first is None:
        return second
    if second is None:
        return first
    return min(first, second)
