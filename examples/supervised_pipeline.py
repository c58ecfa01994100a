"""A pipeline whose process stage is restarted when its process dies, and carries on.

Run: python examples/supervised_pipeline.py

The ``crunch`` stage runs in two processes, with ``restart="on-failure"``.
One item is poison: the process that takes it dies at once (``os._exit``,
as a segfault or the kernel's OOM killer would end it). The pipeline's
server starts a new process in its place, the items the dead one had not
read go to the new one, and the pipeline completes: only the poison item
is lost, and ``stats.lost`` says so. Without ``restart``, the first death
stops the whole pipeline (``PipelineFailedError``).
"""

from __future__ import annotations

import os
import sys

from spoc.workers.patterns import Pipeline

POISON = 13


def parse(line: str) -> int:
    return int(line)


def crunch(n: int) -> int:  # runs in a process: a module-level function
    if n == POISON:
        os._exit(1)  # the process dies with the item in hand
    return n * n


def main() -> int:
    pipeline = Pipeline("supervised", maxsize=8)
    pipeline.add_stage(parse)
    pipeline.add_stage(crunch, kind="process", workers=2, restart="on-failure")
    with pipeline:
        pipeline.start()
        pipeline.feed(str(i) for i in range(100))
        results = sorted(pipeline.results())
    stats = pipeline.stats
    print(f"{len(results)} results, lost={stats.lost}, failed workers={list(stats.failed_workers)}")
    assert results == [n * n for n in range(100) if n != POISON]
    assert stats.lost == 1 and stats.failed_workers == ()
    print("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
