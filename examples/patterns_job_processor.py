"""Pattern 1 of the Workers guide, with the ready-made ``JobProcessor``.

Two ``JobProcessor`` thread workers take jobs from one shared
``queue.Queue``: the guide's code, except that the class now comes from
``spoc.workers.patterns`` and only ``process_job`` is written. The main
program queues ten jobs, starts the server, waits with ``job_queue.join()``
until every job was processed, then stops the workers and waits for them.

Unlike a ``get(timeout=1.0)`` loop, the workers wait on the queue in a way
their ``stop()`` wakes at once, so the server stops in milliseconds.

Run it with ``python examples/patterns_job_processor.py``.
"""

from __future__ import annotations

import sys
import time
from queue import Queue

from spoc.workers import Server, WorkerState
from spoc.workers.patterns import JobProcessor


class GuideJobProcessor(JobProcessor):
    """Process jobs from a shared queue."""

    def process_job(self, job):
        """Process a single job."""
        print(f"{self.name} processing: {job}")
        time.sleep(0.5)  # Simulate work


def main() -> int:
    """Queue ten jobs, process them with two workers, stop."""
    # Create shared queue
    job_queue = Queue()

    # Create server with multiple workers
    server = Server(name="JobServer")
    server.add_worker(GuideJobProcessor("Worker-1", job_queue))
    server.add_worker(GuideJobProcessor("Worker-2", job_queue))

    # Add jobs
    for i in range(10):
        job_queue.put(f"Job-{i}")

    # Process jobs
    began = time.monotonic()
    server.start()
    job_queue.join()  # Wait for all jobs to complete
    print(f"all 10 jobs processed in {time.monotonic() - began:.2f}s by 2 workers")
    asked = time.monotonic()
    server.stop()
    still_alive = server.join_all()
    print(f"stopped in {(time.monotonic() - asked) * 1000:.1f} ms")

    processed = {worker.name: worker.stats.processed for worker in server.workers}
    print(f"jobs per worker: {processed}")
    ok = (
        not still_alive
        and sum(processed.values()) == 10
        and all(worker.state is WorkerState.STOPPED for worker in server.workers)
    )
    if ok:
        print("patterns_job_processor.py: done")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
