"""A Pipeline fed from a Redis stream, as a service would run it (and as a kill -9 finds it).

Usage: redis_pipeline.py URL STREAM CLAIM_IDLE KIND
Runs a pipeline whose one stage (KIND: ``thread`` or ``process``, two
workers) doubles each job, fed from the stream, and counts each result it
takes from ``results()`` in ``<STREAM>:seen`` (by the job: the result / 2).
Prints ``ready`` once started; SIGTERM stops the pipeline and ends the script.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for redis_targets

from redis_targets import ProcessSlowDoubler, SlowDoubler, seen_key
from spoc.workers.patterns import Pipeline
from spoc.workers.redis import RedisStream


def main() -> int:
    url, stream_name, claim_idle, kind = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    logging.basicConfig(level=logging.WARNING)
    stream = RedisStream(stream_name, url=url, claim_idle=claim_idle)
    pipeline = Pipeline("from-redis", maxsize=8)
    pipeline.add_stage(SlowDoubler if kind == "thread" else ProcessSlowDoubler, workers=2)
    pipeline.feed_from(stream)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    stopper = threading.Thread(target=lambda: (stopping.wait(), pipeline.stop(10)), daemon=True)
    stopper.start()
    pipeline.start()
    print("ready", flush=True)
    client = stream.client()
    for result in pipeline.results():
        client.hincrby(seen_key(stream), str(result // 2), 1)
    stream.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
