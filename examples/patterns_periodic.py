"""Pattern 2 of the Workers guide, with the ready-made ``PeriodicWorker``.

The guide's ``DataSyncWorker`` subclasses ``PeriodicWorker`` and writes only
``execute_task``. Runs are anchored to a monotonic schedule (start + k x
interval), so the task's own duration never delays the runs that follow,
and ``stop()`` ends the wait between runs at once, even with the guide's
five-minute interval.

Adapted to end: the interval is 0.2 s instead of 300 s, and the worker
stops itself after five syncs, so ``server.run_forever()`` returns (it
returns once every worker has ended). The statistics are printed at the end.

Run it with ``python examples/patterns_periodic.py``.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime

from spoc.workers import Server, WorkerState
from spoc.workers.patterns import PeriodicWorker

SYNCS = 5


class DataSyncWorker(PeriodicWorker):
    """Sync data every 5 minutes."""

    def __init__(self, name):
        super().__init__(name, interval_seconds=0.2)  # the guide: 300

    def execute_task(self):
        """Sync data from remote source."""
        print(f"Syncing data at {datetime.now()}")
        # Perform sync logic here
        time.sleep(0.05)  # the sync takes a while: the next run is still on time
        if self.stats.runs + 1 >= SYNCS:  # added: end after five syncs
            self.stop()


def main() -> int:
    """Run the periodic worker under a server until it has synced five times."""
    # Run periodic worker
    worker = DataSyncWorker(name="DataSync")
    server = Server()
    server.add_worker(worker)
    status = server.run_forever()

    stats = worker.stats
    print(
        f"runs={stats.runs} skipped={stats.skipped} failed={stats.failed} "
        f"max lateness={stats.max_lateness * 1000:.1f} ms"
    )
    if status == 0 and stats.runs == SYNCS and worker.state is WorkerState.STOPPED:
        print("patterns_periodic.py: done")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
