"""``nox -s bench``: every figure beside its baseline, measured in the same run.

Prints a table (figure, unit, ours, baseline, ratio, target) and writes JSON
to ``.bench/results.json``. Each figure is the median of repeated runs, with
min and max. The ratio is oriented so that above 1 always means "ours is
better": baseline ÷ ours for times and memory, ours ÷ baseline for
throughputs. ``--quick`` runs few repetitions and fewer items: a smoke test
that every figure is produced. The exit status is 1 when a figure could not
be produced (an error); it never depends on the values, and figures skipped
on purpose (uvloop not installed, a feature the library lacks) do not count.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import json
import multiprocessing
import os
import platform
import queue
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_workers import (
    BusyPeriodic,
    CountingThread,
    CrashingProcess,
    CrashingThread,
    GuideHealthMonitor,
    GuidePeriodic,
    IdleAsyncThread,
    IdleProcess,
    IdleThread,
    NullJobs,
    ReportingProcess,
    SeedLoopThread,
    bare_job_thread,
    bare_process_target,
    echo_round_trips,
    floor_passthrough_process,
    floor_process_stage,
    floor_thread_stage,
    increment,
    passthrough,
    quiet_logs,
    scrape,
)

from spoc.workers import START_METHOD_ENV, Backoff, Server, WorkerState
from spoc.workers.aio import run_async_safely
from spoc.workers.patterns import Pipeline

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
START_METHODS = ["fork", "spawn", "forkserver"]
DEFAULT_METHOD = os.environ.get(START_METHOD_ENV) or multiprocessing.get_start_method()
"""The start method of process workers that do not name one (what ProcessWorker picks)."""

MS, RATE, MIB = "ms", "items/s", "MiB"
"""Units: a time (stored in seconds, shown in ms), a throughput, a memory size."""


@dataclass
class Stat:
    """Median, min and max of repeated samples: seconds, items/s or MiB (see the figure's unit)."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, samples: list[float]) -> Stat:
        return cls(statistics.median(samples), min(samples), max(samples), len(samples))


@dataclass
class Figure:
    """One line of the table.

    ``status`` is ``"ok"``, ``"skipped"`` (could not run here, e.g. uvloop is
    not installed), ``"n/a"`` (the library has no such feature) or
    ``"missing"`` (an error: the run fails). ``ratio`` is above 1 when ours
    is better: baseline ÷ ours for ms and MiB, ours ÷ baseline for items/s;
    None when it means nothing (a missing side, a value at or below 0).
    """

    name: str
    ours: Stat | None
    baseline_name: str
    baseline: Stat | None
    unit: str = MS
    status: str = "ok"
    note: str = ""
    target: str = ""
    met: bool | None = None
    ratio: float | None = field(init=False)

    def __post_init__(self) -> None:
        self.ratio = None
        if self.ours is None or self.baseline is None:
            if self.status == "ok":
                self.status = "missing"
            return
        ours, base = self.ours.median, self.baseline.median
        if self.unit == RATE:
            self.ratio = ours / base if base > 0 else None
        elif ours > 0 and base > 0:
            self.ratio = base / ours

    def aim(self, target: str, check: Callable[[Figure], bool]) -> Figure:
        """Attach a target and whether this run met it (shown, never used for the exit status)."""
        self.target = target
        if self.status == "ok":
            self.met = bool(check(self))
        return self


def _repeat(n: int, measure: Callable[[], float]) -> Stat:
    return Stat.of([measure() for _ in range(n)])


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.001)


def _running(workers: Any) -> Callable[[], bool]:
    return lambda: all(w.state is WorkerState.RUNNING for w in workers)


@dataclass
class Sizes:
    """How much each figure does: full run or ``--quick``."""

    quick: bool
    reps: int  # latencies (figures 1, 3, 7)
    seed_reps: int  # anything that waits for the guide's sleep(1) loop
    flow_reps: int  # throughputs (figures 4, 5)
    pipeline_items: int
    job_items: int
    periodic_runs: int
    periodic_reps: int
    health_poll: float
    health_reps: int
    round_trips: int
    aio_reps: int
    memory_items: int
    memory_reps: int


FULL = Sizes(
    quick=False,
    reps=30,
    seed_reps=20,
    flow_reps=3,
    pipeline_items=100_000,
    job_items=100_000,
    periodic_runs=1000,
    periodic_reps=3,
    health_poll=5.0,
    health_reps=6,
    round_trips=20_000,
    aio_reps=5,
    memory_items=1_000_000,
    memory_reps=1,
)
QUICK = Sizes(
    quick=True,
    reps=3,
    seed_reps=2,
    flow_reps=1,
    pipeline_items=5_000,
    job_items=10_000,
    periodic_runs=100,
    periodic_reps=1,
    health_poll=0.5,
    health_reps=2,
    round_trips=2_000,
    aio_reps=2,
    memory_items=50_000,
    memory_reps=1,
)


# -- 1. stop latency ------------------------------------------------------------------


