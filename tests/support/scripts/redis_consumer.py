"""A Server of Redis job processors, as one of several machines would run it.

Usage: redis_consumer.py URL STREAM CLAIM_IDLE WORKERS
Runs WORKERS thread job processors on the stream under ``run_forever`` until
SIGTERM/SIGINT; each counts the jobs it processed in ``<STREAM>:seen``.
Prints ``ready`` once its workers run.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for redis_targets

from redis_targets import CountingProcessor
from spoc.workers import Server
from spoc.workers.redis import RedisStream


def main() -> int:
    url, stream_name, claim_idle, workers = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    logging.basicConfig(level=logging.WARNING)
    stream = RedisStream(stream_name, url=url, claim_idle=claim_idle)
    server = Server("consumer", shutdown_timeout=5)
    for i in range(workers):
        server.add_worker(CountingProcessor(f"w{i}", stream), restart="on-failure")
    server.start()
    print("ready", flush=True)
    return server.run_forever()


if __name__ == "__main__":
    sys.exit(main())
