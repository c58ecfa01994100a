"""A tour of the Workers guide's workers, in their corrected form.

The guide's "Next steps" points here. Each scene runs one of its examples,
fixed as the "From the Workers guide" page of the documentation explains
(``docs/from-the-guide.md``), and checks that it did what the guide says:

1. ``LogWatcher``, a ThreadWorker: reports the ERROR lines added to a log file;
2. ``HashCalculator``, a ProcessWorker: hashes files in a child process, the
   paths in and the digests out through ``multiprocessing`` queues;
3. ``MonitoredWorker``: the lifecycle events, also for a worker whose
   ``setup()`` fails (no "startup"; ``teardown()`` and "shutdown" still run);
4. a ``Server`` of a thread and a process worker under ``run_forever()``,
   stopped by a SIGTERM (the script sends it to itself): exit status 0;
5. ``AsyncAPIWorker``: async hooks on one event loop (uvloop when
   installed), and ``run_async_safely()``;
6. the patterns: a job processor whose ``job_queue.join()`` returns although
   a job fails, a periodic task, the thread → process → thread pipeline, and
   a health monitor that restarts only the worker that failed.

Run it with ``python examples/workers.py`` from the repository's root; it
ends by itself in a few seconds and prints ``workers.py: done`` last. The
library's log lines (the tracebacks of the failures it shows) go to stderr.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import multiprocessing
import os
import queue
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from spoc.workers import ProcessWorker, Server, ThreadWorker, WorkerState, run_async_safely
from spoc.workers.aio import uvloop_enabled
from spoc.workers.patterns import PeriodicWorker, Pipeline, ProcessStageWorker, StageWorker


def say(message: str) -> None:
    """Print a whole line at once, from any thread or process."""
    print(message + "\n", end="", flush=True)


def wait_until(condition: Any, timeout: float = 30.0) -> None:
    """Wait until ``condition()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"still waiting after {timeout}s")
        time.sleep(0.01)


# -- 1. ThreadWorker: an I/O-bound task ------------------------------------------


class LogWatcher(ThreadWorker):
    """Watch a log file for new entries."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.errors: list[str] = []

    def setup(self) -> None:
        self.log_file = open(self.path)  # noqa: SIM115 - closed in teardown()
        self.log_file.seek(0, 2)  # move to the end of the file

    def main(self) -> None:
        while self.is_running:
            line = self.log_file.readline()
            if line:
                if "ERROR" in line:
                    self.errors.append(line.strip())
                    say(f"  Error detected: {line.strip()}")
            else:
                self.sleep(0.05)  # a stop ends the wait at once

    def teardown(self) -> None:
        log_file = getattr(self, "log_file", None)  # setup() may have failed before opening it
        if log_file is not None:
            log_file.close()


def thread_worker(directory: Path) -> None:
    log = directory / "app.log"
    log.write_text("ERROR from before the watcher started\n")
    watcher = LogWatcher(str(log))
    watcher.start()
    wait_until(lambda: watcher.state is not WorkerState.STARTING)
    with log.open("a") as f:
        f.write("INFO all good\nERROR disk full\n")
    wait_until(lambda: watcher.errors)
    watcher.stop()
    watcher.join()
    assert watcher.errors == ["ERROR disk full"] and watcher.state is WorkerState.STOPPED


# -- 2. ProcessWorker: a CPU-bound task ------------------------------------------


class HashCalculator(ProcessWorker):
    """Calculate hashes for files in a queue, in a child process."""

    def __init__(self) -> None:
        super().__init__()
        context = multiprocessing.get_context(self.start_method)  # queues of the worker's method
        self.files: Any = context.Queue()
        self.digests: Any = context.Queue()

    def main(self) -> None:
        while self.is_running:
            try:
                path = self.files.get(timeout=0.1)
            except queue.Empty:
                continue
            sha256 = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(4096), b""):
                    sha256.update(chunk)
            self.digests.put((path, sha256.hexdigest()))


def process_worker(directory: Path) -> None:
    worker = HashCalculator()
    paths = []
    for i in range(3):
        path = directory / f"file{i}.bin"
        path.write_bytes(os.urandom(10_000 * (i + 1)))
        paths.append(str(path))
        worker.files.put(str(path))
    worker.start()
    digests = dict(worker.digests.get(timeout=60) for _ in paths)
    worker.stop()
    worker.join()
    for path in paths:
        assert digests[path] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    say(f"  {len(digests)} files hashed in process {worker.pid}; exit code {worker.exitcode}")
    assert worker.state is WorkerState.STOPPED


# -- 3. The lifecycle and its events ----------------------------------------------


class MonitoredWorker(ThreadWorker):
    """Worker with lifecycle event handling."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        self.events: list[str] = []

    def lifecycle(self, event_type: str, **data: Any) -> None:
        self.events.append(event_type)
        if event_type == "startup":
            self.context.start_time = time.time()
        elif event_type == "error":
            say(f"  {self.name} error in {data['phase']}(): {data['exception']!r}")

    def main(self) -> None:
        while self.sleep(0.05):
            pass


