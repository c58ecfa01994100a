"""Pattern 1 of the Workers guide: a background job processor.

Two ``JobProcessor`` thread workers take jobs from one shared
``queue.Queue``. The main program queues ten jobs, starts the server, waits
with ``job_queue.join()`` until every job was processed, then stops the
workers and waits for them.

``queue.get(timeout=1.0)`` lets each worker look at ``is_running`` at least
once a second, so the workers stop within a second once asked.

Run it with ``python examples/job_processor.py``.
"""

from __future__ import annotations

import sys
import time
from queue import Queue

from spoc.workers import Server, ThreadWorker, WorkerState


class JobProcessor(ThreadWorker):
    """Process jobs from a shared queue."""

    def __init__(self, name, job_queue):
        super().__init__(name)
        self.job_queue = job_queue

    def main(self):
        """Process jobs until stopped."""
        while self.is_running:
            try:
                # Get job with timeout to allow checking is_running
                job = self.job_queue.get(timeout=1.0)
                self.process_job(job)
                self.job_queue.task_done()
            except Exception:
                # Queue empty, continue
                continue

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
    server.add_worker(JobProcessor("Worker-1", job_queue))
    server.add_worker(JobProcessor("Worker-2", job_queue))

    # Add jobs
    for i in range(10):
        job_queue.put(f"Job-{i}")

    # Process jobs
    began = time.monotonic()
    server.start()
    job_queue.join()  # Wait for all jobs to complete
    print(f"all 10 jobs processed in {time.monotonic() - began:.2f}s by 2 workers (0.5 s of work each)")
    server.stop()
    still_alive = server.join_all()

    states = {worker.name: str(worker.state) for worker in server.workers}
    print(f"workers: {states}")
    if not still_alive and all(w.state is WorkerState.STOPPED for w in server.workers):
        print("job_processor.py: done")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
