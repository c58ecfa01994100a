"""Heartbeats: when a worker last showed it was alive, readable from the parent.

A worker is alive while it calls ``heartbeat()`` often enough *or* sits in one
of the framework's waits (``sleep``, ``asleep``, ``wait_readable``). Thread
workers keep this in plain attributes; process workers in two shared-memory
values the parent reads without asking the child anything.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["Liveness"]


class _Cell:
    """Stands in for ``multiprocessing.RawValue`` in a thread worker."""

    __slots__ = ("value",)

    def __init__(self, value: float) -> None:
        self.value = value


class Liveness:
    """The last heartbeat (``time.monotonic()``, system-wide on Linux) and the wait depth."""

    __slots__ = ("_beat", "_waits")

    def __init__(self, context: Any = None) -> None:
        now = time.monotonic()
        if context is None:
            self._beat: Any = _Cell(now)
            self._waits: Any = _Cell(0)
        else:  # lock-free shared memory: one writer (the child), one reader (the parent)
            self._beat = context.RawValue("d", now)
            self._waits = context.RawValue("i", 0)

    def beat(self) -> None:
        """Record a sign of life now."""
        self._beat.value = time.monotonic()

    def enter_wait(self) -> None:
        """The worker entered a framework wait: alive for as long as it waits."""
        self._waits.value += 1

    def leave_wait(self) -> None:
        """The worker left a framework wait (which counts as a heartbeat)."""
        self._waits.value = max(0, self._waits.value - 1)
        self.beat()

    @property
    def last_beat(self) -> float:
        """``time.monotonic()`` of the last heartbeat."""
        return float(self._beat.value)

    @property
    def waiting(self) -> bool:
        """True while the worker sits in a framework wait."""
        return bool(self._waits.value > 0)

    def silent_for(self, now: float | None = None) -> float:
        """Seconds since the last sign of life (0 while waiting in the framework)."""
        if self.waiting:
            return 0.0
        return max(0.0, (time.monotonic() if now is None else now) - self.last_beat)
