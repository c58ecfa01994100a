"""Child processes of the benchmarks: each measures in a fresh interpreter.

``python bench_scripts.py MODE ...`` where MODE is

* ``serve ours|guide``: a Server with 10 mixed workers (4 threads, 3 processes,
  3 async threads) in ``run_forever``; prints ``ready`` once every worker runs,
  then exits with run_forever's status when signalled (figure 2);
* ``idle workers|threads COUNT``: prints the RSS growth, in MiB, of COUNT idle
  ThreadWorkers in one Server, or of COUNT bare threads waiting on an Event
  (figure 9);
* ``flow pipeline|floor ITEMS MAXSIZE``: prints the RSS, in MiB, before and
  after ITEMS items went through a thread→thread→thread Pipeline, or the
  hand-written queue.Queue chain (figure 9).
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_workers import (
    GuideSleepAsync,
    GuideSleepProcess,
    GuideSleepThread,
    IdleAsyncThread,
    IdleThread,
    ParkedProcess,
    floor_thread_stage,
    increment,
    rss_mib,
)

from spoc.workers import Server, WorkerEvent, WorkerState
from spoc.workers.patterns import Pipeline


def serve(flavour: str) -> int:
    """Figure 2's child: print ``ready`` once all 10 workers run, then run until signalled."""
    server = Server("bench-signal")
    if flavour == "ours":
        workers = [IdleThread(f"thread-{i}") for i in range(4)]
        workers += [ParkedProcess(f"process-{i}") for i in range(3)]
        workers += [IdleAsyncThread(f"async-{i}") for i in range(3)]
    else:
        workers = [GuideSleepThread(f"thread-{i}") for i in range(4)]
        workers += [GuideSleepProcess(f"process-{i}") for i in range(3)]
        workers += [GuideSleepAsync(f"async-{i}") for i in range(3)]
    running: set[str] = set()
    lock = threading.Lock()

    def listener(event: WorkerEvent) -> None:
        if event.kind == "state" and event.state is WorkerState.RUNNING:
            with lock:
                running.add(event.worker)
                if len(running) == len(workers):
                    print("ready", flush=True)

    server.add_listener(listener)
    for worker in workers:
        server.add_worker(worker)
    return server.run_forever()


def idle(kind: str, count: int) -> int:
    """Figure 9's idle memory: RSS growth of ``count`` idle workers or bare threads."""
    before = rss_mib()
    if kind == "workers":
        server = Server("bench-idle")
        workers = [IdleThread(f"idle-{i}") for i in range(count)]
        for worker in workers:
            server.add_worker(worker)
        server.start()
        for worker in workers:
            worker.entered.wait(10)
        after = rss_mib()
        server.stop()
        server.join_all(10)
    else:
        stop = threading.Event()
        entered = [threading.Event() for _ in range(count)]

        def target(mine: threading.Event) -> None:
            mine.set()
            stop.wait()

        threads = [threading.Thread(target=target, args=(e,), daemon=True) for e in entered]
        for thread in threads:
            thread.start()
        for event in entered:
            event.wait(10)
        after = rss_mib()
        stop.set()
        for thread in threads:
            thread.join(10)
    print(json.dumps({"growth": after - before}))
    return 0


def flow(kind: str, items: int, maxsize: int) -> int:
    """Figure 9's pipeline memory: RSS before and after ``items`` went through three thread stages."""
    count = 0
    if kind == "pipeline":
        pipeline = Pipeline("bench-memory", maxsize=maxsize)
        for _ in range(3):
            pipeline.add_stage(increment)
        pipeline.start()
        while not all(w.state is WorkerState.RUNNING for w in pipeline.workers):
            time.sleep(0.001)
        before = rss_mib()
        pipeline.feed(range(items))
        for _ in pipeline.results():
            count += 1
    else:
        hops: list[queue.Queue[int | None]] = [queue.Queue(maxsize) for _ in range(4)]
        stages = [
            threading.Thread(target=floor_thread_stage, args=(hops[i], hops[i + 1]), daemon=True)
            for i in range(3)
        ]
        for stage in stages:
            stage.start()

        def feed() -> None:
            for item in range(items):
                hops[0].put(item)
            hops[0].put(None)

        before = rss_mib()
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        while hops[-1].get() is not None:
            count += 1
        for stage in stages:
            stage.join()
    after = rss_mib()
    if count != items:
        raise RuntimeError(f"{count} results for {items} items")
    print(json.dumps({"before": before, "after": after}))
    return 0


def main(argv: list[str]) -> int:
    mode, *args = argv
    if mode == "serve":
        return serve(args[0])
    if mode == "idle":
        return idle(args[0], int(args[1]))
    if mode == "flow":
        return flow(args[0], int(args[1]), int(args[2]))
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
