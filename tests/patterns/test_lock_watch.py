"""A reader of a multiprocessing queue whose read lock a killed process left taken says so.

CPython's ``multiprocessing.Queue`` cannot recover from a reader SIGKILLed
while it holds the queue's read lock: the other readers then wait forever
with the items in the queue. Before, a job processor waited there in
silence; now it logs, once, what happened and what to use instead.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import signal
from typing import Any

import pytest

import patterns_targets as pt
from spoc.workers.patterns import JobProcessor, _lock_watch
from targets import wait_for


class _Jobs(JobProcessor):
    def process_job(self, job: Any) -> None:
        pass


def test_a_read_lock_left_taken_by_a_killed_reader_is_reported(
    start_method: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_lock_watch, "STUCK_READ_LOCK", 0.3)
    context = multiprocessing.get_context(start_method)
    jobs = context.Queue()
    holder = context.Process(target=pt.take_read_lock_then_die, args=(jobs,))
    holder.start()
    holder.join(60)
    assert holder.exitcode == -signal.SIGKILL
    jobs.put(1)
    worker = _Jobs("jobs", job_queue=jobs)
    caplog.set_level(logging.ERROR, logger="spoc.workers.patterns")
    worker.start()
    try:

        def reports() -> list[str]:
            return [r.getMessage() for r in caplog.records if "read lock stayed taken" in r.getMessage()]

        wait_for(reports, timeout=30)
    finally:
        worker.stop()
        worker.join(10)
        pt.close_queue(jobs)
    found = reports()
    assert len(found) == 1, found
    assert "_Jobs 'jobs'" in found[0] and "SIGKILL" in found[0] and "RedisStream" in found[0]
    assert worker.stats.processed == 0


@pytest.mark.no_processes
def test_the_watch_reports_once_and_only_after_the_lock_stayed_taken(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    now = [100.0]
    monkeypatch.setattr(_lock_watch.time, "monotonic", lambda: now[0])
    caplog.set_level(logging.ERROR, logger="spoc.workers.patterns")
    worker = _Jobs("jobs", job_queue=queue.Queue())
    watch = _lock_watch.ReadLockWatch()
    for step in (0.0, 5.0, 9.9):  # under STUCK_READ_LOCK (10 s) since the first miss
        now[0] = 100.0 + step
        watch.missed(worker)
    watch.took()  # an item came: the count starts again
    for step in (10.0, 19.0):
        now[0] = 100.0 + step
        watch.missed(worker)
    assert caplog.records == []
    for step in (20.0, 30.0, 40.0):
        now[0] = 100.0 + step
        watch.missed(worker)
    assert len(caplog.records) == 1 and "for 10s" in caplog.records[0].getMessage()
