"""Workers and baselines measured by the benchmarks (importable, for spawn children)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from typing import Any

from spoc.workers import ProcessWorker, ThreadWorker
from spoc.workers.patterns import JobProcessor, PeriodicWorker


class IdleThread(ThreadWorker):
    """Sits in the framework's wait; ``entered`` is set once main runs."""

    def __init__(self, name: str = "idle-thread") -> None:
        super().__init__(name)
        self.entered = threading.Event()

    def main(self) -> None:
        self.entered.set()
        while self.sleep(3600):
            pass


class IdleAsyncThread(IdleThread):
    async def main(self) -> None:  # type: ignore[override]
        self.entered.set()
        while await self.asleep(3600):
            pass


class SeedLoopThread(IdleThread):
    """The Workers guide's loop: ``while self.is_running: ...; time.sleep(1)``."""

    def main(self) -> None:
        self.entered.set()
        while self.is_running:
            time.sleep(1)


class IdleProcess(ProcessWorker):
    """Sits in the framework's wait; sets the multiprocessing event ``entered``."""

    def __init__(self, entered: Any, start_method: str) -> None:
        super().__init__("idle-process", start_method=start_method)
        self.entered = entered

    def main(self) -> None:
        self.entered.set()
        while self.sleep(3600):
            pass


def bare_process_target(entered: Any, stop: Any) -> None:
    """The floor for processes: a bare multiprocessing.Process waiting on an Event."""
    entered.set()
    stop.wait()


def _now() -> float:
    """The clock every figure uses; CLOCK_MONOTONIC, so comparable across processes."""
    return time.monotonic()


def busy(seconds: float) -> None:
    """Spin on the CPU for ``seconds`` (the periodic figure's 3 ms of work)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


# -- 2. run_forever signal-to-exit ------------------------------------------------------


class ParkedProcess(ProcessWorker):
    """A process worker parked in the framework's wait."""

    def main(self) -> None:
        while self.sleep(3600):
            pass


class GuideSleepThread(ThreadWorker):
    """The Workers guide's thread loop: ``while self.is_running: time.sleep(1)``."""

    def main(self) -> None:
        while self.is_running:
            time.sleep(1)


class GuideSleepProcess(ProcessWorker):
    """The Workers guide's process loop: ``while self.is_running: time.sleep(1)``."""

    def main(self) -> None:
        while self.is_running:
            time.sleep(1)


class GuideSleepAsync(ThreadWorker):
    """The Workers guide's async loop: ``while self.is_running: await asyncio.sleep(1)``."""

    async def main(self) -> None:
        while self.is_running:
            await asyncio.sleep(1)


# -- 4. pipelines ------------------------------------------------------------------------


def increment(item: int) -> int:
    """The work of every pipeline stage (module level: process stages import it)."""
    return item + 1


def floor_thread_stage(inbox: Any, outbox: Any) -> None:
    """A hand-written stage: ``get``, work, ``put``, until the ``None`` sentinel."""
    while True:
        item = inbox.get()
        if item is None:
            outbox.put(None)
            return
        outbox.put(increment(item))


def passthrough(item: Any) -> Any:
    """A stage that passes its item on unchanged: with large items, the figure is the hop's cost."""
    return item


def floor_passthrough_process(inbox: Any, outbox: Any) -> None:
    """A hand-written process stage passing items on until (and including) ``None``."""
    while True:
        item = inbox.get()
        outbox.put(item)
        if item is None:
            break
    outbox.close()
    outbox.join_thread()


def floor_process_stage(inbox: Any, outbox: Any) -> None:
    """The same stage as a multiprocessing.Process target (flushes its queue before exit)."""
    floor_thread_stage(inbox, outbox)
    outbox.close()
    outbox.join_thread()


# -- 5. job processors -----------------------------------------------------------------


class NullJobs(JobProcessor):
    """A job processor whose jobs cost nothing: the figure is the framework's overhead."""

    def process_job(self, job: Any) -> None:
        return None


