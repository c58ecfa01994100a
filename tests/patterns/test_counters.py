"""The counters a parent reads of a process worker: shared memory under a sequence lock.

A process stage or job processor can be SIGKILLed in the middle of a write
to its counters. Before, that left the sequence number odd for good, and
every later read in the parent (``worker.stats``, the pipeline's end) waited
forever: CI saw a pipeline's ``stop()`` hang after its stage was killed.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from typing import Any

import patterns_targets as pt
from spoc.workers.patterns._support import STALLED_WRITE, Counters


def _snapshot_within(counters: Counters, seconds: float) -> tuple[dict[str, float] | None, float]:
    """``counters.snapshot()`` in a thread: (its values or None if still waiting, seconds taken)."""
    read: dict[str, Any] = {}
    reader = threading.Thread(target=lambda: read.update(counters.snapshot()), daemon=True)
    began = time.monotonic()
    reader.start()
    reader.join(seconds)
    return (None if reader.is_alive() else read), time.monotonic() - began


def test_a_writer_killed_in_the_middle_of_a_write_does_not_hang_its_readers(start_method: str) -> None:
    context = multiprocessing.get_context(start_method)
    counters = Counters(("done", "failed"), context)
    writer = context.Process(target=pt.write_counters_then_die, args=(counters,))
    writer.start()
    writer.join(60)
    assert writer.exitcode == -signal.SIGKILL
    values, _ = _snapshot_within(counters, STALLED_WRITE + 30)
    assert values == {"done": 3.0, "failed": 0.0}, "snapshot() waited on the killed writer's write"
    again, took = _snapshot_within(counters, 30)
    assert again == values and took < STALLED_WRITE / 2, "each read waited anew on the same write"
    # The next writer (the worker's next run) steps past the unfinished write: no more waits.
    writer = context.Process(target=pt.write_counters, args=(counters,))
    writer.start()
    writer.join(60)
    assert writer.exitcode == 0
    after, took = _snapshot_within(counters, 30)
    assert after == {"done": 5.0, "failed": 0.0} and took < STALLED_WRITE / 2
