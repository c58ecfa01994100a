"""RedisStream as a job source and sink, against a real redis-server."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import patterns_targets as pt
from redis_targets import (
    AsyncCountingProcessor,
    AsyncEventsProcessor,
    CountingProcessor,
    Doubler,
    ProcessCountingProcessor,
    seen,
    seen_key,
)
from spoc.workers import Server, ThreadWorker
from spoc.workers.patterns import JobProcessor
from spoc.workers.redis import RedisStream
from targets import started, wait_for

JOIN = 10.0
WAIT = 20.0


@pytest.fixture
def stream(redis_url: str, stream_name: str) -> Any:
    s = RedisStream(stream_name, url=redis_url, claim_idle=0.3, max_deliveries=3)
    yield s
    s.client().delete(seen_key(s))
    s.delete()
    s.client().close()


@pytest.fixture
def another() -> Iterator[Callable[..., RedisStream]]:
    """Make more RedisStream objects in a test; their clients are closed after it.

    A client left to the garbage collector warns of an unclosed socket.
    """
    made: list[RedisStream] = []

    def make(*args: Any, **kwargs: Any) -> RedisStream:
        made.append(RedisStream(*args, **kwargs))
        return made[-1]

    yield make
    for s in made:
        s.close()


@pytest.mark.no_processes
def test_two_thread_processors_process_every_job_exactly_once(stream: RedisStream) -> None:
    stream.enqueue_many(range(500))
    workers = [CountingProcessor(f"counter-{i}", stream) for i in range(2)]
    for w in workers:
        w.start()
    try:
        wait_for(lambda: len(seen(stream)) == 500 and stream.pending() == 0, WAIT)
    finally:
        for w in workers:
            w.stop()
        for w in workers:
            assert w.join(JOIN)
    assert set(seen(stream).values()) == {1}
    assert sum(w.stats.processed for w in workers) == 500


@pytest.mark.no_processes
def test_an_idle_processor_stops_within_the_block_timeout(stream: RedisStream) -> None:
    worker = CountingProcessor("idle", stream)
    worker.start()

    def reading() -> bool:  # a client blocked in XREADGROUP: the worker, idle on the stream
        return any(
            c.get("cmd") == "xreadgroup" and "b" in c.get("flags", "") for c in stream.client().client_list()
        )

    wait_for(reading, WAIT)
    began = time.monotonic()
    worker.stop()
    assert worker.join(JOIN)
    assert time.monotonic() - began < stream.block + 0.4  # block is 0.1 s


@pytest.mark.no_processes
def test_a_job_that_always_fails_is_dead_lettered_after_max_deliveries(stream: RedisStream) -> None:
    stream.enqueue_many(["ok-1", "bad", "ok-2"])
    worker = CountingProcessor("failing", stream, fail_on="bad")
    with started(worker, timeout=JOIN):
        dead = wait_for(stream.dead_letters, WAIT)
        wait_for(lambda: stream.pending() == 0, WAIT)
    [job] = dead
    assert job.job == "bad" and job.deliveries == stream.max_deliveries and job.fields == {}
    [(_, raw)] = stream.client().xrange(stream.dead_letter_stream)  # the shape of every dead letter
    assert set(raw) == {b"id", b"job", b"error", b"deliveries", b"consumer"}
    assert "ValueError: job 'bad' always fails" in job.error
    assert seen(stream) == {"ok-1": 1, "ok-2": 1, "bad": stream.max_deliveries}
    phases = [data.get("phase") for kind, data in worker.events if kind == "error"]
    assert phases.count("process_job") == stream.max_deliveries and "dead-letter" in phases


def test_dead_jobs_is_the_deprecated_spelling_of_dead_letters(stream: RedisStream) -> None:
    expected = r"RedisStream\.dead_jobs\(\) is deprecated.*dead_letters\(\)"
    with pytest.warns(DeprecationWarning, match=expected):
        assert stream.dead_jobs() == stream.dead_letters() == []


def test_an_async_lifecycle_hears_of_a_dead_letter_on_the_runs_loop(stream: RedisStream) -> None:
    """The reader's error events reach an ``async def lifecycle``, on the loop of the run's
    other async hooks (they used to be skipped, with a warning)."""
    stream.client().xadd(stream.stream, {"not-a-job": "x"})  # no job field: a dead letter at once
    worker = AsyncEventsProcessor("async-events", stream)
    with started(worker, timeout=JOIN):
        wait_for(lambda: [e for e in worker.events if e[1] == "dead-letter"], WAIT)
    [(_, _, loop)] = [e for e in worker.events if e[1] == "dead-letter"]
    assert loop is worker.setup_loops[0]
    assert len(stream.dead_letters()) == 1


def test_process_processors_share_the_stream(stream: RedisStream, start_method: str) -> None:
    stream.enqueue_many(range(300))
    workers = [ProcessCountingProcessor(f"proc-{i}", stream) for i in range(2)]
    for w in workers:
        w.start()
    try:
        wait_for(lambda: len(seen(stream)) == 300 and stream.pending() == 0, timeout=60)
    finally:
        for w in workers:
            w.stop()
        for w in workers:
            assert w.join(JOIN)
    assert set(seen(stream).values()) == {1}
    assert sum(w.stats.processed for w in workers) == 300  # shared-memory counters, read here


@pytest.mark.no_processes
def test_an_async_processor_consumes_the_stream(stream: RedisStream) -> None:
    stream.enqueue_many(range(100))
    worker = AsyncCountingProcessor("async", stream)
    with started(worker, timeout=JOIN):
        wait_for(lambda: len(seen(stream)) == 100 and stream.pending() == 0, WAIT)
    assert set(seen(stream).values()) == {1}


@pytest.mark.no_processes
def test_a_stop_finishes_the_job_in_hand_and_hands_back_the_rest(
    stream: RedisStream, another: Callable[..., RedisStream]
) -> None:
    slow = another(stream.stream, url=stream.url, batch=10, claim_idle=60)
    slow.enqueue_many(range(10))
    worker = CountingProcessor("slow", slow, delay=0.2)
    worker.start()
    assert worker.started.wait(JOIN)
    worker.stop()
    assert worker.join(JOIN)
    assert slow.pending() == 0  # the one in hand acknowledged, the other nine handed back
    assert seen(slow) == {"0": 1}
    # The nine are there for the next worker at once, not after claim_idle (60 s).
    fresh = CountingProcessor("fresh", slow)
    with started(fresh, timeout=JOIN):
        wait_for(lambda: len(seen(slow)) == 10, timeout=10)
    assert set(seen(slow).values()) == {1}


@pytest.mark.no_processes
def test_jobs_of_a_consumer_that_died_are_taken_over(stream: RedisStream) -> None:
    stream.enqueue_many(range(20))
    client = stream.client()
    stream.ensure_group()
    # A consumer that read five jobs and died without acknowledging them.
    client.xreadgroup(stream.group, "dead-consumer", {stream.stream: ">"}, count=5)
    worker = CountingProcessor("survivor", stream)
    with started(worker, timeout=JOIN):
        wait_for(lambda: len(seen(stream)) == 20 and stream.pending() == 0, WAIT)
    assert set(seen(stream).values()) == {1}


@pytest.mark.no_processes
def test_an_unreachable_server_is_reported_once_and_retried_without_a_crash(stream_name: str) -> None:
    unreachable = RedisStream(stream_name, url="redis://127.0.0.1:1/0", connect_timeout=0.2)
    worker = CountingProcessor("offline", unreachable)
    worker.start()
    try:
        wait_for(lambda: any(kind == "error" for kind, _ in worker.events), WAIT)
        time.sleep(0.5)  # several retries
        assert worker.is_alive()
    finally:
        began = time.monotonic()
        worker.stop()
        assert worker.join(JOIN)
    assert time.monotonic() - began < 3.0
    errors = [data for kind, data in worker.events if kind == "error"]
    assert len(errors) == 1 and errors[0]["phase"] == "redis"


@pytest.mark.no_processes
def test_dropped_connections_lose_no_job(stream: RedisStream, another: Callable[..., RedisStream]) -> None:
    stream.enqueue_many(range(400))
    worker = CountingProcessor("flaky", stream, delay=0.001)
    worker.start()
    admin = another(stream.stream, url=stream.url)
    try:
        for _ in range(5):
            time.sleep(0.05)
            admin.client().client_kill_filter(_type="normal", skipme=True)
        wait_for(lambda: len(seen(stream)) == 400 and stream.pending() == 0, timeout=30)
    finally:
        worker.stop()
        assert worker.join(JOIN)
    assert min(seen(stream).values()) >= 1  # at least once; a killed ack may repeat a job


@pytest.mark.no_processes
def test_a_stage_reads_one_stream_and_writes_another(
    stream: RedisStream, another: Callable[..., RedisStream]
) -> None:
    out = another(stream.stream + "-out", url=stream.url)
    stream.enqueue_many(range(50))
    stage = Doubler("doubler", stream, out)
    with started(stage, timeout=JOIN):
        wait_for(lambda: out.length() == 50 and stream.pending() == 0, WAIT)
    results = sorted(out.codec.loads(f[b"job"]) for _, f in out.client().xrange(out.stream))
    out.delete()
    assert results == [i * 2 for i in range(50)]


@pytest.mark.no_processes
def test_a_server_runs_redis_processors(stream: RedisStream) -> None:
    stream.enqueue_many(range(100))
    server = Server("redis")
    for i in range(2):
        server.add_worker(CountingProcessor(f"w{i}", stream))
    with server:
        server.start()
        wait_for(lambda: len(seen(stream)) == 100 and stream.pending() == 0, WAIT)
    assert set(seen(stream).values()) == {1}


@pytest.mark.no_processes
def test_bad_arguments_are_rejected(redis_url: str) -> None:
    with pytest.raises(TypeError, match="stream must be"):
        RedisStream("")
    with pytest.raises(ValueError, match="batch"):
        RedisStream("s", batch=0)
    with pytest.raises(ValueError, match="codec"):
        RedisStream("s", codec="yaml")
    with pytest.raises(ValueError, match="claim_idle"):
        RedisStream("s", claim_idle=0)
    with pytest.raises(TypeError, match=r"queue\.Queue"):
        ProcessCountingProcessor("p", queue.Queue())  # type: ignore[arg-type]


@pytest.mark.no_processes
def test_a_stream_can_be_pickled_without_its_connections(stream: RedisStream) -> None:
    import pickle

    stream.client().ping()
    copy = pickle.loads(pickle.dumps(stream))
    assert copy.stream == stream.stream and copy.client() is not stream.client()
    assert isinstance(JobProcessor, type)


@pytest.mark.no_processes
def test_a_stream_deleted_under_a_worker_is_made_again_without_a_spin(stream: RedisStream) -> None:
    stream.enqueue("before")
    worker = CountingProcessor("survives-delete", stream)
    with started(worker, timeout=JOIN):
        wait_for(lambda: seen(stream) == {"before": 1} and stream.pending() == 0, WAIT)
        stream.client().delete(stream.stream)  # group and stream gone
        wait_for(lambda: any(d.get("phase") == "redis" for k, d in worker.events if k == "error"), WAIT)
        stream.enqueue("after")  # XADD makes a bare stream; the worker makes its group again
        wait_for(lambda: seen(stream).get("after") == 1, WAIT)
    redis_errors = [d for k, d in worker.events if k == "error" and d.get("phase") == "redis"]
    assert len(redis_errors) <= 3  # one per outage, not one per spin


@pytest.mark.no_processes
def test_async_producers_enqueue_with_redis_asyncio(stream: RedisStream) -> None:
    from spoc.workers import run_async_safely

    async def produce() -> list[str]:
        try:
            first = await stream.aenqueue("a")
            rest = await stream.aenqueue_many(["b", "c"], chunk=2)
            return [first, *rest]
        finally:
            await stream.aclose()

    ids = run_async_safely(produce())
    assert len(set(ids)) == 3 and stream.length() == 3
    entries = stream.client().xrange(stream.stream)
    assert [stream.codec.loads(f[b"job"]) for _, f in entries] == ["a", "b", "c"]


@pytest.mark.no_processes
def test_a_pipeline_fed_from_a_stream_acknowledges_what_it_accepted(stream: RedisStream) -> None:
    from spoc.workers.patterns import Pipeline

    stream.enqueue_many(range(100))
    pipeline = Pipeline("from-redis", maxsize=4)
    pipeline.add_stage(Doubler)
    pipeline.feed_from(stream)
    results = pt.first_results_then_stop(pipeline, 100, 10)
    assert sorted(results) == [i * 2 for i in range(100)]
    assert stream.pending() == 0 and pipeline.stats.accepted == 100


def test_a_process_forked_while_a_thread_opens_its_client_can_open_its_own(stream: RedisStream) -> None:
    # Under fork, the child inherits this process's locks in the state they had: a thread that was
    # opening the stream's client (holding the lock that guards it) at that moment would leave the
    # child's first client() blocked for ever. The lock is held here as that thread would hold it.
    stream.enqueue_many(range(20))
    worker = ProcessCountingProcessor("forked", stream)
    with stream._local._lock:
        worker.start()
    try:
        wait_for(lambda: len(seen(stream)) == 20 and stream.pending() == 0, WAIT)
    finally:
        worker.stop()
        assert worker.join(JOIN)
    assert set(seen(stream).values()) == {1}


@pytest.mark.no_processes
def test_the_acknowledgements_of_a_batch_go_in_one_call(redis_url: str, stream_name: str) -> None:
    # 100 jobs read 10 at a time: 10 XACK calls (one per batch, sent with the next read), not 100.
    batched = RedisStream(stream_name, url=redis_url, batch=10)
    try:
        batched.enqueue_many(range(100))
        batched.ensure_group()
        batched.client().config_resetstat()
        worker = CountingProcessor("batched", batched)
        with started(worker, timeout=JOIN):
            wait_for(lambda: len(seen(batched)) == 100 and batched.pending() == 0, WAIT)
        calls = batched.client().info("commandstats")["cmdstat_xack"]["calls"]
        assert 10 <= calls <= 12, calls  # (a take-over sends what is pending before it too)
        assert set(seen(batched).values()) == {1}
    finally:
        batched.client().delete(seen_key(batched))
        batched.delete()
        batched.close()


@pytest.mark.no_processes
def test_jobs_read_but_not_started_go_back_at_once_when_no_acknowledgement_is_due(
    stream: RedisStream,
) -> None:
    # An async worker can stop right after a read sent the last acknowledgements: then the
    # hand-back has nothing to acknowledge, and must not send an XACK without ids (an error
    # that failed the whole transaction, leaving the jobs pending for claim_idle).
    stream.enqueue_many(range(5))
    pending: list[int] = []

    class ReadsThenStops(ThreadWorker):
        def main(self) -> None:
            reader = stream.spoc_reader()
            reader.arm(self)
            reader.wait(self, 1.0)  # reads the five into its buffer, takes none
            pending.append(stream.pending())
            reader.release()

    worker = ReadsThenStops("reader")
    worker.start()
    assert worker.join(JOIN)
    assert pending == [5]
    assert stream.pending() == 0 and stream.length() == 10  # re-added, the old entries acknowledged