class BrokenSetup(MonitoredWorker):
    def setup(self) -> None:
        raise ConnectionError("database unreachable")


def lifecycle_events() -> None:
    worker, broken = MonitoredWorker(), BrokenSetup()
    worker.start()
    broken.start()
    broken.join()
    wait_until(lambda: worker.state is WorkerState.RUNNING)
    worker.stop()
    worker.join()
    say(f"  {worker.name}: {worker.events}; {broken.name}: {broken.events}")
    assert worker.events == ["startup", "shutdown"]
    assert broken.events == ["error", "shutdown"]  # "startup" means setup() completed


# -- 4. A Server under run_forever(), stopped by a signal -------------------------


class Worker1(ThreadWorker):
    def main(self) -> None:
        while self.sleep(1):
            say(f"  {self.name} working...")


class Worker2(ProcessWorker):
    def main(self) -> None:
        while self.sleep(1):
            say(f"  {self.name} processing...")

    def teardown(self) -> None:
        say(f"  {self.name}: teardown in its own process")


def server_and_signals() -> None:
    server = Server(name="MyAppServer")
    workers = [server.add_worker(Worker1("ThreadWorker-1")), server.add_worker(Worker2("ProcessWorker-1"))]

    def signal_when_running() -> None:
        wait_until(lambda: all(w.state is WorkerState.RUNNING for w in workers))
        say("  sending SIGTERM to myself")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=signal_when_running, name="signaller").start()
    status = server.run_forever()  # returns once the SIGTERM has stopped every worker
    say(f"  run_forever() returned {status}")
    assert status == 0 and all(w.state is WorkerState.STOPPED for w in workers)


# -- 5. Async support ------------------------------------------------------------------


