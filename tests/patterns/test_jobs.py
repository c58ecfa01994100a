"""JobProcessor and ProcessJobProcessor: stop-aware waits, task_done always, errors with the job.

The guide's pattern 1 runs as written except for the base class (the real
``JobProcessor``) and ``process_job``'s sleep; process variants consume a
``multiprocessing.JoinableQueue`` made from this run's start method.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import threading
import time
from typing import Any

import pytest

import patterns_targets as pt
from spoc.workers import Server, WorkerState
from spoc.workers.patterns import JobProcessor, JobStats, ProcessJobProcessor

JOIN = 15.0


def stop_all(*workers: Any) -> None:
    for worker in workers:
        worker.stop()
    for worker in workers:
        worker.join(JOIN)


def test_the_guides_pattern_1_completes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pattern 1 of the Workers guide, with the real JobProcessor as its base.

    ``start(); job_queue.join(); stop(); join_all()`` completes, every job
    processed once, and the workers stop at once (no 1 s ``get`` timeout).
    """
    printed: list[str] = []
    lock = threading.Lock()

    def record(*args: Any, **kwargs: Any) -> None:
        with lock:
            printed.append(" ".join(map(str, args)))

    monkeypatch.setattr("builtins.print", record)

    class GuideJobProcessor(JobProcessor):
        """Process jobs from a shared queue."""

        def process_job(self, job):  # type: ignore[no-untyped-def]
            """Process a single job."""
            print(f"{self.name} processing: {job}")
            time.sleep(0.05)  # Simulate work (the guide: 0.5)

    # Create shared queue
    job_queue: queue.Queue[str] = queue.Queue()

    # Create server with multiple workers
    server = Server(name="JobServer")
    server.add_worker(GuideJobProcessor("Worker-1", job_queue))
    server.add_worker(GuideJobProcessor("Worker-2", job_queue))

    # Add jobs
    for i in range(10):
        job_queue.put(f"Job-{i}")

    # Process jobs
    try:
        server.start()
        job_queue.join()  # Wait for all jobs to complete
    finally:
        asked = time.monotonic()
        server.stop()
        still_alive = server.join_all()
        took = time.monotonic() - asked
    assert still_alive == []
    assert took < 1.0
    assert sorted(line.split(": ")[1] for line in printed) == sorted(f"Job-{i}" for i in range(10))
    workers: list[Any] = list(server.workers)
    assert sum(w.stats.processed for w in workers) == 10
    assert all(w.state is WorkerState.STOPPED for w in workers)


def test_an_idle_thread_processor_stops_in_milliseconds() -> None:
    jobs: queue.Queue[int] = queue.Queue()
    worker = pt.ListJobs("idle", jobs, [])
    worker.start()
    try:
        pt.wait_for(lambda: worker.state is WorkerState.RUNNING, JOIN)
        time.sleep(0.05)  # settle into the wait on the empty queue
        asked = time.monotonic()
        worker.stop()
        assert worker.join(JOIN)
        took = time.monotonic() - asked
    finally:
        stop_all(worker)
    assert took < 0.25, f"stop took {took:.3f}s"  # the wait's own bound is 0.1 s; a notify is immediate


def test_every_job_is_processed_once_by_many_thread_processors() -> None:
    jobs: queue.Queue[int] = queue.Queue(maxsize=16)
    seen: list[int] = []
    workers = [pt.ListJobs(f"consumer-{i}", jobs, seen) for i in range(4)]
    for w in workers:
        w.lock = workers[0].lock  # one list, one lock
        w.start()
    try:
        for i in range(2000):
            jobs.put(i)
        jobs.join()
    finally:
        stop_all(*workers)
    assert sorted(seen) == list(range(2000))
    assert sum(w.stats.processed for w in workers) == 2000


def test_a_failing_job_gets_an_error_event_with_the_job_and_task_done() -> None:
    events: list[tuple[str, dict[str, Any]]] = []

    class Picky(JobProcessor):
        def process_job(self, job: str) -> None:
            if job == "bad":
                raise ValueError("cannot do bad")

        def lifecycle(self, event_type: str, **data: Any) -> None:
            events.append((event_type, data))

    jobs: queue.Queue[str] = queue.Queue()
    for job in ("a", "bad", "b"):
        jobs.put(job)
    worker = Picky("picky", jobs)
    worker.start()
    try:
        jobs.join()  # returns: task_done was called for the failed job too
    finally:
        stop_all(worker)
    assert worker.stats == JobStats(processed=2, failed=1)
    errors = [data for event, data in events if event == "error"]
    assert len(errors) == 1
    assert errors[0]["job"] == "bad" and errors[0]["phase"] == "process_job"
    assert str(errors[0]["exception"]) == "cannot do bad"
    assert worker.state is WorkerState.STOPPED


def test_a_stop_finishes_the_job_in_hand_and_leaves_the_rest_queued(start_method: str) -> None:
    context = multiprocessing.get_context(start_method)
    jobs = context.JoinableQueue()
    began, finished = context.Event(), context.Event()
    for i in range(5):
        jobs.put(i)
    worker = pt.SlowJob("slow", jobs, began, finished, work=0.2)
    try:
        worker.start()
        assert began.wait(JOIN)
        worker.stop()
        assert worker.join(JOIN)
        assert finished.is_set()
        assert worker.stats == JobStats(processed=1, failed=0)
        assert worker.state is WorkerState.STOPPED
        assert len(pt.drain(jobs, 0.2)) == 4  # the other jobs stay queued
    finally:
        stop_all(worker)
        pt.close_queue(jobs)


