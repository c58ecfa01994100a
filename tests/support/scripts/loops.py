"""Run one thread worker and one process worker per start method; print their loops.

Each line of output is ``<worker> setup=... startup=... main=... teardown=...``.
Run under ``python -W error``: any warning (a deprecated event-loop-policy
call, a fork warning) fails the script.

Usage: loops.py DIRECTORY
"""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for targets

from targets import LoopReporter, ThreadLoopRecorder

if __name__ == "__main__":
    directory = Path(sys.argv[1])
    thread = ThreadLoopRecorder("thread")
    thread.start()
    assert thread.join(30), "the thread worker did not end"
    assert thread.exception is None, thread.exception
    print("thread", " ".join(f"{k}={v}" for k, v in thread.seen.items()))
    for method in multiprocessing.get_all_start_methods():
        worker = LoopReporter(method, str(directory), start_method=method)
        worker.start()
        assert worker.join(60), f"the {method} worker did not end"
        assert worker.exception is None, worker.exception
        print(method, (directory / f"{method}.loops").read_text())
