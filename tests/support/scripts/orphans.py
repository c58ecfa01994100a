"""Start process workers, print their pids, then hang.

The test kills this script with SIGKILL and checks that every worker ends
within its stop_timeout + 1 s: the cooperative ones after their teardown, the
stubborn one after its stop_timeout, the one holding the GIL in C code and
the one whose queue feeder is stuck on a full pipe as well.

Usage: orphans.py DIRECTORY [--server]   (--server: under a Server, else started directly)
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for targets

from spoc.workers import START_METHOD_ENV, Server
from targets import FloodsQueue, HoldsGil, IgnoresStop, MarkingSleeper, marks

if __name__ == "__main__":
    directory = sys.argv[1]
    context = multiprocessing.get_context(os.environ.get(START_METHOD_ENV) or None)
    workers = [
        MarkingSleeper("coop-1", directory),
        MarkingSleeper("coop-2", directory),
        IgnoresStop("stubborn", directory, stop_timeout=1.0),
        HoldsGil("gil", directory, stop_timeout=1.0),
        FloodsQueue("flood", directory, context.Queue(), stop_timeout=1.0),
    ]
    if "--server" in sys.argv:
        server = Server("orphans")
        for worker in workers:
            server.add_worker(worker)
        server.start()
    else:
        for worker in workers:
            worker.start()
    deadline = time.monotonic() + 60
    while not {f"{w.name}.main" for w in workers} <= marks(directory):
        if time.monotonic() > deadline:
            sys.exit("workers did not start")
        time.sleep(0.01)
    print(" ".join(str(w.pid) for w in workers), flush=True)
    time.sleep(3600)