def _thread_stop(kind: type[IdleThread], settle: float = 0.0) -> float:
    worker = kind()
    worker.start()
    worker.entered.wait(10)
    if settle:
        time.sleep(random.uniform(0, settle))  # stop at a random point of the loop's sleep
    begun = time.perf_counter()
    worker.stop()
    worker.join(10)
    return time.perf_counter() - begun


def _event_floor() -> float:
    event = threading.Event()
    entered = threading.Event()

    def target() -> None:
        entered.set()
        event.wait()

    thread = threading.Thread(target=target)
    thread.start()
    entered.wait(10)
    begun = time.perf_counter()
    event.set()
    thread.join()
    return time.perf_counter() - begun


def _process_stop(method: str) -> float:
    context = multiprocessing.get_context(method)
    worker = IdleProcess(context.Event(), method)
    worker.start()
    worker.entered.wait(30)
    begun = time.perf_counter()
    worker.stop()
    worker.join(30)
    return time.perf_counter() - begun


def _below(limit: float, factor: float) -> Callable[[Figure], bool]:
    """The target check: median below ``limit`` seconds and ``factor`` times below the baseline."""
    return lambda f: f.ours is not None and f.ours.median < limit and (f.ratio or 0) >= factor


def stop_latency(sizes: Sizes) -> list[Figure]:
    """Figure 1: ``stop()`` → joined, vs the Workers guide's sleep(1) loop; floor: a bare Event."""
    seed = _repeat(sizes.seed_reps, lambda: _thread_stop(SeedLoopThread, settle=1.0))
    floor = _repeat(sizes.reps, _event_floor)
    thread = _repeat(sizes.reps, lambda: _thread_stop(IdleThread))
    figures = [
        Figure("stop: thread in self.sleep", thread, "guide loop", seed).aim(
            "< 2 ms, >= 100x", _below(0.002, 100)
        ),
        Figure(
            "stop: async thread in asleep",
            _repeat(sizes.reps, lambda: _thread_stop(IdleAsyncThread)),
            "guide loop",
            seed,
        ).aim("< 5 ms, >= 100x", _below(0.005, 100)),
        Figure("stop: thread in self.sleep", thread, "Event floor", floor),
    ]
    for method in START_METHODS:
        figures.append(
            Figure(
                f"stop: process ({method})",
                _repeat(sizes.reps, lambda m=method: _process_stop(m)),  # type: ignore[misc]
                "guide loop",
                seed,
            ).aim("< 20 ms, >= 100x", _below(0.020, 100))
        )
    return figures


# -- 2. run_forever: signal to exit ----------------------------------------------------


def _signal_to_exit(flavour: str, settle: float) -> float:
    """Start ``bench_scripts.py serve``, SIGTERM it once ready; seconds until the process is gone."""
    child = subprocess.Popen(
        [sys.executable, str(HERE / "bench_scripts.py"), "serve", flavour],
        stdout=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(60, child.kill)
    watchdog.start()
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"serve {flavour}: expected 'ready', got {line!r}")
        time.sleep(random.uniform(0, settle))  # a random point of the guide loop's sleep(1)
        begun = time.perf_counter()
        child.send_signal(signal.SIGTERM)
        code = child.wait()
        elapsed = time.perf_counter() - begun
    finally:
        watchdog.cancel()
        if child.poll() is None:
            child.kill()
            child.wait()
    if code != 0:
        raise RuntimeError(f"serve {flavour}: run_forever's process exited with {code}")
    return elapsed


def signal_to_exit(sizes: Sizes) -> list[Figure]:
    """Figure 2: SIGTERM → exit of run_forever with 10 mixed workers; baseline: the guide's sleep(1) loops."""
    ours = _repeat(sizes.seed_reps, lambda: _signal_to_exit("ours", 1.0))
    guide = _repeat(sizes.seed_reps, lambda: _signal_to_exit("guide", 1.0))
    return [
        Figure(
            f"SIGTERM->exit: run_forever, 10 workers ({DEFAULT_METHOD})",
            ours,
            "guide sleep(1) loops",
            guide,
            note="4 threads, 3 processes, 3 async threads; includes interpreter exit",
        )
    ]


# -- 3. start latency -----------------------------------------------------------------


def _thread_start_worker() -> float:
    worker = IdleThread()
    begun = time.perf_counter()
    worker.start()
    worker.entered.wait(10)
    elapsed = time.perf_counter() - begun
    worker.stop()
    worker.join(10)
    return elapsed


def _thread_start_bare() -> float:
    entered, stop = threading.Event(), threading.Event()

    def target() -> None:
        entered.set()
        stop.wait()

    thread = threading.Thread(target=target)
    begun = time.perf_counter()
    thread.start()
    entered.wait(10)
    elapsed = time.perf_counter() - begun
    stop.set()
    thread.join()
    return elapsed


def _process_start_worker(method: str) -> float:
    context = multiprocessing.get_context(method)
    worker = IdleProcess(context.Event(), method)
    begun = time.perf_counter()
    worker.start()
    worker.entered.wait(30)
    elapsed = time.perf_counter() - begun
    worker.stop()
    worker.join(30)
    return elapsed


