"""A pipeline's state, the moves allowed between states, and the latch a stage failure trips.

``NEW → OPEN → CLOSING → ENDING → FINISHED``: started, input closed (by
:meth:`Pipeline.close` or :meth:`Pipeline.stop`), the end marker is in, every
worker has ended. A stage worker that fails moves any state before the end
to ``FAILING`` (the pipeline stops, every wait for a result ends), which
ends ``FAILED``. ``stop()`` before ``start()`` moves ``NEW`` to ``SHUT``:
the input stays refused once started (``SHUT → CLOSING``).
"""

from __future__ import annotations

import threading
from enum import Enum

from ._hops import Hop

__all__ = ["PipelineState", "PipelineStatus"]


class PipelineState(str, Enum):
    """Where a pipeline is in its one run; the value is a plain string."""

    NEW = "new"
    """Built: stages may be added; feeds wait for ``start()``."""
    SHUT = "shut"
    """``stop()`` came before ``start()``: once started, the input is refused."""
    OPEN = "open"
    """Started: ``put()`` and feeds are accepted."""
    CLOSING = "closing"
    """Input refused (``close()`` or ``stop()`` began); the end marker is not in yet."""
    ENDING = "ending"
    """The end marker is in: the stages end by themselves."""
    FAILING = "failing"
    """A stage worker failed: every worker is being stopped, no result will come any more."""
    FINISHED = "finished"
    """Every worker has ended; the queues are emptied and this process's handles closed."""
    FAILED = "failed"
    """Finished after a stage worker failed."""

    def __str__(self) -> str:
        return self.value


_S = PipelineState
_ALLOWED: dict[PipelineState, frozenset[PipelineState]] = {
    _S.NEW: frozenset({_S.OPEN, _S.SHUT, _S.FAILING}),  # FAILING: a worker failed during start()
    _S.SHUT: frozenset({_S.CLOSING, _S.FAILING}),
    _S.OPEN: frozenset({_S.CLOSING, _S.FAILING, _S.FINISHED}),  # FINISHED: its workers were stopped
    _S.CLOSING: frozenset({_S.ENDING, _S.FAILING, _S.FINISHED}),  # FINISHED: forced past the budget
    _S.ENDING: frozenset({_S.FAILING, _S.FINISHED}),
    _S.FAILING: frozenset({_S.FAILED}),
    _S.FINISHED: frozenset(),
    _S.FAILED: frozenset(),
}
_UNSTARTED = frozenset({_S.NEW, _S.SHUT})
_FAILED = frozenset({_S.FAILING, _S.FAILED})
_ENDED = frozenset({_S.FINISHED, _S.FAILED})


class PipelineStatus:
    """A pipeline's :class:`PipelineState`, its failed stage workers, and the wake-up of its result
    waiters when one fails.

    Its lock guards the state and the failed workers only; it is never held
    while calling out (the server's listener, any thread, takes it), so it
    nests inside the pipeline's own locks.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.state = PipelineState.NEW
        self.failed_workers: list[str] = []
        self._final: Hop | None = None  # the results hop, whose waiters a failure wakes

    # -- reading: no lock (one attribute read); methods, which a type checker does not narrow

    def started(self) -> bool:
        """``start()`` has run (or a worker failed while it ran)."""
        return self.state not in _UNSTARTED

    def accepting(self) -> bool:
        """``put()`` and feeds may put items in."""
        return self.state is PipelineState.OPEN

    def failed(self) -> bool:
        """A stage worker failed (the pipeline stops, or has stopped)."""
        return self.state in _FAILED

    def ended(self) -> bool:
        """Every worker has ended and the queues are emptied."""
        return self.state in _ENDED

    # -- moving ------------------------------------------------------------------------

    def move(self, new: PipelineState, *, only_from: frozenset[PipelineState] | None = None) -> bool:
        """Move to ``new``; with ``only_from``, only from one of those states (else nothing, False).

        Raises:
            RuntimeError: the move is not in the table (a bug of the pipeline).
        """
        with self._lock:
            if only_from is not None and self.state not in only_from:
                return False
            self._set(new)
            return True

    def refuse_input(self) -> None:
        """Close the input, unless it is closed already: ``OPEN → CLOSING``, ``NEW → SHUT``."""
        with self._lock:
            if self.state is PipelineState.OPEN:
                self._set(PipelineState.CLOSING)
            elif self.state is PipelineState.NEW:
                self._set(PipelineState.SHUT)

    def worker_failed(self, name: str) -> bool:
        """Record that stage worker ``name`` failed: ``→ FAILING``. False when it was recorded
        already, or the pipeline has ended (nothing to stop)."""
        with self._lock:
            if self.state in _ENDED or name in self.failed_workers:
                return False
            self.failed_workers.append(name)
            self._set(PipelineState.FAILING)
            return True

    def finished(self) -> None:
        """Every worker has ended and the queues are emptied: ``→ FINISHED`` or ``FAILED``."""
        with self._lock:
            self._set(PipelineState.FAILED if self.state in _FAILED else PipelineState.FINISHED)

    def _set(self, new: PipelineState) -> None:
        """Move to ``new`` (the caller holds the lock), or raise ``RuntimeError`` if the table forbids it."""
        old = self.state
        if new is not old and new not in _ALLOWED[old]:
            raise RuntimeError(f"illegal pipeline state change {old.value} -> {new.value}")
        self.state = new

    # -- the result waiters' wake-up ------------------------------------------------------

    def arm(self, final: Hop) -> None:
        """Wake the waiters for a result on ``final`` (the results hop) on a failure."""
        self._final = final

    def wake(self) -> None:
        """Cut short every wait for a result: no more will come through the stages."""
        final = self._final  # None once a concurrent disarm() ran
        if final is not None:
            final.wake()

    def disarm(self) -> None:
        """Forget the results hop (the pipeline has finished, or did not start)."""
        self._final = None
