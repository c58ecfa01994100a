"""Scaling out with Redis: a producer and a worker Server sharing one Redis stream.

Run the same Server on as many machines as you like, all pointing at one
Redis: each job goes to one worker. This script plays both roles:

1. the producer adds 1,000 jobs (and one that always fails) to the stream;
2. a Server runs two thread job processors and one process job processor on
   the stream until every job is handled;
3. the job that always fails ends in the dead-letter stream after
   ``max_deliveries`` tries; nothing is lost.

Redis: ``REDIS_URL`` (e.g. ``redis://localhost:6379/0``) if set; otherwise the
script starts a private ``redis-server`` (Debian: ``apt-get install
redis-server``) on a free port for the demo and stops it at the end.

Run it with ``python examples/redis_scale_out.py``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator

from spoc.workers import Server
from spoc.workers.patterns import JobProcessor, ProcessJobProcessor
from spoc.workers.redis import RedisStream, local_redis_server

JOBS = 1_000


def say(message: str) -> None:
    """Print a whole line at once (workers print from several threads and processes)."""
    print(message + "\n", end="", flush=True)


class Resizer(JobProcessor):
    """A thread worker: I/O-bound jobs (here: a pretend image resize)."""

    def process_job(self, job: dict[str, int]) -> None:
        if job["size"] < 0:
            raise ValueError(f"image {job['image']} has a negative size")
        self.job_queue.client().hincrby(f"{self.job_queue.stream}:done", "thread", 1)


class Hasher(ProcessJobProcessor):
    """A process worker: CPU-bound jobs, in its own process."""

    def process_job(self, job: dict[str, int]) -> None:
        if job["size"] < 0:
            raise ValueError(f"image {job['image']} has a negative size")
        sum(i * i for i in range(job["size"]))
        self.job_queue.client().hincrby(f"{self.job_queue.stream}:done", "process", 1)


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """``REDIS_URL``, or a private redis-server for the length of the demo."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    try:
        with local_redis_server() as url:
            yield url
    except FileNotFoundError as exc:
        raise SystemExit(f"set REDIS_URL, or install redis-server: {exc}") from None


def main() -> int:
    """Produce, consume, report."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with redis_url() as url:
        # claim_idle: how long a job may stay unacknowledged before another worker takes it over
        # (retries of a failed job, jobs of a worker that died). Short here, for the demo.
        stream = RedisStream(f"images-{uuid.uuid4().hex[:8]}", url=url, claim_idle=0.2, max_deliveries=3)

        # The producer side: any process, any machine.
        stream.enqueue_many({"image": i, "size": 20_000} for i in range(JOBS))
        stream.enqueue({"image": "broken.png", "size": -1})
        say(f"redis_scale_out.py: {JOBS + 1} jobs in stream {stream.stream!r}")

        # The worker side: run this Server on every machine.
        server = Server("images", shutdown_timeout=10)
        server.add_worker(Resizer("resizer-1", stream))
        server.add_worker(Resizer("resizer-2", stream))
        server.add_worker(Hasher("hasher", stream))

        def stop_when_done() -> None:
            while not (stream.dead_letters() and stream.pending() == 0 and _done(stream) == JOBS):
                time.sleep(0.05)
            server.stop()

        watcher = threading.Thread(target=stop_when_done, daemon=True)
        watcher.start()
        began = time.monotonic()
        status = server.run_forever()
        took = time.monotonic() - began
        watcher.join(5)

        done = stream.client().hgetall(f"{stream.stream}:done")
        by_kind = {k.decode(): int(v) for k, v in done.items()}
        say(f"redis_scale_out.py: {sum(by_kind.values())} jobs processed in {took:.2f}s: {by_kind}")
        for dead in stream.dead_letters():
            say(f"  dead letter: job {dead.job} after {dead.deliveries} tries: {dead.error}")
        stream.client().delete(f"{stream.stream}:done")
        stream.delete()
        stream.close()
        if status == 0 and sum(by_kind.values()) == JOBS:
            say("redis_scale_out.py: done")
        return status


def _done(stream: RedisStream) -> int:
    return sum(int(v) for v in stream.client().hvals(f"{stream.stream}:done"))


if __name__ == "__main__":
    sys.exit(main())
