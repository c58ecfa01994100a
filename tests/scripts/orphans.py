"""Start process workers directly (no Server), print their pids, then hang.

The test kills this script with SIGKILL and checks that every worker ends on
its own: the cooperative one after its teardown, the stubborn one after its
stop_timeout.

Usage: orphans.py DIRECTORY
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for targets

from targets import IgnoresStop, MarkingSleeper, marks

if __name__ == "__main__":
    directory = sys.argv[1]
    workers = [
        MarkingSleeper("coop-1", directory),
        MarkingSleeper("coop-2", directory),
        IgnoresStop("stubborn", directory, stop_timeout=1.0),
    ]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 60
    while not {f"{w.name}.main" for w in workers} <= marks(directory):
        if time.monotonic() > deadline:
            sys.exit("workers did not start")
        time.sleep(0.01)
    print(" ".join(str(w.pid) for w in workers), flush=True)
    time.sleep(3600)
