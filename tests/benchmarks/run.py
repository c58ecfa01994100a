"""``nox -s bench``: every figure beside its baseline, measured in the same run.

Prints a table (figure, ours, baseline, ratio) and writes JSON to
``.bench/results.json``. Each figure is the median of repeated runs, with min
and max; the ratio is baseline ÷ ours (above 1: we are faster). ``--quick``
runs few repetitions: a smoke test that every figure is produced.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_workers import (
    IdleAsyncThread,
    IdleProcess,
    IdleThread,
    SeedLoopThread,
    bare_process_target,
)

ROOT = Path(__file__).resolve().parents[2]
START_METHODS = ["fork", "spawn", "forkserver"]


@dataclass
class Stat:
    """Median, min and max of repeated samples, in seconds."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, samples: list[float]) -> Stat:
        return cls(statistics.median(samples), min(samples), max(samples), len(samples))


@dataclass
class Figure:
    """One line of the table."""

    name: str
    ours: Stat
    baseline_name: str
    baseline: Stat
    ratio: float = field(init=False)

    def __post_init__(self) -> None:
        self.ratio = self.baseline.median / self.ours.median if self.ours.median else float("inf")


def _repeat(n: int, measure: Callable[[], float]) -> Stat:
    return Stat.of([measure() for _ in range(n)])


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


def stop_latency(reps: int, seed_reps: int) -> list[Figure]:
    """``stop()`` → joined, vs the Workers guide's sleep(1) loop; floor: a bare Event."""
    seed = _repeat(seed_reps, lambda: _thread_stop(SeedLoopThread, settle=1.0))
    floor = _repeat(reps, _event_floor)
    figures = [
        Figure(
            "stop: thread in self.sleep", _repeat(reps, lambda: _thread_stop(IdleThread)), "guide loop", seed
        ),
        Figure(
            "stop: async thread in asleep",
            _repeat(reps, lambda: _thread_stop(IdleAsyncThread)),
            "guide loop",
            seed,
        ),
        Figure(
            "stop: thread in self.sleep",
            _repeat(reps, lambda: _thread_stop(IdleThread)),
            "Event floor",
            floor,
        ),
    ]
    for method in START_METHODS:
        figures.append(
            Figure(
                f"stop: process ({method})",
                _repeat(reps, lambda m=method: _process_stop(m)),  # type: ignore[misc]
                "guide loop",
                seed,
            )
        )
    return figures


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


def start_latency(reps: int) -> list[Figure]:
    """``start()`` → ``main`` entered, vs a bare Thread / Process start (the floor)."""
    figures = [
        Figure(
            "start: thread",
            _repeat(reps, _thread_start_worker),
            "bare Thread",
            _repeat(reps, _thread_start_bare),
        )
    ]
    for method in START_METHODS:
        figures.append(
            Figure(
                f"start: process ({method})",
                _repeat(reps, lambda m=method: _process_start_worker(m)),  # type: ignore[misc]
                f"bare Process ({method})",
                _repeat(reps, lambda m=method: _process_start_bare(m)),  # type: ignore[misc]
            )
        )
    return figures


# -- output ---------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def print_table(figures: list[Figure]) -> None:
    """The table on stdout: median [min-max] for each side, and the ratio."""
    header = f"{'figure':34} {'ours (median [min-max])':34} {'baseline':22} {'baseline (median)':18} ratio"
    print(header)
    print("-" * len(header))
    for f in figures:
        ours = f"{_ms(f.ours.median)} [{_ms(f.ours.low)}-{_ms(f.ours.high)}]"
        print(f"{f.name:34} {ours:34} {f.baseline_name:22} {_ms(f.baseline.median):18} {f.ratio:,.1f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few repetitions: a smoke run")
    parser.add_argument("--out", default=str(ROOT / ".bench" / "results.json"))
    args = parser.parse_args()
    reps = 3 if args.quick else 30
    seed_reps = 2 if args.quick else 8
    figures = stop_latency(reps, seed_reps) + start_latency(reps)
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
                },
                "quick": args.quick,
                "figures": [asdict(f) for f in figures],
            },
            indent=2,
        )
    )
    missing = [f.name for f in figures if not (f.ours.n and f.baseline.n)]
    if missing:
        print(f"figures not produced: {missing}", file=sys.stderr)
        return 1
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