def _process_start_bare(method: str) -> float:
    context = multiprocessing.get_context(method)
    entered, stop = context.Event(), context.Event()
    process = context.Process(target=bare_process_target, args=(entered, stop))
    begun = time.perf_counter()
    process.start()
    entered.wait(30)
    elapsed = time.perf_counter() - begun
    stop.set()
    process.join(30)
    return elapsed


def start_latency(sizes: Sizes) -> list[Figure]:
    """Figure 3: ``start()`` → ``main`` entered, vs a bare Thread / Process start (the floor)."""
    figures = [
        Figure(
            "start: thread",
            _repeat(sizes.reps, _thread_start_worker),
            "bare Thread",
            _repeat(sizes.reps, _thread_start_bare),
        )
    ]
    for method in START_METHODS:
        figures.append(
            Figure(
                f"start: process ({method})",
                _repeat(sizes.reps, lambda m=method: _process_start_worker(m)),  # type: ignore[misc]
                f"bare Process ({method})",
                _repeat(sizes.reps, lambda m=method: _process_start_bare(m)),  # type: ignore[misc]
            )
        )
    return figures


# -- 4. pipeline throughput ------------------------------------------------------------


def _pipeline_rate(kinds: list[str], items: int, maxsize: int, batch: int = 1) -> float:
    """Items/s through a Pipeline of ``increment`` stages, fed by feed(), read by results()."""
    pipeline = Pipeline("bench", maxsize=maxsize, start_method=DEFAULT_METHOD, batch=batch)
    for kind in kinds:
        pipeline.add_stage(increment, kind=kind)  # type: ignore[arg-type]
    pipeline.start()
    try:
        _wait_until(_running(pipeline.workers), 30, "the pipeline's workers")
        begun = time.perf_counter()
        pipeline.feed(range(items))
        count = sum(1 for _ in pipeline.results())
        elapsed = time.perf_counter() - begun
    finally:
        pipeline.stop(10)
    if count != items:
        raise RuntimeError(f"pipeline {kinds}: {count} results for {items} items")
    return items / elapsed


def _floor_rate(kinds: list[str], items: int, maxsize: int) -> float:
    """Items/s through hand-written stages: threads or Processes joined by the same queues as a Pipeline's."""
    context = multiprocessing.get_context(DEFAULT_METHOD)
    ends = ["thread", *kinds, "thread"]
    hops: list[Any] = [
        context.Queue(maxsize) if "process" in (ends[i], ends[i + 1]) else queue.Queue(maxsize)
        for i in range(len(kinds) + 1)
    ]
    carriers: list[Any] = []
    for index, kind in enumerate(kinds):
        target = floor_process_stage if kind == "process" else floor_thread_stage
        maker = context.Process if kind == "process" else threading.Thread
        carriers.append(maker(target=target, args=(hops[index], hops[index + 1]), daemon=True))
    for carrier in carriers:
        carrier.start()
    # Like the pipeline's: every stage is up (a process has answered) before the clock starts.
    hops[0].put(-1)
    if hops[-1].get(timeout=30) != -1 + len(kinds):
        raise RuntimeError("floor: wrong warm-up result")

    def feed() -> None:
        for item in range(items):
            hops[0].put(item)
        hops[0].put(None)

    begun = time.perf_counter()
    threading.Thread(target=feed, daemon=True).start()
    count = 0
    last = hops[-1]
    while last.get() is not None:
        count += 1
    elapsed = time.perf_counter() - begun
    for carrier in carriers:
        carrier.join(10)
    for hop in hops:
        if not isinstance(hop, queue.Queue):
            hop.close()
            hop.join_thread()
    if count != items:
        raise RuntimeError(f"floor {kinds}: {count} results for {items} items")
    return items / elapsed


LARGE_ITEM = 1 << 20
"""The size of one item of the large-items figure, in bytes."""


def _large_items_rate(items: int, ours: bool) -> float:
    """Items/s of ``LARGE_ITEM`` bytes each through one process and back: a Pipeline, or by hand."""
    payload = bytes(LARGE_ITEM)
    context = multiprocessing.get_context(DEFAULT_METHOD)
    if ours:
        pipeline = Pipeline("bench-large", maxsize=8, start_method=DEFAULT_METHOD)
        pipeline.add_stage(passthrough, kind="process")
        pipeline.start()
        try:
            _wait_until(_running(pipeline.workers), 30, "the pipeline's workers")
            begun = time.perf_counter()
            pipeline.feed(itertools.repeat(payload, items))
            count = sum(1 for _ in pipeline.results())
            elapsed = time.perf_counter() - begun
        finally:
            pipeline.stop(10)
    else:
        inbox, outbox = context.Queue(8), context.Queue(8)
        process = context.Process(target=floor_passthrough_process, args=(inbox, outbox), daemon=True)
        process.start()
        inbox.put(b"warm-up")
        outbox.get(timeout=30)

        def feed() -> None:
            for _ in range(items):
                inbox.put(payload)
            inbox.put(None)

        begun = time.perf_counter()
        threading.Thread(target=feed, daemon=True).start()
        count = 0
        while outbox.get() is not None:
            count += 1
        elapsed = time.perf_counter() - begun
        process.join(10)
        for q in (inbox, outbox):
            q.close()
            q.join_thread()
    if count != items:
        raise RuntimeError(f"large items ({'ours' if ours else 'floor'}): {count} results for {items} items")
    return items / elapsed


