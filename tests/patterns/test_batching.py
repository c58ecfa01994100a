"""``Pipeline(batch=..., linger=...)``: results cross a process hop in batches, and nothing else changes.

Items are still handled one by one, in order, counted one by one; a stop
mid-flow loses nothing, whether the items wait in a stage's held-back batch
or in the rest of a batch a stage had taken (a stop that drains is in
``test_pipeline.py``); a lone item is sent once its ``linger`` has passed.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

import patterns_targets as pt
from spoc.workers.patterns import Pipeline, PipelineStoppedError
from targets import wait_for

JOIN = 20.0


def _conserved(pipeline: Pipeline) -> None:
    """Conservation, and per stage too: each item taken in was passed on, failed or dropped."""
    pt.check_conservation(pipeline)
    for stage in pipeline.stats.stages:
        assert stage.items_in == stage.items_out + stage.failed + stage.dropped, stage


@pytest.mark.parametrize("square", [pt.Square, pt.AsyncSquare], ids=["def", "async-def"])
def test_batched_items_cross_a_process_hop_in_order_each_exactly_once(start_method: str, square: Any) -> None:
    pipeline = Pipeline("batched", maxsize=8, batch=64)
    pipeline.add_stage(pt.increment).add_stage(square).add_stage(pt.tag)
    with pipeline:
        pipeline.start()
        pipeline.feed(range(10_000))
        results = list(pipeline.results())
    assert results == [("r", (i + 1) ** 2) for i in range(10_000)]  # one worker per stage: in order
    stats = pipeline.stats
    assert (stats.accepted, stats.emitted, stats.failed) == (10_000, 10_000, 0)
    assert [s.items_in for s in stats.stages] == [10_000] * 3
    _conserved(pipeline)


def test_past_its_budget_a_stop_makes_held_and_taken_batches_dead_letters(start_method: str) -> None:
    """A stage taking 0.05 s per item is stopped with most of a batch of 16 still to do.

    Those items, and the results held back for the next batch, become dead
    letters (the items a stopped stage had taken but not processed too):
    each item fed comes out exactly once, as a result or as a dead letter.
    """
    pipeline = Pipeline("batched-budget", maxsize=4, batch=16, linger=0.05)
    pipeline.add_stage(pt.increment, name="first")
    pipeline.add_stage(pt.SlowStage, name="slow", delay=0.05)
    pipeline.add_stage(pt.increment, name="last")
    pipeline.start()
    try:
        for i in range(48):
            pipeline.put(i, timeout=JOIN)
        wait_for(lambda: pipeline.stats.stages[1].items_in >= 1, timeout=JOIN)  # slow has its batch
        assert not pipeline.stop(timeout=0.3)
        results = list(pipeline.results())
    finally:
        pipeline.stop()
    letters = pipeline.dead_letters
    assert letters and all(isinstance(d.error, PipelineStoppedError) for d in letters)
    assert any("stopped before it processed" in str(d.error) for d in letters)  # taken, not done
    # A dead letter waiting for "first" is the item fed; for "slow" or "last", the item + 1.
    originals = [result - 2 for result in results]
    originals += [d.item - (0 if d.stage == "first" else 1) for d in letters]
    assert sorted(originals) == list(range(48))
    _conserved(pipeline)


def test_a_lone_item_is_sent_once_its_linger_has_passed(start_method: str) -> None:
    linger = 0.2
    pipeline = Pipeline("lone", maxsize=8, batch=1_000, linger=linger)
    pipeline.add_stage(pt.Square).add_stage(pt.increment)
    with pipeline:
        pipeline.start()
        pipeline.put(2, timeout=JOIN)  # a warm-up: the process stage is up
        results = pipeline.results()
        assert next(results) == 5
        begun = time.monotonic()
        pipeline.put(3, timeout=JOIN)
        assert next(results) == 10
        elapsed = time.monotonic() - begun
        pipeline.close()
        assert list(results) == []
    assert linger * 0.9 <= elapsed < linger + 5.0  # held for its batch, sent when the linger ran out
    _conserved(pipeline)


@pytest.mark.no_processes
@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"batch": 0}, ValueError, "batch"),
        ({"batch": 2.5}, TypeError, "batch"),
        ({"linger": -1}, ValueError, "linger"),
        ({"linger": float("inf")}, ValueError, "linger"),
    ],
)
def test_bad_batch_options_are_refused_naming_the_pipeline(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=rf"pipeline 'p'.*{message}"):
        Pipeline("p", **options)