class AsyncAPIWorker(ThreadWorker):
    """Worker that makes async requests: every hook of a run on one event loop."""

    async def setup(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.fetched = 0

    async def main(self) -> None:
        while self.is_running:
            await asyncio.sleep(0.01)  # stands for an HTTP request
            self.fetched += 1
            await self.asleep(0.05)  # a stop ends this wait at once

    async def teardown(self) -> None:
        assert asyncio.get_running_loop() is self.loop  # the loop setup() ran on
        say(f"  {self.name}: {self.fetched} fetches, every hook on one loop ({type(self.loop).__module__})")


async def double(x: int) -> int:
    await asyncio.sleep(0.01)
    return 2 * x


async def inside_a_loop() -> int:
    task = run_async_safely(double(5))  # a loop runs here: scheduled as a task
    assert isinstance(task, asyncio.Task)
    return await task


def async_support() -> None:
    worker = AsyncAPIWorker()
    worker.start()
    wait_until(lambda: getattr(worker, "fetched", 0) >= 2)
    worker.stop()
    worker.join()
    assert worker.state is WorkerState.STOPPED
    assert run_async_safely(double(21)) == 42  # no loop here: run to completion
    assert asyncio.run(inside_a_loop()) == 10
    say(f"  run_async_safely(): 42 and 10; uvloop in use: {uvloop_enabled()}")


# -- 6. The patterns ------------------------------------------------------------------


class JobProcessor(ThreadWorker):
    """Process jobs from a shared queue; task_done() for every job, failed or not."""

    def __init__(self, name: str, job_queue: queue.Queue[str]) -> None:
        super().__init__(name)
        self.job_queue = job_queue
        self.done = 0

    def main(self) -> None:
        while self.is_running:
            try:
                job = self.job_queue.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                self.process_job(job)
                self.done += 1
            except Exception:
                logging.getLogger("workers.py").exception("%s: %s failed", self.name, job)
            finally:
                self.job_queue.task_done()

    def process_job(self, job: str) -> None:
        if job == "Job-3":
            raise ValueError(f"{job} is broken")


class DataSync(PeriodicWorker):
    """The guide's periodic task, on the ready-made drift-free schedule."""

    def execute_task(self) -> None:
        pass  # sync data here


class FetchStage(StageWorker):
    def process_item(self, item: int) -> dict[str, Any]:
        return {"id": item, "raw_data": f"data-{item}"}


class TransformStage(ProcessStageWorker):
    def process_item(self, item: dict[str, Any]) -> dict[str, Any]:
        return {**item, "transformed": True}


class SaveStage(StageWorker):
    def process_item(self, item: dict[str, Any]) -> None:
        return None  # saved: nothing goes further


class HealthMonitor(ThreadWorker):
    """Restart the workers whose run failed, as the same objects."""

    def __init__(self, name: str, workers_to_monitor: list[ThreadWorker]) -> None:
        super().__init__(name)
        self.workers = workers_to_monitor

    def main(self) -> None:
        while self.sleep(0.05):
            for worker in self.workers:
                if worker.state is WorkerState.FAILED and not worker.is_alive():
                    say(f"  Worker {worker.name} failed, restarting...")
                    worker.start()


class Fetcher(ThreadWorker):
    """Has a constructor argument; its first run fails."""

    def __init__(self, name: str, url: str) -> None:
        super().__init__(name)
        self.url = url
        self.runs = 0

    def main(self) -> None:
        self.runs += 1
        if self.runs == 1:
            raise ConnectionError(f"{self.url} unreachable")
        while self.sleep(0.05):
            pass


class OneShot(ThreadWorker):
    def main(self) -> None:
        pass  # done at once, cleanly: not to be restarted


def patterns() -> None:
    job_queue: queue.Queue[str] = queue.Queue()
    with Server("JobServer") as server:
        processors = [server.add_worker(JobProcessor(f"Worker-{n}", job_queue)) for n in (1, 2)]
        for i in range(10):
            job_queue.put(f"Job-{i}")
        server.start()
        job_queue.join()  # returns although Job-3 failed
    done = sum(p.done for p in processors if isinstance(p, JobProcessor))
    say(f"  job processor: {done} of 10 jobs done, 1 failed, and job_queue.join() returned")
    assert done == 9

    sync = DataSync("DataSync", interval_seconds=0.05)
    sync.start()
    wait_until(lambda: sync.stats.runs >= 3)
    sync.stop()
    sync.join()
    say(f"  periodic task: {sync.stats.runs} runs, {sync.stats.failures} failures")

    pipeline = Pipeline("Pipeline")
    pipeline.add_stage(FetchStage).add_stage(TransformStage).add_stage(SaveStage)
    with pipeline:
        pipeline.start()
        pipeline.feed(range(10))
        pipeline.join()
    stats = pipeline.stats
    say(f"  pipeline: accepted={stats.accepted} saved={stats.dropped} failed={stats.failed}")
    assert (stats.accepted, stats.dropped, stats.failed) == (10, 10, 0)

    fetcher, one_shot = Fetcher("fetcher", "https://example.invalid"), OneShot("one-shot")
    with Server("monitored") as server:
        server.add_worker(fetcher)
        server.add_worker(one_shot)
        server.add_worker(HealthMonitor("monitor", [fetcher, one_shot]))
        server.start()
        wait_until(lambda: fetcher.runs == 2 and fetcher.state is WorkerState.RUNNING)
    say(f"  health monitor: fetcher ran {fetcher.runs} times, one-shot {one_shot.state.value}")
    assert one_shot.state is WorkerState.STOPPED


def main() -> int:
    """Run every scene; return the exit status."""
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        scenes = [
            ("1. ThreadWorker: LogWatcher", lambda: thread_worker(directory)),
            ("2. ProcessWorker: HashCalculator", lambda: process_worker(directory)),
            ("3. lifecycle events", lifecycle_events),
            ("4. Server, run_forever() and signals", server_and_signals),
            ("5. async support", async_support),
            ("6. patterns", patterns),
        ]
        for title, scene in scenes:
            say(title)
            scene()
    say("workers.py: done")
    return 0


if __name__ == "__main__":  # needed under spawn and forkserver: children import this module
    sys.exit(main())