def pipeline_throughput(sizes: Sizes) -> list[Figure]:
    """Figure 4: Pipeline items/s vs hand-written queue chains (the floor), thread and process hops."""
    items, reps = sizes.pipeline_items, sizes.flow_reps
    figures: list[Figure] = []
    shapes = [
        ("thread>thread>thread", ["thread", "thread", "thread"], "queue.Queue chain", 0.8),
        ("thread>process>thread", ["thread", "process", "thread"], "mp.Queue chain, unbatched", 0.7),
    ]
    for maxsize in (8, 1024):
        for label, kinds, floor_name, factor in shapes:
            ours = _repeat(reps, lambda k=kinds, m=maxsize: _pipeline_rate(k, items, m))  # type: ignore[misc]
            floor = _repeat(reps, lambda k=kinds, m=maxsize: _floor_rate(k, items, m))  # type: ignore[misc]
            figures.append(
                Figure(
                    f"pipeline {label}, maxsize {maxsize}",
                    ours,
                    floor_name,
                    floor,
                    unit=RATE,
                    note=f"{items:,} ints, start method {DEFAULT_METHOD}",
                ).aim(f">= {factor}x floor", lambda f, x=factor: (f.ratio or 0) >= x)  # type: ignore[misc]
            )
    large = max(20, items // 300)
    ours = _repeat(reps, lambda: _large_items_rate(large, ours=True))
    floor = _repeat(reps, lambda: _large_items_rate(large, ours=False))
    figures.append(
        Figure(
            "pipeline process hop, 1 MiB bytes items",
            ours,
            "mp.Queue to a Process and back",
            floor,
            unit=RATE,
            note=f"{large} items of {LARGE_ITEM:,} bytes, one process stage passing them on, maxsize 8",
        )
    )
    kinds = ["thread", "process", "thread"]
    ours = _repeat(reps, lambda: _pipeline_rate(kinds, items, 8, batch=BATCH))
    floor = _repeat(reps, lambda: _floor_rate(kinds, items, 8))
    figures.append(
        Figure(
            "pipeline thread>process>thread, batched",
            ours,
            "mp.Queue chain, unbatched",
            floor,
            unit=RATE,
            note=f"{items:,} ints, Pipeline(maxsize=8, batch={BATCH}), start method {DEFAULT_METHOD}",
        ).aim(">= 3x unbatched floor", lambda f: (f.ratio or 0) >= 3)
    )
    return figures


BATCH = 256
"""The batch of the batched pipeline figure."""


# -- 5. job processor throughput ---------------------------------------------------------


def _jobs_rate(items: int, ours: bool) -> float:
    jobs: queue.Queue[int | None] = queue.Queue()
    for job in range(items):
        jobs.put(job)
    if ours:
        server = Server("bench-jobs")
        for i in range(2):
            server.add_worker(NullJobs(f"jobs-{i}", jobs))
        begun = time.perf_counter()
        server.start()
        jobs.join()
        elapsed = time.perf_counter() - begun
        server.stop()
        server.join_all(10)
    else:
        for _ in range(2):
            jobs.put(None)
        threads = [threading.Thread(target=bare_job_thread, args=(jobs,), daemon=True) for _ in range(2)]
        begun = time.perf_counter()
        for thread in threads:
            thread.start()
        jobs.join()
        elapsed = time.perf_counter() - begun
        for thread in threads:
            thread.join(10)
    return items / elapsed


def job_throughput(sizes: Sizes) -> list[Figure]:
    """Figure 5: 2 JobProcessors on a queue.Queue vs 2 bare threads doing get()/task_done()."""
    items = sizes.job_items
    reps = sizes.flow_reps + 2
    return [
        Figure(
            "JobProcessor x2, empty jobs",
            _repeat(reps, lambda: _jobs_rate(items, True)),
            "2 bare threads",
            _repeat(reps, lambda: _jobs_rate(items, False)),
            unit=RATE,
            note=f"{items:,} jobs queued beforehand; start() to queue.join()",
        )
    ]


# -- 6. periodic accuracy ------------------------------------------------------------------


def _periodic_run(worker: BusyPeriodic | GuidePeriodic, interval: float) -> tuple[float, float, float, int]:
    """(mean lateness, max lateness, end drift, skipped ticks) of one run of ``worker``."""
    worker.start()
    if not worker.done.wait(worker.runs * interval * 5 + 30):
        raise TimeoutError(f"{worker.name}: did not finish its runs")
    worker.join(10)
    first = worker.starts[0][0]
    lateness = [began - (first + tick * interval) for began, tick in worker.starts]
    last_tick = worker.starts[-1][1]
    skipped = last_tick - (len(worker.starts) - 1)
    return statistics.fmean(lateness), max(lateness), lateness[-1], skipped


def periodic_accuracy(sizes: Sizes) -> list[Figure]:
    """Figure 6: PeriodicWorker lateness and end drift at 10 ms with 3 ms of work, vs the guide's loop."""
    interval, work, runs = 0.010, 0.003, sizes.periodic_runs
    ours = [_periodic_run(BusyPeriodic(interval, work, runs), interval) for _ in range(sizes.periodic_reps)]
    guide = [_periodic_run(GuidePeriodic(interval, work, runs), interval) for _ in range(sizes.periodic_reps)]
    skipped = sum(r[3] for r in ours)
    note = f"{runs} runs every 10 ms, 3 ms busy; ticks skipped (overrun) over all reps: {skipped}"
    figures = []
    for index, what in enumerate(["mean lateness", "max lateness", f"end drift after {runs} runs"]):
        figures.append(
            Figure(
                f"periodic: {what}",
                Stat.of([r[index] for r in ours]),
                "guide loop",
                Stat.of([r[index] for r in guide]),
                note=note,
            )
        )
    figures[2].aim("< 1 interval (10 ms)", lambda f: f.ours is not None and abs(f.ours.median) < interval)
    return figures


# -- 7. failure repair ---------------------------------------------------------------------


def _expect(reports: Any, kind: str, timeout: float = 30) -> tuple[int, float]:
    """The next report (see ``bench_workers.report``): a queue.Queue, or a Pipe's receiving end."""
    if hasattr(reports, "recv"):
        if not reports.poll(timeout):
            raise TimeoutError(f"no {kind!r} report within {timeout:g}s")
        got, who, when = reports.recv()
    else:
        got, who, when = reports.get(timeout=timeout)
    if got != kind:
        raise RuntimeError(f"expected a {kind!r} report, got {got!r}")
    return who, when


def _repair_server(reps: int) -> Server:
    return Server(
        "bench-repair",
        backoff=Backoff(base=0.001, factor=1.0, cap=0.001, jitter=0.0),
        max_restarts=10 * reps + 10,
    )


def _repair_crash(reps: int, method: str | None) -> Stat:
    """Exception raised in main → the restarted run's main entered, under a Server (restart="always")."""
    server = _repair_server(reps)
    if method is None:
        reports: Any = queue.Queue()
        crash: Any = threading.Event()
        worker: Any = CrashingThread("crash-thread", reports, crash)
    else:
        context = multiprocessing.get_context(method)
        reports, sender = context.Pipe(duplex=False)
        crash = context.Event()
        worker = CrashingProcess(f"crash-{method}", sender, crash, method)
    server.add_worker(worker, restart="always")
    server.start()
    samples = []
    try:
        _expect(reports, "entered")
        for _ in range(reps):
            crash.set()
            _, raised = _expect(reports, "raise")
            _, entered = _expect(reports, "entered")
            samples.append(entered - raised)
    finally:
        server.stop()
        server.join_all(10)
    return Stat.of(samples)


def _repair_kill(reps: int, method: str) -> Stat:
    """SIGKILL of a process worker → the restarted run's main entered, under a Server."""
    server = _repair_server(reps)
    context = multiprocessing.get_context(method)
    reports, sender = context.Pipe(duplex=False)
    server.add_worker(ReportingProcess(f"kill-{method}", sender, method), restart="always")
    server.start()
    samples = []
    try:
        pid, _ = _expect(reports, "entered")
        for _ in range(reps):
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            pid, entered = _expect(reports, "entered")
            samples.append(entered - killed)
    finally:
        server.stop()
        server.join_all(10)
    return Stat.of(samples)


def _repair_guide(reps: int, poll: float) -> tuple[Stat, Stat, Stat]:
    """The guide's HealthMonitor: (thread crash, process crash, process SIGKILL) → restarted, all at once."""
    context = multiprocessing.get_context(DEFAULT_METHOD)
    thread_reports: Any = queue.Queue()
    thread_crash = threading.Event()
    crash_reports, crash_sender = context.Pipe(duplex=False)
    kill_reports, kill_sender = context.Pipe(duplex=False)
    crash_event = context.Event()
    watched: list[Any] = [
        CrashingThread("guide-crash-thread", thread_reports, thread_crash),
        CrashingProcess("guide-crash-process", crash_sender, crash_event, DEFAULT_METHOD),
        ReportingProcess("guide-kill-process", kill_sender, DEFAULT_METHOD),
    ]
    for worker in watched:
        worker.start()
    monitor = GuideHealthMonitor("guide-health", watched, poll)
    thread_samples, crash_samples, kill_samples = [], [], []
    try:
        _expect(thread_reports, "entered")
        _expect(crash_reports, "entered")
        pid, _ = _expect(kill_reports, "entered")
        monitor.start()
        for _ in range(reps):
            time.sleep(random.uniform(0, poll))  # fail at a random point of the monitor's poll
            thread_crash.set()
            crash_event.set()
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            _, thread_raised = _expect(thread_reports, "raise")
            _, crash_raised = _expect(crash_reports, "raise")
            timeout = poll + 30
            _, entered = _expect(thread_reports, "entered", timeout)
            thread_samples.append(entered - thread_raised)
            _, entered = _expect(crash_reports, "entered", timeout)
            crash_samples.append(entered - crash_raised)
            pid, entered = _expect(kill_reports, "entered", timeout)
            kill_samples.append(entered - killed)
    finally:
        monitor.stop()
        survivors, monitor.workers = list(monitor.workers), []
        time.sleep(0.05)  # a poll under way finishes its round
        for worker in survivors:
            worker.stop()
        for worker in survivors:
            worker.join(10)
    return Stat.of(thread_samples), Stat.of(crash_samples), Stat.of(kill_samples)


def failure_repair(sizes: Sizes) -> list[Figure]:
    """Figure 7: failure → restarted by a Server (restart="always"); baseline: the guide's HealthMonitor."""
    reps = max(3, sizes.reps * 2 // 3)
    poll = sizes.health_poll
    scaled = "" if poll == 5.0 else f", poll scaled to {poll:g} s"
    guide_thread, guide_crash, guide_kill = _repair_guide(sizes.health_reps, poll)
    baseline = f"guide HealthMonitor{scaled}"
    note = "Backoff(base=0.001, factor=1, jitter=0)"
    figures = [
        Figure(
            "repair: thread crash -> restarted", _repair_crash(reps, None), baseline, guide_thread, note=note
        )
    ]
    for method in START_METHODS:
        figures.append(
            Figure(
                f"repair: process crash -> restarted ({method})",
                _repair_crash(reps, method),
                baseline + ("" if method == DEFAULT_METHOD else f" ({DEFAULT_METHOD})"),
                guide_crash,
                note=note,
            )
        )
    for method in START_METHODS:
        figures.append(
            Figure(
                f"repair: process SIGKILL -> restarted ({method})",
                _repair_kill(reps, method),
                baseline + ("" if method == DEFAULT_METHOD else f" ({DEFAULT_METHOD})"),
                guide_kill,
                note=note,
            )
        )
    for figure in figures:
        if "crash" in figure.name:
            figure.aim("< 100 ms", lambda f: f.ours is not None and f.ours.median < 0.100)
        else:
            figure.aim("< 200 ms", lambda f: f.ours is not None and f.ours.median < 0.200)
    return figures


# -- 8. run_async_safely: uvloop vs asyncio ----------------------------------------------


def _round_trips(count: int, *, uvloop: bool) -> tuple[float, str]:
    begun = time.perf_counter()
    loop_type = run_async_safely(echo_round_trips(count), uvloop=uvloop)
    elapsed = time.perf_counter() - begun
    assert isinstance(loop_type, str)
    return elapsed, loop_type


def uvloop_ratio(sizes: Sizes) -> list[Figure]:
    """Figure 8: run_async_safely, socketpair echo round trips, uvloop vs the default asyncio loop."""
    count = sizes.round_trips
    name = f"run_async_safely: {count:,} round trips, uvloop"
    if importlib.util.find_spec("uvloop") is None:
        return [Figure(name, None, "asyncio loop", None, status="skipped", note="uvloop is not installed")]
    uv, default = [], []
    for _ in range(sizes.aio_reps):
        elapsed, loop_type = _round_trips(count, uvloop=True)
        if not loop_type.startswith("uvloop"):
            raise RuntimeError(f"uvloop=True, yet run_async_safely ran on {loop_type}")
        uv.append(elapsed)
        elapsed, loop_type = _round_trips(count, uvloop=False)
        if loop_type.startswith("uvloop"):
            raise RuntimeError(f"uvloop=False, yet run_async_safely ran on {loop_type}")
        default.append(elapsed)
    return [Figure(name, Stat.of(uv), "asyncio loop", Stat.of(default), note="64-byte messages, socketpair")]


# -- 9. memory -----------------------------------------------------------------------------


def _script(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, str(HERE / "bench_scripts.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def memory(sizes: Sizes) -> list[Figure]:
    """Figure 9: RSS of 100 idle ThreadWorkers vs 100 bare threads; RSS growth over a long thread pipeline."""
    reps = 5 if not sizes.quick else 2
    idle_ours = _repeat(reps, lambda: _script("idle", "workers", "100")["growth"])
    idle_bare = _repeat(reps, lambda: _script("idle", "threads", "100")["growth"])
    items = str(sizes.memory_items)

    def growth(kind: str) -> float:
        result = _script("flow", kind, items, "8")
        return result["after"] - result["before"]

    return [
        Figure(
            "memory: 100 idle ThreadWorkers in a Server",
            idle_ours,
            "100 threads on an Event",
            idle_bare,
            unit=MIB,
            note="VmRSS growth in a fresh process",
        ),
        Figure(
            f"memory: RSS growth, {sizes.memory_items:,} items, thread pipeline",
            _repeat(sizes.memory_reps, lambda: growth("pipeline")),
            "queue.Queue chain",
            _repeat(sizes.memory_reps, lambda: growth("floor")),
            unit=MIB,
            note="3 thread stages, maxsize 8; VmRSS after - before, in a fresh process",
        ),
    ]


# -- output ---------------------------------------------------------------------------------


def _value(value: float, unit: str) -> str:
    if unit == MS:
        return f"{value * 1000:.2f}"
    if unit == RATE:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def _stat(stat: Stat | None, unit: str, spread: bool = True) -> str:
    if stat is None:
        return "-"
    text = _value(stat.median, unit)
    if spread:
        text += f" [{_value(stat.low, unit)}-{_value(stat.high, unit)}]"
    return text


def print_table(figures: list[Figure]) -> None:
    """The table on stdout: median [min-max] per side, the ratio (above 1: ours is better), the target."""
    rows = [("figure", "unit", "ours: median [min-max]", "baseline", "baseline: median", "ratio", "target")]
    for f in figures:
        ratio = "-" if f.ratio is None else f"{f.ratio:,.2f}x"
        if f.status != "ok":
            ratio = f.status.upper()
        target = f.target
        if target:
            target += {True: "  met", False: "  NOT met", None: ""}[f.met]
        rows.append(
            (
                f.name,
                f.unit,
                _stat(f.ours, f.unit),
                f.baseline_name,
                _stat(f.baseline, f.unit, spread=False),
                ratio,
                target,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            print("-" * (sum(widths) + 2 * (len(widths) - 1)))
    print("\nratio: above 1 = ours is better (baseline / ours for ms and MiB, ours / baseline for items/s).")
    print("notes:")
    index = 0
    while index < len(figures):
        first, more = figures[index], 0
        while index + more + 1 < len(figures) and figures[index + more + 1].note == first.note:
            more += 1
        if first.note:
            print(f"  {first.name}{f' (and the {more} lines below)' if more else ''}: {first.note}")
        index += more + 1


def redis_throughput(sizes: Sizes) -> list[Figure]:
    """Figure 10: jobs/s through RedisStream with 1, 2, 4 processes vs bare XREADGROUP/XACK loops."""
    import bench_redis

    rows = bench_redis.measure(sizes.quick)
    if not rows:
        return [
            Figure(
                "redis: RedisStream jobs/s",
                None,
                "bare redis-py loop",
                None,
                unit=RATE,
                status="skipped",
                note="redis-server is not installed",
            )
        ]
    figures = [
        Figure(
            f"redis: RedisStream, {row['workers']} process(es)",
            Stat.of(row["ours"]),
            f"bare redis-py loop x{row['workers']}",
            Stat.of(row["bare"]),
            unit=RATE,
            note=f"{row['jobs']:,} JSON jobs, no work; start() to nothing pending (fork)",
        )
        for row in rows
        if row["workers"] != "pipeline"
    ]
    figures += [
        Figure(
            "redis: a Pipeline fed from RedisStream, at least once end to end",
            Stat.of(row["ours"]),
            "bare redis-py loop x1",
            Stat.of(row["bare"]),
            unit=RATE,
            note=f"{row['jobs']:,} JSON jobs, one thread stage passing them on; acknowledged once taken "
            "from results()",
        )
        for row in rows
        if row["workers"] == "pipeline"
    ]
    return figures


# -- 11. the HTTP endpoint's cost ------------------------------------------------------------


@contextlib.contextmanager
def _scraped(server: Server, http: bool, ready: Callable[[], object]) -> Iterator[None]:
    """Once ``ready()`` returned, scrape the started ``server``'s endpoint (when ``http``) inside the
    block, as Prometheus and a kubelet would; then stop the scraper and the server, however it ends."""
    stop_scraping = threading.Event()
    scraper: threading.Thread | None = None
    try:
        ready()
        if http:
            address = server.http_address
            assert address is not None
            scraper = threading.Thread(target=scrape, args=(address, stop_scraping), daemon=True)
            scraper.start()
        yield
    finally:
        stop_scraping.set()
        if scraper is not None:
            scraper.join(10)
        server.stop()
        server.join_all(10)


def _ops_sample(http: bool, window: float) -> tuple[float, float]:
    """(stop latency, loop rounds/s) of thread workers in a Server, with the endpoint on or off.

    With it on, a scraper asks for /metrics, /healthz and /readyz every second
    meanwhile, as Prometheus and a kubelet would. The loop rate is measured
    first; the stop of an idle worker after the busy loop has ended.
    """
    server = Server("bench-ops", http="127.0.0.1:0" if http else None)
    idle = IdleThread()
    counting = CountingThread()
    server.add_worker(idle)
    server.add_worker(counting)
    server.start()
    with _scraped(server, http, ready=lambda: (idle.entered.wait(10), counting.entered.wait(10))):
        before, begun = counting.count, time.perf_counter()
        time.sleep(window)
        rate = (counting.count - before) / (time.perf_counter() - begun)
        counting.stop()  # its busy loop would make the stop below wait for the GIL
        counting.join(10)
        time.sleep(random.uniform(0, 1.0))  # stop at a random point of the scrape period
        begun = time.perf_counter()
        idle.stop()
        idle.join(10)
        stopped = time.perf_counter() - begun
    return stopped, rate


def _jobs_sample(http: bool, window: float, backlog: int) -> float:
    """Jobs/s of a JobProcessor in a Server with empty jobs, the endpoint on and scraped, or off.

    With it on, each scrape of /metrics reads the job processor's counters
    and duration histogram.
    """
    jobs: queue.Queue[int] = queue.Queue()
    # Filled at once (put() one by one would take longer than the window); nothing waits on it yet.
    jobs.queue.extend(itertools.repeat(0, backlog))
    jobs.unfinished_tasks = backlog
    server = Server("bench-ops-jobs", http="127.0.0.1:0" if http else None)
    worker = NullJobs("jobs", jobs)
    server.add_worker(worker)
    server.start()

    def first_job_done() -> None:
        deadline = time.monotonic() + 10
        while worker.stats.processed == 0 and time.monotonic() < deadline:
            time.sleep(0.001)

    with _scraped(server, http, ready=first_job_done):
        before, begun = worker.stats.processed, time.perf_counter()
        time.sleep(window)
        done = worker.stats.processed - before
        rate = done / (time.perf_counter() - begun)
        if not jobs.queue:
            raise RuntimeError(f"the backlog of {backlog:,} jobs ran out within the window: make it larger")
    return rate


def http_endpoint_cost(sizes: Sizes) -> list[Figure]:
    """Figure 11: stop latency, a thread worker's loop rate and a JobProcessor's jobs/s, HTTP endpoint
    on and scraped vs off."""
    name_stop = "stop: thread in a Server, HTTP endpoint scraped 1/s"
    name_rate = "loop rate: thread in a Server, HTTP endpoint scraped 1/s"
    name_jobs = "JobProcessor, empty jobs, HTTP endpoint scraped 1/s"
    if importlib.util.find_spec("prometheus_client") is None:
        note = "prometheus_client (the http extra) is not installed"
        return [
            Figure(name_stop, None, "endpoint off", None, status="skipped", note=note),
            Figure(name_rate, None, "endpoint off", None, unit=RATE, status="skipped", note=note),
            Figure(name_jobs, None, "endpoint off", None, unit=RATE, status="skipped", note=note),
        ]
    reps, window = (2, 1.0) if sizes.quick else (8, 3.0)
    backlog = int(window * 3_000_000)  # several times what one thread gets through meanwhile
    on: list[tuple[float, float]] = []
    off: list[tuple[float, float]] = []
    jobs_on: list[float] = []
    jobs_off: list[float] = []
    for _ in range(reps):  # interleaved, so that both sides see the same machine
        on.append(_ops_sample(True, window))
        off.append(_ops_sample(False, window))
        jobs_on.append(_jobs_sample(True, window, backlog))
        jobs_off.append(_jobs_sample(False, window, backlog))
    note = f"{window:g} s windows; GET /metrics, /healthz, /readyz every second while on"
    return [
        Figure(
            name_stop, Stat.of([s for s, _ in on]), "endpoint off", Stat.of([s for s, _ in off]), note=note
        ),
        Figure(
            name_rate,
            Stat.of([r for _, r in on]),
            "endpoint off",
            Stat.of([r for _, r in off]),
            unit=RATE,
            note=note,
        ).aim(">= 0.95x off", lambda f: (f.ratio or 0) >= 0.95),
        Figure(name_jobs, Stat.of(jobs_on), "endpoint off", Stat.of(jobs_off), unit=RATE, note=note).aim(
            ">= 0.95x off", lambda f: (f.ratio or 0) >= 0.95
        ),
    ]


FIGURES: list[Callable[[Sizes], list[Figure]]] = [
    stop_latency,
    signal_to_exit,
    start_latency,
    pipeline_throughput,
    job_throughput,
    periodic_accuracy,
    failure_repair,
    uvloop_ratio,
    memory,
    redis_throughput,
    http_endpoint_cost,
]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="few repetitions and items: a smoke run")
    parser.add_argument("--only", help="comma-separated figure numbers to run (e.g. 4,7)")
    parser.add_argument("--out", default=str(ROOT / ".bench" / "results.json"))
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    chosen = FIGURES
    if args.only:
        numbers = {int(n) for n in args.only.split(",")}
        chosen = [f for i, f in enumerate(FIGURES, 1) if i in numbers]
    quiet_logs()
    figures: list[Figure] = []
    timings: dict[str, float] = {}
    for function in chosen:
        title = (function.__doc__ or function.__name__).split(":")[0]
        begun = time.monotonic()
        try:
            figures += function(sizes)
        except Exception:
            traceback.print_exc()
            figures.append(
                Figure(f"{title}: {function.__name__}", None, "-", None, note="raised: see stderr")
            )
        timings[function.__name__] = round(time.monotonic() - begun, 1)
        print(f"[{title} done in {timings[function.__name__]:.1f}s]", file=sys.stderr, flush=True)
    print_table(figures)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": {
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "cpus": multiprocessing.cpu_count(),
                    "default_start_method": DEFAULT_METHOD,
                },
                "quick": args.quick,
                "seconds_per_figure": timings,
                "figures": [asdict(f) for f in figures],
            },
            indent=2,
        )
    )
    missing = [f.name for f in figures if f.status == "missing"]
    if missing:
        print(f"figures not produced: {missing}", file=sys.stderr)
        return 1
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