@pytest.mark.parametrize("cls", [pt.RecordingJobs, pt.AsyncRecordingJobs], ids=["sync", "async"])
def test_process_processors_share_a_joinable_queue(cls: type[Any], start_method: str) -> None:
    context = multiprocessing.get_context(start_method)
    jobs, done, events = context.JoinableQueue(), context.Queue(), context.Queue()
    workers = [cls(f"proc-{i}", jobs, done, events, bad=(13,)) for i in range(2)]
    try:
        for w in workers:
            w.start()
        for i in range(40):
            jobs.put(i)
        jobs.join()  # task_done in the children, the failed job included
        results = [done.get(timeout=JOIN) for _ in range(39)]
        assert sorted(job for _, job in results) == [i for i in range(40) if i != 13]
        assert sum(w.stats.processed for w in workers) == 39  # shared memory: the parent sees it
        assert sum(w.stats.failed for w in workers) == 1
        error = next(e for e in iter(lambda: events.get(timeout=JOIN), None) if e[0] == "error")
        assert error == ("error", "process_job", "ValueError('bad job 13')", 13)
        asked = time.monotonic()
        for w in workers:
            w.stop()
        for w in workers:
            assert w.join(JOIN)
        assert time.monotonic() - asked < 1.5  # woken by the stop, not by a poll
        assert all(w.state is WorkerState.STOPPED for w in workers)
    finally:
        stop_all(*workers)
        for q in (jobs, done, events):
            pt.close_queue(q)


def test_an_async_thread_processor_consumes_a_queue_queue() -> None:
    handled: list[int] = []

    class AsyncJobs(JobProcessor):
        async def process_job(self, job: int) -> None:
            await asyncio.sleep(0)
            handled.append(job)

    jobs: queue.Queue[int] = queue.Queue()
    worker = AsyncJobs("async-jobs", jobs)
    worker.start()
    try:
        for i in range(200):
            jobs.put(i)
        jobs.join()
        pt.wait_for(lambda: worker.state is WorkerState.RUNNING, JOIN)
        time.sleep(0.05)
        asked = time.monotonic()
        worker.stop()
        assert worker.join(JOIN)
        assert time.monotonic() - asked < 0.5
    finally:
        stop_all(worker)
    assert handled == list(range(200))
    assert worker.stats.processed == 200


def test_an_awaitable_returned_by_a_def_process_job_runs_on_the_runs_own_loop() -> None:
    """A ``def process_job`` returning a coroutine: on the loop of the run's async ``setup``,
    for every job, not on a loop made and thrown away per job."""
    loops: list[asyncio.AbstractEventLoop] = []

    class Hybrid(JobProcessor):
        async def setup(self) -> None:
            loops.append(asyncio.get_running_loop())

        def process_job(self, job: int) -> Any:
            return self.note_loop()

        async def note_loop(self) -> None:
            loops.append(asyncio.get_running_loop())

    jobs: queue.Queue[int] = queue.Queue()
    worker = Hybrid("hybrid-jobs", jobs)
    worker.start()
    try:
        for i in range(3):
            jobs.put(i)
        jobs.join()
    finally:
        stop_all(worker)
    assert worker.stats == JobStats(processed=3, failed=0)
    assert len(loops) == 4 and all(loop is loops[0] for loop in loops), loops


def test_a_process_processor_refuses_a_queue_queue() -> None:
    jobs: queue.Queue[int] = queue.Queue()
    with pytest.raises(TypeError) as raised:
        pt.RecordingJobs("wrong", jobs, None, None)
    message = str(raised.value)
    assert "RecordingJobs 'wrong'" in message
    assert "queue.Queue" in message
    assert "multiprocessing" in message


def test_a_process_processor_refuses_an_asyncio_queue_in_good_english() -> None:
    with pytest.raises(TypeError, match=r"is an asyncio\.queues\.Queue, which lives in one process"):
        pt.RecordingJobs("wrong", asyncio.Queue(), None, None)


def test_something_that_is_no_queue_is_refused_by_name() -> None:
    class Jobs(JobProcessor):
        def process_job(self, job: Any) -> None:
            pass

    with pytest.raises(TypeError, match=r"cannot read from a builtins\.int: expected a queue\.Queue"):
        Jobs("int", 42)


def test_something_that_is_no_queue_is_refused() -> None:
    class Jobs(JobProcessor):
        def process_job(self, job: Any) -> None:
            pass

    with pytest.raises(TypeError, match="cannot read from"):
        Jobs("no-queue", [1, 2, 3])
    with pytest.raises(TypeError, match="process_job"):
        ProcessJobProcessor("abstract", multiprocessing.get_context().Queue())  # type: ignore[abstract]


def test_waiting_on_an_empty_queue_keeps_the_heartbeat_going() -> None:
    """Under a Server's heartbeat_timeout, an idle processor is not "hung"; a silent worker is.

    The silent control worker busy-waits without a heartbeat: once the
    server declared it hung, the processor had as long to be declared hung
    too; a further timeout's worth later it still is not.
    """
    from spoc.workers import ThreadWorker, WorkerEvent

    class Silent(ThreadWorker):
        def main(self) -> None:
            while self.is_running:
                time.sleep(0.01)  # not a framework wait: no sign of life

    hung: queue.Queue[str] = queue.Queue()

    def on_event(event: WorkerEvent) -> None:
        if event.kind == "hung":
            hung.put(event.worker)

    jobs: queue.Queue[int] = queue.Queue()
    server = Server("heartbeats", on_event=on_event)
    idle = server.add_worker(pt.ListJobs("idle", jobs, []), heartbeat_timeout=0.3)
    server.add_worker(Silent("silent"), heartbeat_timeout=0.3)
    try:
        server.start()
        assert hung.get(timeout=JOIN) == "silent"
        time.sleep(0.4)  # one more timeout's worth for the processor
        assert hung.empty()
        assert idle.state is WorkerState.RUNNING
    finally:
        server.stop()
        server.join_all(JOIN)
