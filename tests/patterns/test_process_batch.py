"""``process_batch(items)``: a stage that handles what arrived together at once.

It gets the items that came with the one taken (the rest of a batch from a
process hop, what a thread hop's one reader took at once), returns one
result per item, and everything else stays per item: counts, dead letters,
dropped items, order, conservation under a stop.
"""

from __future__ import annotations

import queue
from typing import Any

import pytest

import patterns_targets as pt
from spoc.workers.patterns import Pipeline, StageWorker

JOIN = 20.0


@pytest.mark.parametrize(
    "kind",
    [pytest.param(pt.BatchSquares, marks=pytest.mark.no_processes), pt.ProcessBatchSquares],
    ids=["thread", "process"],
)
def test_a_batch_stage_gets_several_items_at_once_and_keeps_every_count_per_item(kind: Any) -> None:
    pipeline = Pipeline("batches", maxsize=64, batch=32)
    pipeline.add_stage(pt.increment).add_stage(kind).add_stage(pt.tag)
    with pipeline:
        pipeline.start()
        pipeline.feed(range(5_000))
        results = list(pipeline.results())
    kept = [i + 1 for i in range(5_000) if (i + 1) % 100 != 13]
    assert [r[1][0] for r in results] == [x * x for x in kept]  # in order, each once, 13s dropped
    sizes = [r[1][1] for r in results]
    assert max(sizes) > 1 and max(sizes) <= 32  # batches, bounded by Pipeline(batch=32)
    stats = pipeline.stats
    assert (stats.accepted, stats.emitted, stats.dropped, stats.failed) == (5_000, len(kept), 50, 0)
    batch_stage = stats.stages[1]
    assert (batch_stage.items_in, batch_stage.items_out, batch_stage.dropped) == (5_000, len(kept), 50)
    pt.check_conservation(pipeline)


def test_an_async_process_batch_runs_on_the_runs_loop() -> None:
    pipeline = Pipeline("async-batches", maxsize=16, batch=16)
    pipeline.add_stage(pt.increment).add_stage(pt.AsyncProcessBatchSquares)
    with pipeline:
        pipeline.start()
        pipeline.feed(range(1_000))
        results = list(pipeline.results())
    assert [r[0] for r in results] == [(i + 1) ** 2 for i in range(1_000)]
    pt.check_conservation(pipeline)


@pytest.mark.parametrize(
    "kind",
    [pytest.param(pt.BatchSquares, marks=pytest.mark.no_processes), pt.ProcessBatchSquares],
    ids=["thread", "process"],
)
def test_a_raising_process_batch_makes_each_item_of_its_batch_a_dead_letter(kind: Any) -> None:
    pipeline = Pipeline("raising", maxsize=8, batch=8)
    pipeline.add_stage(kind)
    items = [*range(500), -1, *range(500, 1000)]
    with pipeline:
        pipeline.start()
        pipeline.feed(items)
        results = list(pipeline.results())
    letters = pipeline.dead_letters
    failed = [letter.item for letter in letters]
    assert -1 in failed and all(isinstance(letter.error, ValueError) for letter in letters)
    # Every item is a result, a dead letter (its batch had the -1) or dropped (x13), exactly once.
    assert sorted(r[0] for r in results) == sorted(x * x for x in items if x not in failed and x % 100 != 13)
    assert pipeline.stats.failed == len(failed)
    pt.check_conservation(pipeline)


@pytest.mark.no_processes
def test_a_process_batch_returning_too_few_results_fails_its_batch() -> None:
    pipeline = Pipeline("too-few", maxsize=4)
    pipeline.add_stage(pt.WrongLengthBatch)
    with pipeline:
        pipeline.start()
        pipeline.feed(range(10))
        assert list(pipeline.results()) == []
    letters = pipeline.dead_letters
    assert sorted(letter.item for letter in letters) == list(range(10))
    assert all(
        isinstance(letter.error, TypeError) and "must return as many" in str(letter.error)
        for letter in letters
    )
    pt.check_conservation(pipeline)


@pytest.mark.no_processes
def test_a_class_with_process_batch_alone_is_a_stage_and_one_with_neither_is_not() -> None:
    stage = pt.BatchSquares("alone", queue.Queue(), queue.Queue())
    assert stage.process_item(3) == (9, 1)  # a lone item is a batch of one
    with pytest.raises(TypeError, match="abstract"):
        StageWorker("neither", queue.Queue(), queue.Queue())  # type: ignore[abstract]


def test_a_stop_mid_flow_loses_nothing_in_a_batch_stage(start_method: str) -> None:
    pipeline = Pipeline("stopped", maxsize=8, batch=16)
    pipeline.add_stage(pt.increment).add_stage(pt.ProcessBatchSquares).add_stage(pt.tag)
    pipeline.start()
    try:
        pipeline.feed(range(20_000))
        for taken, _ in enumerate(pipeline.results(), 1):
            if taken == 2_000:
                break
    finally:
        pipeline.stop(JOIN)
    pt.check_conservation(pipeline)
