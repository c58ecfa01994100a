"""Build, run and join many servers or pipelines one after another; print the fd counts.

Usage: lifetimes.py server|pipeline thread|process CYCLES [FD_LIMIT]

With FD_LIMIT the process first lowers its own open-file limit (``ulimit -n``),
so that a leak of even one descriptor per cycle fails within the run. It
prints ``fds BEFORE AFTER`` and exits 0, or fails with the exception.
"""

from __future__ import annotations

import gc
import os
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for targets

from spoc.workers import Server
from spoc.workers.patterns import Pipeline
from targets import Idle, ProcessIdle


def open_fds() -> int:
    gc.collect()  # what only the collector frees is bounded by the fd limit, not counted as kept
    return len(os.listdir("/proc/self/fd"))


def server_cycle(kind: str) -> None:
    server = Server("lifetime")
    server.add_worker(Idle("idle"))
    if kind == "process":
        server.add_worker(ProcessIdle("pidle"))
    server.start()
    server.stop()
    assert not server.join_all(10), "a worker did not stop"


def pipeline_cycle(kind: str) -> None:
    pipeline = Pipeline("lifetime", maxsize=4)
    pipeline.add_stage(abs, kind="thread").add_stage(abs, kind=kind)
    with pipeline:
        pipeline.start()
        pipeline.feed([-1, -2, -3])
        assert sorted(pipeline.results()) == [1, 2, 3]


def main() -> None:
    what, kind, cycles = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if len(sys.argv) > 4:
        limit = int(sys.argv[4])
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    cycle = server_cycle if what == "server" else pipeline_cycle
    cycle(kind)  # the first run opens what lives for the whole process (the reaper's pipe...)
    before = open_fds()
    for _ in range(cycles):
        cycle(kind)
    print(f"fds {before} {open_fds()}", flush=True)


if __name__ == "__main__":
    main()