def bare_job_thread(jobs: Any) -> None:
    """The floor: ``get()``, process, ``task_done()`` until ``None``."""
    while True:
        job = jobs.get()
        if job is None:
            jobs.task_done()
            return
        jobs.task_done()


# -- 6. periodic accuracy ------------------------------------------------------------------


class BusyPeriodic(PeriodicWorker):
    """A PeriodicWorker doing ``work`` seconds of CPU; records (start, tick) of every run."""

    def __init__(self, interval: float, work: float, runs: int) -> None:
        super().__init__("busy-periodic", interval)
        self.work = work
        self.runs = runs
        self.starts: list[tuple[float, int]] = []
        self.done = threading.Event()

    def execute_task(self) -> None:
        began = _now()
        stats = self.stats  # runs and skipped ticks before this run: this run's tick
        self.starts.append((began, stats.runs + stats.skipped))
        busy(self.work)
        if len(self.starts) >= self.runs:
            self.done.set()
            self.stop()


class GuidePeriodic(ThreadWorker):
    """The Workers guide's "Pattern 2: Periodic Tasks" loop, copied as written.

    Only ``execute_task`` is filled in (the guide leaves it to the user): it
    records its start, does ``work`` seconds of CPU and stops after ``runs``.
    """

    def __init__(self, interval: float, work: float, runs: int) -> None:
        super().__init__("guide-periodic")
        self.interval = interval
        self.work = work
        self.runs = runs
        self.starts: list[tuple[float, int]] = []
        self.done = threading.Event()

    def main(self) -> None:
        while self.is_running:
            start_time = time.time()
            self.execute_task()
            elapsed = time.time() - start_time
            sleep_time = max(0, self.interval - elapsed)
            while sleep_time > 0 and self.is_running:
                time.sleep(min(1.0, sleep_time))
                sleep_time -= 1.0

    def execute_task(self) -> None:
        self.starts.append((_now(), len(self.starts)))
        busy(self.work)
        if len(self.starts) >= self.runs:
            self.done.set()
            self.stop()


# -- 11. the HTTP endpoint's cost ----------------------------------------------------------


class CountingThread(ThreadWorker):
    """Counts rounds of a ``while self.is_running`` loop with a heartbeat: a worker's own pace."""

    def __init__(self, name: str = "counting-thread") -> None:
        super().__init__(name)
        self.count = 0
        self.entered = threading.Event()

    def main(self) -> None:
        self.entered.set()
        while self.is_running:
            self.heartbeat()
            self.count += 1


def scrape(address: tuple[str, int], stop: threading.Event, every: float = 1.0) -> None:
    """What Prometheus and a kubelet do: GET /metrics, /healthz and /readyz every ``every`` seconds."""
    import http.client

    while not stop.wait(every):
        for path in ("/metrics", "/healthz", "/readyz"):
            connection = http.client.HTTPConnection(*address, timeout=10)
            try:
                connection.request("GET", path)
                connection.getresponse().read()
            finally:
                connection.close()


# -- 7. failure repair ---------------------------------------------------------------------


def quiet_logs() -> None:
    """Crashes are logged with tracebacks: format them, as an application would, then discard them."""
    logger = logging.getLogger("spoc.workers")
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler(open(os.devnull, "w")))  # noqa: SIM115 (lives with the process)
        logger.propagate = False


def report(reports: Any, message: tuple[str, int, float]) -> None:
    """Send a report: ``reports`` is a queue.Queue (threads) or a Pipe's sending Connection.

    Processes that get SIGKILLed report over a pipe of their own rather than a
    multiprocessing.Queue: a Queue's feeder thread holds a lock shared by every
    writer while it sends, and a process killed in that moment leaves the lock
    taken for good, so the next process's reports would never arrive.
    """
    if hasattr(reports, "send"):
        reports.send(message)
    else:
        reports.put(message)


