"""A pipeline's process stage under a Server's restart: SIGKILL mid-flow, the flow resumes.

Each process stage worker reads and writes private pipes (no lock shared
between processes), so a worker killed anywhere in its loop wedges nothing:
its replacement (``add_stage(..., restart="on-failure")``) gets fresh
pipes and what the dead run left unread, and the pipeline completes,
losing at most the item (or batch) the dead run held, counted exactly in
``stats.lost``. Targets are in ``patterns_targets`` (importable by spawn and
forkserver children).
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

import patterns_targets as pt
from spoc.workers import WorkerState
from spoc.workers.patterns import Pipeline

ITEMS = 10_000


def _wait_for_a_new_run(victim: Any, old_pid: int | None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not (victim.state is WorkerState.RUNNING and victim.pid not in (None, old_pid)):
        assert time.monotonic() < deadline, f"{victim.name} was not restarted: {victim.state}"
        victim.join(0.02)  # returns at once while it runs; waits a little while it is down


@pytest.mark.parametrize(
    ("workers", "batch"), [(1, 1), (2, 1), (2, 32)], ids=["one-worker", "two-workers", "batched"]
)
def test_a_killed_supervised_process_stage_is_restarted_and_the_pipeline_completes(
    start_method: str, workers: int, batch: int
) -> None:
    """thread -> process (restarted on failure) -> thread, 10,000 items, SIGKILL twice mid-flow.

    The pipeline ends normally (no failed worker); what was lost is at
    most one item (one batch) per kill, exactly the items missing from the
    results; every other item came out once.
    """
    kills = 2
    pipeline = Pipeline("revived", maxsize=8, batch=batch)
    pipeline.add_stage(pt.increment)
    pipeline.add_stage(pt.Square, workers=workers, restart="on-failure")
    pipeline.add_stage(pt.tag)
    victim: Any = None
    results: list[Any] = []
    with pipeline:
        pipeline.start()
        victim = pipeline.workers[1]
        pipeline.feed(range(ITEMS))
        for result in pipeline.results():
            results.append(result)
            if len(results) % 3000 == 0 and len(results) // 3000 <= kills:
                old_pid = victim.pid
                victim.kill()  # SIGKILL, wherever the child is in its loop
                _wait_for_a_new_run(victim, old_pid)
    stats = pipeline.stats
    assert stats.ended and stats.failed_workers == (), stats
    assert stats.lost <= kills * batch, stats
    assert stats.accepted == ITEMS == stats.emitted + stats.failed + stats.dropped + stats.lost, stats
    assert (stats.emitted, stats.failed) == (len(results), 0)
    originals = [math.isqrt(value) - 1 for _, value in results]
    assert len(set(originals)) == len(originals) == ITEMS - stats.lost
    assert set(originals) <= set(range(ITEMS))


def test_a_poison_item_that_kills_its_process_is_lost_once_and_not_given_again(start_method: str) -> None:
    """The item a process dies on is not sent to its replacement (it would die again): it is
    the one item lost; the items the dead run had not read go to the next run."""
    pipeline = Pipeline("poison", maxsize=4)
    pipeline.add_stage(pt.exit_on_five, kind="process", restart="on-failure")
    with pipeline:
        pipeline.start()
        pipeline.feed(range(40))
        results = sorted(pipeline.results())
    stats = pipeline.stats
    assert results == [i for i in range(40) if i != 5]
    assert (stats.lost, stats.failed, stats.failed_workers) == (1, 0, ())
    assert pipeline.workers[0].stats.items_in >= 40  # counted by each run, the dead one too


def test_restart_is_for_process_stages_and_only_never_or_on_failure() -> None:
    pipeline = Pipeline("checked")
    with pytest.raises(ValueError, match="restart='on-failure' is for process stages"):
        pipeline.add_stage(pt.increment, restart="on-failure")
    with pytest.raises(ValueError, match="restart must be 'never' or 'on-failure'"):
        pipeline.add_stage(pt.Square, restart="always")
    assert pipeline.add_stage(pt.Square, restart="on-failure") is pipeline


def test_a_switch_that_fails_fails_the_pipeline_instead_of_wedging_it(
    start_method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the parent's side of a process stage (here: reading its results raises) must
    not leave the pipeline waiting for results that can no longer come."""
    from spoc.workers.patterns import PipelineFailedError
    from spoc.workers.patterns._switch import StageSwitch

    def broken(self: Any, run: Any, bodies: list[bytes]) -> None:
        raise RuntimeError("the collector's bug")

    monkeypatch.setattr(StageSwitch, "_route", broken)
    pipeline = Pipeline("broken", maxsize=4)
    pipeline.add_stage(pt.Square)
    began = time.monotonic()
    with pipeline:
        pipeline.start()
        pipeline.feed(range(100))
        with pytest.raises(PipelineFailedError, match=r"broken\.Square\.switch.*the collector's bug"):
            list(pipeline.results())
    assert time.monotonic() - began < 20
    assert pipeline.stats.failed_workers == ("broken.Square.switch",)
