"""The counters a pipeline and its stage workers report: frozen snapshots."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from spoc.workers._deprecation import renamed

__all__ = ["STAGE_FIELDS", "PipelineStats", "StageStats", "stage_stats", "stage_totals"]

STAGE_FIELDS = ("items_in", "items_out", "failed", "dropped")
"""The counters of a stage worker."""


@dataclass(frozen=True)
class StageStats:
    """Counters of one stage worker, or of all the workers of a pipeline stage.

    Attributes:
        name: the worker's or the stage's name.
        kind: ``"thread"`` or ``"process"``.
        workers: how many workers are counted.
        items_in: items taken from the input queue (end markers not counted).
        items_out: results passed downstream (written into the next queue).
        failed: items reported as failed (``process_item`` raised, or the
            result could not be passed on).
        dropped: items for which ``process_item`` returned None.
        in_flight: items taken but not yet accounted for:
            ``items_in - items_out - failed - dropped``.
    """

    name: str
    kind: str
    workers: int
    items_in: int
    items_out: int
    failed: int
    dropped: int
    in_flight: int


@dataclass(frozen=True)
class PipelineStats:
    """A snapshot of a pipeline's counters.

    ``accepted == emitted + failed + dropped + in_flight`` at every moment;
    once the pipeline has ended, ``in_flight`` is 0 unless a process was
    killed while holding an item (then it equals ``lost``).

    Attributes:
        accepted: items :meth:`Pipeline.put` or a feed accepted.
        emitted: results that came out of the last stage, counted as the
            pipeline takes them from the results queue.
        failed: dead letters received (``len(dead_letters)``): items reported
            as failed by any stage, plus those found in a queue when the
            pipeline stopped (past a stop's budget, or after a failure).
        dropped: items a stage dropped on purpose (``process_item`` returned None).
        in_flight: accepted items not yet emitted, failed or dropped (the
            results queue's included).
        peak_in_flight: the most items in flight seen when an item was accepted.
        lost: after the end, items that vanished with a killed process (at
            most the one each killed process held); else 0.
        ended: every stage worker has ended.
        failed_workers: names of stage workers that ended FAILED (the pipeline
            then stops).
        stages: per-stage counters, in stage order.
    """

    accepted: int
    emitted: int
    failed: int
    dropped: int
    in_flight: int
    peak_in_flight: int
    lost: int
    ended: bool
    failed_workers: tuple[str, ...]
    stages: tuple[StageStats, ...]

    def __call__(self) -> PipelineStats:
        """``pipeline.stats()``, the spelling before ``stats`` became a property: deprecated."""
        renamed("Pipeline.stats()", "Pipeline.stats")
        return self


def stage_stats(name: str, kind: str, counts: Mapping[str, float]) -> StageStats:
    """One stage worker's snapshot, from its counters (:data:`STAGE_FIELDS`)."""
    items_in, items_out, failed, dropped = (int(counts[field]) for field in STAGE_FIELDS)
    return StageStats(
        name=name,
        kind=kind,
        workers=1,
        items_in=items_in,
        items_out=items_out,
        failed=failed,
        dropped=dropped,
        in_flight=items_in - items_out - failed - dropped,
    )


def stage_totals(name: str, kind: str, parts: Iterable[StageStats]) -> StageStats:
    """The sum of the snapshots ``parts`` (a stage's workers), under the stage's name."""
    parts = list(parts)
    return StageStats(
        name=name,
        kind=kind,
        workers=sum(p.workers for p in parts),
        items_in=sum(p.items_in for p in parts),
        items_out=sum(p.items_out for p in parts),
        failed=sum(p.failed for p in parts),
        dropped=sum(p.dropped for p in parts),
        in_flight=sum(p.in_flight for p in parts),
    )
