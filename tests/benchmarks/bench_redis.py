"""Jobs per second through ``RedisStream`` with 1, 2 and 4 worker processes, and through a Pipeline.

Baseline, in the same run and against the same private ``redis-server``: as
many bare processes running the loop one would write by hand with redis-py
(``XREADGROUP`` a batch of 10, blocking 100 ms, then ``XACK`` each entry).
Both sides decode the same JSON job and do no other work, so the figure is
the framework's cost per job. Each sample: fill a fresh stream with N jobs,
start the consumers (``fork``: start-up is not what is measured), time until
the group has nothing left to deliver and nothing pending.

A last row feeds a :class:`Pipeline` from the stream (``feed_from``: an
entry is acknowledged once its result was taken from ``results()``),
against one bare loop.

Usable alone (``python tests/benchmarks/bench_redis.py [--quick]``) and from
``run.py``, which calls :func:`measure`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import statistics
import sys
import time
import uuid
from typing import Any

import redis
from spoc.workers.patterns import Pipeline, ProcessJobProcessor
from spoc.workers.redis import RedisStream, local_redis_server

WORKER_COUNTS = (1, 2, 4)
METHOD = "fork"


class NoopProcessor(ProcessJobProcessor):
    """Takes each job (decoded) and does nothing with it."""

    def process_job(self, job: Any) -> None:
        return None


def _bare_consumer(url: str, stream: str, group: str, name: str, stop: Any) -> None:
    """The hand-written loop: read a batch, decode, acknowledge each."""
    client = redis.Redis.from_url(url, protocol=2)
    while not stop.is_set():
        reply = client.xreadgroup(group, name, {stream: ">"}, count=10, block=100)
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                json.loads(fields[b"job"])
                client.xack(stream, group, entry_id)
    client.close()


def _fresh_stream(url: str, jobs: int) -> RedisStream:
    stream = RedisStream(f"bench-{uuid.uuid4().hex[:10]}", url=url)
    stream.ensure_group()
    stream.enqueue_many(range(jobs), chunk=1000)
    return stream


def _drained(stream: RedisStream) -> bool:
    [info] = stream.client().xinfo_groups(stream.stream)
    return info["pending"] == 0 and info.get("lag") == 0


def _wait_drained(stream: RedisStream, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not _drained(stream):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{stream.stream} not drained within {timeout}s")
        time.sleep(0.002)


def ours_once(url: str, workers: int, jobs: int) -> float:
    """Seconds for ``workers`` ProcessJobProcessors to take and acknowledge ``jobs`` jobs."""
    stream = _fresh_stream(url, jobs)
    processors = [NoopProcessor(f"noop-{i}", stream, start_method=METHOD) for i in range(workers)]
    began = time.perf_counter()
    for p in processors:
        p.start()
    try:
        _wait_drained(stream)
        took = time.perf_counter() - began
    finally:
        for p in processors:
            p.stop()
        for p in processors:
            p.join(30)
    processed = sum(p.stats.processed for p in processors)
    stream.delete()
    stream.close()
    if processed != jobs:
        raise RuntimeError(f"processed {processed} of {jobs} jobs")
    return took


def pipeline_once(url: str, jobs: int) -> float:
    """Seconds for a Pipeline fed from the stream (one thread stage passing each job on) to emit
    ``jobs`` results and acknowledge them all: at least once, end to end."""
    stream = _fresh_stream(url, jobs)
    pipeline = Pipeline("bench-redis", maxsize=64)
    pipeline.add_stage(_passthrough)
    pipeline.feed_from(stream)
    began = time.perf_counter()
    pipeline.start()
    emitted = 0
    try:
        for _ in pipeline.results():
            emitted += 1
            if emitted == jobs:
                break
        _wait_drained(stream)
        took = time.perf_counter() - began
    finally:
        pipeline.stop(30)
    stream.delete()
    stream.close()
    if emitted != jobs:
        raise RuntimeError(f"emitted {emitted} of {jobs} jobs")
    return took


def _passthrough(item: Any) -> Any:
    return item


def bare_once(url: str, workers: int, jobs: int) -> float:
    """Seconds for ``workers`` bare redis-py loops to take and acknowledge ``jobs`` jobs."""
    stream = _fresh_stream(url, jobs)
    context = multiprocessing.get_context(METHOD)
    stop = context.Event()
    procs = [
        context.Process(target=_bare_consumer, args=(url, stream.stream, stream.group, f"bare-{i}", stop))
        for i in range(workers)
    ]
    began = time.perf_counter()
    for p in procs:
        p.start()
    try:
        _wait_drained(stream)
        took = time.perf_counter() - began
    finally:
        stop.set()
        for p in procs:
            p.join(30)
    stream.delete()
    stream.close()
    return took


def measure(quick: bool) -> list[dict[str, Any]]:
    """One row per worker count: jobs/s (median, min, max of the samples) for ours and the bare loop.

    Empty when ``redis-server`` is not installed.
    """
    if shutil.which("redis-server") is None:
        return []
    jobs = 2_000 if quick else 20_000
    reps = 1 if quick else 5
    rows = []
    with local_redis_server() as url:
        for workers in WORKER_COUNTS:
            ours, bare = [], []
            for _ in range(reps):  # interleaved, so that load changes hit both sides alike
                ours.append(jobs / ours_once(url, workers, jobs))
                bare.append(jobs / bare_once(url, workers, jobs))
            rows.append(
                {
                    "workers": workers,
                    "jobs": jobs,
                    "ours": ours,
                    "bare": bare,
                    "ratio": statistics.median(ours) / statistics.median(bare),
                }
            )
        ours, bare = [], []
        for _ in range(reps):
            ours.append(jobs / pipeline_once(url, jobs))
            bare.append(jobs / bare_once(url, 1, jobs))
        rows.append(
            {
                "workers": "pipeline",
                "jobs": jobs,
                "ours": ours,
                "bare": bare,
                "ratio": statistics.median(ours) / statistics.median(bare),
            }
        )
    return rows


def main() -> int:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows = measure(args.quick)
    if not rows:
        print("redis-server is not installed: no Redis figures")
        return 1
    print(f"{'workers':>7} {'RedisStream jobs/s':>20} {'bare loop jobs/s':>18} {'ratio':>6}")
    for row in rows:
        ours, bare = statistics.median(row["ours"]), statistics.median(row["bare"])
        print(f"{row['workers']:>7} {ours:>20,.0f} {bare:>18,.0f} {row['ratio']:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