class CrashingThread(ThreadWorker):
    """Reports ``("entered", ident, t)`` on entering main; raises when ``crash`` is set (see :func:`report`).

    ``("raise", t)`` is reported just before the exception is raised.
    """

    def __init__(self, name: str, reports: Any, crash: Any) -> None:
        super().__init__(name)
        self.reports = reports
        self.crash = crash

    def main(self) -> None:
        report(self.reports, ("entered", threading.get_ident(), _now()))
        while self.is_running:
            if self.crash.wait(0.05):
                self.crash.clear()
                report(self.reports, ("raise", 0, _now()))
                raise RuntimeError("benchmark crash")

    def fresh(self) -> CrashingThread:
        return type(self)(self.name, self.reports, self.crash)


class CrashingProcess(ProcessWorker):
    """:class:`CrashingThread` in a process (``reports``: a Pipe end; ``crash``: an Event of its context)."""

    def __init__(self, name: str, reports: Any, crash: Any, start_method: str) -> None:
        super().__init__(name, start_method=start_method)
        self.reports = reports
        self.crash = crash

    def setup(self) -> None:
        quiet_logs()  # a spawned child has no handler: its crash log would go to stderr

    def main(self) -> None:
        report(self.reports, ("entered", os.getpid(), _now()))
        while self.is_running:
            if self.crash.wait(0.05):
                self.crash.clear()
                report(self.reports, ("raise", os.getpid(), _now()))
                raise RuntimeError("benchmark crash")

    def fresh(self) -> CrashingProcess:
        return type(self)(self.name, self.reports, self.crash, self.start_method)


class ReportingProcess(ProcessWorker):
    """Reports ``("entered", pid, t)`` on entering main, then parks (to be SIGKILLed); see :func:`report`."""

    def __init__(self, name: str, reports: Any, start_method: str) -> None:
        super().__init__(name, start_method=start_method)
        self.reports = reports

    def main(self) -> None:
        report(self.reports, ("entered", os.getpid(), _now()))
        while self.sleep(3600):
            pass

    def fresh(self) -> ReportingProcess:
        return type(self)(self.name, self.reports, self.start_method)


class GuideHealthMonitor(ThreadWorker):
    """The Workers guide's "Pattern 4: Health Monitoring", as written, with two adaptations.

    ``worker._thread_or_process.is_alive()`` does not exist in spoc-workers:
    ``worker.is_alive()`` is its public equivalent; and ``type(worker)(worker.name)``
    cannot rebuild workers that take more arguments than a name, so each
    monitored worker has ``fresh()``. ``poll`` is the guide's ``time.sleep(5)``.
    """

    def __init__(self, name: str, workers_to_monitor: list[Any], poll: float = 5.0) -> None:
        super().__init__(name)
        self.workers = workers_to_monitor
        self.poll = poll

    def main(self) -> None:
        while self.is_running:
            for worker in self.workers:
                if not worker.is_alive():
                    self.restart_worker(worker)
            time.sleep(self.poll)  # the guide: time.sleep(5)

    def restart_worker(self, worker: Any) -> None:
        new_worker = worker.fresh()  # the guide: type(worker)(worker.name)
        new_worker.start()
        idx = self.workers.index(worker)
        self.workers[idx] = new_worker


# -- 8. run_async_safely with and without uvloop -------------------------------------------


async def echo_round_trips(count: int, size: int = 64) -> str:
    """``count`` request/response round trips over a socketpair; returns the loop's type name."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    peer_reader, peer_writer = await asyncio.open_connection(sock=theirs)

    async def echo() -> None:
        while True:
            data = await peer_reader.read(65536)
            if not data:
                break
            peer_writer.write(data)
            await peer_writer.drain()
        peer_writer.close()

    task = loop.create_task(echo())
    payload = b"x" * size
    for _ in range(count):
        writer.write(payload)
        await writer.drain()
        await reader.readexactly(size)
    writer.close()
    await task
    await writer.wait_closed()
    return type(loop).__module__ + "." + type(loop).__name__


# -- 9. memory -----------------------------------------------------------------------------


def rss_mib() -> float:
    """This process's resident set size (VmRSS of /proc/self/status), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")
