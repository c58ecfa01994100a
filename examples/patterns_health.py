"""Pattern 4 of the Workers guide, with the ready-made ``HealthMonitor``.

The guide's monitor polled a private attribute and "restarted" a worker by
building a new one of the same type (losing its arguments, and "restarting"
workers that had not even been started). The real ``HealthMonitor`` keeps
the guide's ``lifecycle`` hook, restarts the *same* worker object with
backoff, and leaves alone workers that were never started or were stopped
on purpose.

Here a process worker fails on its first two starts; the monitor notices
each failure at once (it waits on the process's sentinel), restarts it after
0.1 s and then 0.2 s, and the third start keeps running. Adapted to end:
everything is stopped once the worker runs.

Run it with ``python examples/patterns_health.py``.
"""

from __future__ import annotations

import multiprocessing
import sys
import time

from spoc.workers import Backoff, ProcessWorker, WorkerState
from spoc.workers.patterns import HealthMonitor


class Flaky(ProcessWorker):
    """Fails on its first ``fail_times`` starts, then runs until stopped."""

    def __init__(self, name, fail_times):
        super().__init__(name)
        # Shared memory made for this worker's start method: the child's count reaches the parent.
        self.starts = multiprocessing.get_context(self.start_method).Value("i", 0)
        self.fail_times = fail_times

    def main(self):
        with self.starts.get_lock():
            self.starts.value += 1
            n = self.starts.value
        if n <= self.fail_times:
            raise RuntimeError(f"start {n}: cannot reach the database")
        print(f"{self.name}: start {n} is up")
        while self.sleep(60):
            pass


class GuideHealthMonitor(HealthMonitor):
    """Monitor and restart failed workers."""

    def lifecycle(self, event_type, **data):
        """Handle lifecycle events."""
        if event_type == "error":
            print(f"Health monitor detected error: {data.get('exception')}")
        elif event_type == "restart":  # added: the real monitor also reports restarts
            print(f"restarting {data['worker']} (attempt {data['attempt']}, after {data['delay']:.2f}s)")


def main() -> int:
    """Run a flaky worker under the monitor until it stays up, then stop both."""
    worker = Flaky("Worker-1", fail_times=2)
    never_started = Flaky("Worker-2", fail_times=0)
    monitor = GuideHealthMonitor(
        "HealthMonitor", [worker, never_started], interval=0.5, backoff=Backoff(0.1, 2.0, 5.0, 0.0)
    )
    monitor.start()
    worker.start()
    try:
        deadline = time.monotonic() + 8
        while not (worker.state is WorkerState.RUNNING and worker.starts.value == 3):
            if time.monotonic() > deadline:
                print("the worker did not come up")
                return 1
            worker.join(0.05)
    finally:
        worker.stop()
        monitor.stop()
        worker.join(5)
        monitor.join(5)
    print(f"restarts: {monitor.restarts}; {never_started.name} is still {never_started.state}")
    ok = monitor.restarts == {"Worker-1": 2} and never_started.state is WorkerState.NEW
    if ok:
        print("patterns_health.py: done")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
