"""A Pipeline fed from a Redis stream survives a kill -9: at least once, end to end.

A pipeline fed with ``feed_from(stream)`` acknowledges a job only when its
item has left the pipeline (here: when the loop over ``results()`` has
recorded its result). This script:

1. adds 500 jobs to a stream;
2. runs a pipeline service on it in a child process (``--serve``), and kills
   it with SIGKILL once it has recorded 100 results: no teardown, no
   hand-back, whatever was inside its queues and stages is gone with it;
3. runs the same pipeline here, as the next consumer: it takes the killed
   one's pending jobs over after ``claim_idle`` and records every job.
   A few were recorded twice (the crash found their results recorded but not
   yet acknowledged); none is missing.

Redis: ``REDIS_URL`` (e.g. ``redis://localhost:6379/0``) if set; otherwise the
script starts a private ``redis-server`` (Debian: ``apt-get install
redis-server``) on a free port for the demo and stops it at the end.

Run it with ``python examples/redis_pipeline.py``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

from spoc.workers.patterns import Pipeline, StageWorker
from spoc.workers.redis import RedisStream, local_redis_server

JOBS = 500
CLAIM_IDLE = 0.5  # seconds a job may stay unacknowledged before another consumer takes it over


class Scale(StageWorker):
    """The pipeline's one stage: a pretend image resize."""

    def process_item(self, item: dict[str, int]) -> dict[str, int]:
        time.sleep(0.001)
        return {"image": item["image"], "width": item["width"] // 2}


def serve(url: str, stream_name: str, until: int | None = None, tell: bool = False) -> int:
    """The pipeline service: record each result in ``<stream>:done``; stop once ``until`` are there."""
    stream = RedisStream(stream_name, url=url, claim_idle=CLAIM_IDLE)
    client = stream.client()
    pipeline = Pipeline("images", maxsize=16)
    pipeline.add_stage(Scale, workers=2)
    pipeline.feed_from(stream)
    with pipeline:  # stop() on the way out: drains what was accepted
        pipeline.start()
        if tell:
            print("ready", flush=True)
        for result in pipeline.results():
            # The job is acknowledged once this body is done with its result.
            client.hincrby(f"{stream_name}:done", str(result["image"]), 1)
            if until is not None and client.hlen(f"{stream_name}:done") >= until:
                pipeline.stop()  # results() yields what is left, then ends
    stream.close()
    return 0


def _done(stream: RedisStream) -> dict[str, int]:
    raw: dict[Any, Any] = stream.client().hgetall(f"{stream.stream}:done")
    return {k.decode(): int(v) for k, v in raw.items()}


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
    """Produce, serve, kill -9, serve again, count."""
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    with redis_url() as url:
        stream = RedisStream(f"images-{uuid.uuid4().hex[:8]}", url=url, claim_idle=CLAIM_IDLE)
        stream.enqueue_many({"image": i, "width": 1024} for i in range(JOBS))
        print(f"redis_pipeline.py: {JOBS} jobs in stream {stream.stream!r}")

        service = subprocess.Popen(
            [sys.executable, __file__, "--serve", url, stream.stream], stdout=subprocess.PIPE, text=True
        )
        assert service.stdout is not None
        assert service.stdout.readline().strip() == "ready"
        while len(_done(stream)) < JOBS // 5 and service.poll() is None:
            time.sleep(0.01)
        service.kill()  # SIGKILL: what was inside its pipeline was never acknowledged
        service.wait()
        service.stdout.close()
        done = _done(stream)
        print(
            f"redis_pipeline.py: killed the service (-9): {len(done)} jobs done, {stream.pending()} pending"
        )

        serve(url, stream.stream, until=JOBS)  # the next consumer: takes the pending jobs over
        done = _done(stream)
        twice = sum(n - 1 for n in done.values())
        print(
            f"redis_pipeline.py: {len(done)} of {JOBS} jobs done ({twice} twice), {stream.pending()} pending"
        )
        stream.client().delete(f"{stream.stream}:done")
        stream.delete()
        stream.close()
        if len(done) == JOBS:
            print("redis_pipeline.py: done")
            return 0
        return 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        sys.exit(serve(sys.argv[2], sys.argv[3], tell=True))
    sys.exit(main())
