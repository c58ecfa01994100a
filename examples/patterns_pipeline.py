"""Pattern 3 of the Workers guide, with ``StageWorker``, ``ProcessStageWorker`` and ``Pipeline``.

Fetch (a thread) -> Transform (a process, for CPU work) -> Save (a thread).
The guide wires a ``ProcessWorker`` stage to plain ``queue.Queue`` objects,
which a child process cannot share: it would wait forever on its own copy.
A ``ProcessStageWorker`` refuses such a queue at once (shown first), and the
``Pipeline`` builder picks the right queue for every hop: ``queue.Queue``
between threads, a multiprocessing queue wherever a process is at an end,
every one bounded (back-pressure).

Adapted to end: ``feed()`` closes the input after the ten items, so the
pipeline ends by itself once every item has passed.

Run it with ``python examples/patterns_pipeline.py``.
"""

from __future__ import annotations

import sys
from queue import Queue

from spoc.workers.patterns import Pipeline, ProcessStageWorker, StageWorker


class FetchStage(StageWorker):
    """Stage 1: Fetch raw data."""

    def process_item(self, item):
        """Fetch data."""
        return {"id": item, "raw_data": f"data-{item}"}


class TransformStage(ProcessStageWorker):
    """Stage 2: Transform data (CPU-intensive)."""

    def process_item(self, item):
        """CPU-intensive transformation."""
        # Simulate heavy processing
        return {**item, "transformed": True}


class SaveStage(StageWorker):
    """Stage 3: Save results."""

    def process_item(self, item):
        """Save to database."""
        print(f"Saved: {item}")
        return None  # End of pipeline  # noqa: PLR1711 (the guide's code)


def main() -> int:
    """Show the clear error for the guide's wiring, then run the pipeline the builder wires."""
    try:
        TransformStage("Transform", Queue(), Queue())
    except TypeError as exc:
        print(f"as the guide wired it: TypeError: {exc}")

    # Create pipeline
    pipeline = Pipeline("Pipeline", maxsize=8)
    pipeline.add_stage(FetchStage).add_stage(TransformStage).add_stage(SaveStage)

    with pipeline:
        pipeline.start()
        # Feed pipeline
        pipeline.feed(range(10))
        # Run pipeline (until every item has passed)
        leftovers = list(pipeline.results())

    stats = pipeline.stats
    for stage in stats.stages:
        counts = f"in={stage.items_in} out={stage.items_out} dropped={stage.dropped} failed={stage.failed}"
        print(f"stage {stage.name} ({stage.kind}): {counts}")
    ok = (
        leftovers == []
        and stats.accepted == 10
        and stats.stages[-1].dropped == 10
        and stats.failed == 0
        and stats.ended
    )
    if ok:
        print("patterns_pipeline.py: done")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
