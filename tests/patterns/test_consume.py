"""The one consume loop: what each worker tells a job source about the items it took.

A job source (anything with ``spoc_reader()``, such as a Redis stream) hears
``done(error)`` per job from a job processor, which leaves a failed job to be
delivered again; a stage worker makes a failed item a dead letter, so to the
source every item it took is simply done (``task_done()``).
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest

import patterns_targets as pt
from spoc.workers.patterns._queues import ThreadQueueReader

pytestmark = pytest.mark.no_processes


class _RecordingReader(ThreadQueueReader):
    """A queue's reader that notes each ``done(error)`` and ``task_done()`` it is told."""

    def __init__(self, q: Any, log: list[Any]) -> None:
        super().__init__(q)
        self.log = log

    def done(self, error: BaseException | None) -> None:
        self.log.append("done" if error is None else "failed")
        super().done(error)

    def task_done(self) -> None:
        self.log.append("task_done")
        super().task_done()


class _Source(queue.Queue):  # type: ignore[type-arg]
    """A job source made of a queue: its reader records what the consumer says."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[Any] = []

    def spoc_reader(self) -> _RecordingReader:
        return _RecordingReader(self, self.log)


def test_a_job_processor_leaves_a_failed_job_to_its_source() -> None:
    source = _Source()
    for job in (1, 4):  # 4 fails
        source.put(job)
    worker = pt.MeteredJobs("jobs", source)
    worker.start()
    try:
        source.join()
    finally:
        worker.stop()
        worker.join(10)
    assert source.log == ["done", "task_done", "failed", "task_done"]


def test_a_stage_worker_tells_its_source_every_item_is_done_even_a_failed_one() -> None:
    source, results = _Source(), queue.Queue()  # type: ignore[var-annotated]
    for item in (2, 4):  # 4 fails: a dead letter, done for the source
        source.put(item)
    worker = pt.MeteredStage("stage", source, results)
    worker.start()
    try:
        source.join()
    finally:
        worker.stop()
        worker.join(10)
    assert source.log == ["task_done", "task_done"]
    assert results.get_nowait() == 2 and worker.stats.failed == 1


def test_a_plain_queues_task_done_as_its_reader_makes_it_keeps_queue_semantics() -> None:
    """For a plain ``queue.Queue`` the reader does ``task_done()``'s work itself (a hot path):
    ``join()`` still waits for the last one, and one too many is still a ValueError."""
    q: queue.Queue[int] = queue.Queue()
    reader = ThreadQueueReader(q)
    q.put(1)
    q.put(2)
    reader.task_done()
    assert q.unfinished_tasks == 1
    joined = threading.Thread(target=q.join)
    joined.start()
    joined.join(0.05)
    assert joined.is_alive()  # one task is still open
    reader.done(None)
    joined.join(10)
    assert not joined.is_alive() and q.unfinished_tasks == 0
    with pytest.raises(ValueError, match="too many times"):
        reader.task_done()


def test_a_queue_subclass_with_its_own_task_done_is_called_as_it_is() -> None:
    calls: list[str] = []

    class Counted(queue.Queue):  # type: ignore[type-arg]
        def task_done(self) -> None:
            calls.append("task_done")
            super().task_done()

    q = Counted()
    q.put(1)
    ThreadQueueReader(q).done(None)
    assert calls == ["task_done"] and q.unfinished_tasks == 0
