"""A Pipeline fed from a Redis stream is at least once, end to end (against a real redis-server).

An entry is acknowledged only when its item has left the pipeline: its
result taken from ``results()``, dropped by a stage, or a dead letter of a
failing ``process_item``. So an item inside a process that dies is
delivered again, to whichever consumer takes the entry over.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_redis_scale_out import finish

import patterns_targets as pt
from redis_targets import ProcessBatchHalver, ProcessSorter, Sorter, seen, seen_key
from spoc.workers.patterns import Pipeline, StageWorker
from spoc.workers.redis import RedisStream
from targets import wait_for

SCRIPT = Path(__file__).resolve().parent.parent / "support" / "scripts" / "redis_pipeline.py"
JOIN = 10.0
JOBS = 2000

HOLDING = threading.Event()
GATE = threading.Event()


class GatedStage(StageWorker):
    """Doubles each item; holds the first until the test opens ``GATE``."""

    def process_item(self, item: Any) -> Any:
        HOLDING.set()
        if not GATE.wait(30):
            raise TimeoutError("the test never opened the gate")
        return item * 2


@pytest.fixture
def stream(redis_url: str, stream_name: str) -> Iterator[RedisStream]:
    s = RedisStream(stream_name, url=redis_url, claim_idle=0.5)
    yield s
    s.client().delete(seen_key(s))
    s.delete()
    s.close()


def _reads(stream: RedisStream) -> int:
    stats = stream.client().info("commandstats").get("cmdstat_xreadgroup", {})
    return int(stats.get("calls", 0))


@pytest.mark.no_processes
def test_an_entry_stays_pending_until_the_loop_over_results_is_done_with_its_result(
    stream: RedisStream,
) -> None:
    HOLDING.clear()
    GATE.clear()
    stream.enqueue(21)
    pipeline = Pipeline("late-ack", maxsize=2)
    pipeline.add_stage(GatedStage)
    pipeline.feed_from(stream)
    pipeline.start()
    try:
        assert HOLDING.wait(JOIN)
        # Two more reads by the feeder: an acknowledgement on acceptance would have gone with them.
        reads = _reads(stream)
        wait_for(lambda: _reads(stream) >= reads + 2, timeout=JOIN)
        assert stream.pending() == 1
        GATE.set()
        results = pipeline.results()
        assert next(results) == 42
        reads = _reads(stream)
        wait_for(lambda: _reads(stream) >= reads + 2, timeout=JOIN)
        assert stream.pending() == 1  # handed over, but the loop's body has not finished with it
        results.close()  # the loop is left: its body is done with the result
        wait_for(lambda: stream.pending() == 0, timeout=JOIN)
    finally:
        GATE.set()
        assert pipeline.stop(JOIN)


@pytest.mark.parametrize("kind", [pytest.param("thread", marks=pytest.mark.no_processes), "process"])
@pytest.mark.parametrize("batch", [1, 8])
def test_dropped_and_dead_lettered_items_are_acknowledged_too(
    stream: RedisStream, kind: str, batch: int
) -> None:
    stream.enqueue_many(range(40))
    pipeline = Pipeline("sorting", maxsize=4, batch=batch)
    pipeline.add_stage(Sorter if kind == "thread" else ProcessSorter, workers=2)
    pipeline.feed_from(stream)
    results = pt.first_results_then_stop(pipeline, 20, JOIN)
    assert sorted(results) == list(range(0, 40, 2))
    assert sorted(letter.item for letter in pipeline.dead_letters) == [7, 17, 27, 37]
    stats = pipeline.stats
    assert stats.accepted == 40 and stats.dropped == 16 and stats.lost == 0
    wait_for(lambda: stream.pending() == 0, timeout=JOIN)  # every one settled


def test_a_batch_stage_settles_every_item_of_its_batches(stream: RedisStream) -> None:
    stream.enqueue_many(range(200))
    pipeline = Pipeline("batches", maxsize=8, batch=16)
    pipeline.add_stage(ProcessBatchHalver)
    pipeline.feed_from(stream)
    results = pt.first_results_then_stop(pipeline, 100, JOIN)
    assert sorted(results) == list(range(100))
    assert pipeline.stats.dropped == 100 and pipeline.stats.lost == 0
    wait_for(lambda: stream.pending() == 0, timeout=JOIN)  # the dropped ones too, by their tombstones


def _start(stream: RedisStream, kind: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), stream.url, stream.stream, str(stream.claim_idle), kind],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.mark.parametrize("kind", [pytest.param("thread", marks=pytest.mark.no_processes), "process"])
def test_a_kill_9_of_the_pipelines_process_loses_no_entry(stream: RedisStream, kind: str) -> None:
    first = _start(stream, kind)
    procs = [first]
    try:
        stream.enqueue_many(range(JOBS))
        wait_for(lambda: len(seen(stream)) >= JOBS // 4, timeout=60)
        first.kill()  # SIGKILL: what was inside its pipeline was never acknowledged
        first.wait(10)
        procs.append(_start(stream, kind))  # takes the pending entries over after claim_idle
        wait_for(lambda: len(seen(stream)) == JOBS and stream.pending() == 0, timeout=120)
    finally:
        codes = finish(procs)
    assert codes[1] == 0
    counts = seen(stream)
    duplicates = sum(n - 1 for n in counts.values())
    print(f"\n{JOBS} entries after kill -9 of a pipeline: each emitted, {duplicates} twice")
    assert len(counts) == JOBS  # none lost
    # Only what was inside the killed pipeline can repeat: its queues, its workers' hands,
    # the stream's read batch and the results taken but not yet counted.
    assert duplicates <= 100
