"""Recycling: a worker's run replaced by a fresh one at an age, a memory size or a job count."""

from __future__ import annotations

import os
import random
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ops_targets import Grows, ProcessIdle, ProcessJobs, ProcessSleeper, Sleeper, ThreadJobs, teardowns
from spoc.workers import Backoff, Recycle, Server, ThreadWorker
from spoc.workers._process import resident_bytes
from spoc.workers._recycle import MIB, RecycleWatch
from targets import Events, wait_for

THREAD_ONLY = pytest.mark.no_processes


def _recycles(server: Server) -> int:
    return int(server.status()[0]["restart_reasons"].get("recycle", 0))


def _check_recycled(server: Server, events: Events, directory: Path, name: str, times: int) -> None:
    """Recycled ``times`` times: events, status, teardowns, no give-up, running again."""
    wait_for(lambda: _recycles(server) >= times and server.status()[0]["state"] == "running", timeout=60)
    entry = server.status()[0]
    assert set(entry["restart_reasons"]) == {"recycle"}, entry
    assert entry["restarts"] == entry["restart_reasons"]["recycle"]
    recycled = events.of("recycled")
    assert len(recycled) >= times and all(e.reason == "recycle" for e in recycled)
    assert all(e.reason == "recycle" for e in events.of("restart"))
    assert teardowns(directory, name) >= times  # stopped gracefully: teardown ran each time
    assert not server.gave_up  # max_restarts=0: a recycle never counts


def _server(events: Events) -> Server:
    return Server("recycling", on_event=events, max_restarts=0, backoff=Backoff(base=5.0, cap=5.0))


# -- the limits, under every start method --------------------------------------------------------


@pytest.mark.parametrize("kind", [pytest.param("thread", marks=THREAD_ONLY), "process"])
def test_a_worker_is_recycled_by_age(kind: str, tmp_path: Path) -> None:
    events = Events()
    server = _server(events)
    worker: Any = (
        Sleeper("aged", str(tmp_path)) if kind == "thread" else ProcessSleeper("aged", str(tmp_path))
    )
    server.add_worker(worker, recycle=Recycle(seconds=0.3, jitter=0.0))
    pids = set()
    with server:
        server.start()
        wait_for(lambda: server.status()[0]["state"] == "running", timeout=30)
        begun = time.monotonic()
        pids.add(worker.pid)
        wait_for(lambda: _recycles(server) >= 1, timeout=30)
        first = time.monotonic() - begun
        _check_recycled(server, events, tmp_path, "aged", 2)
        pids.add(worker.pid)
        assert "age" in events.of("recycled")[0].message
    assert 0.2 < first < 10, first  # at its age, 0.3 s, not at once
    if kind == "process":
        assert len(pids) == 2  # a fresh child


@pytest.mark.parametrize("kind", [pytest.param("thread", marks=THREAD_ONLY), "process"])
def test_a_worker_is_recycled_by_its_job_count(kind: str, tmp_path: Path) -> None:
    events = Events()
    server = _server(events)
    cls = ThreadJobs if kind == "thread" else ProcessJobs
    worker = cls("jobs", str(tmp_path), every=0.002)
    server.add_worker(worker, recycle=Recycle(jobs=40, jitter=0.0, interval=0.02))
    with server:
        server.start()
        _check_recycled(server, events, tmp_path, "jobs", 2)
        message = events.of("recycled")[0].message
        assert "jobs >= 40" in message, message
        assert worker.jobs_done() >= 80  # two runs of at least 40 jobs each


def test_a_process_worker_is_recycled_by_its_resident_memory(tmp_path: Path) -> None:
    baseline_worker = ProcessIdle("baseline")
    baseline_worker.start()
    try:
        wait_for(lambda: resident_bytes(baseline_worker.pid) is not None)
        time.sleep(0.2)  # let the child finish importing before its size is read
        baseline = resident_bytes(baseline_worker.pid) or 0
    finally:
        baseline_worker.stop()
        baseline_worker.join(30)
    limit = baseline / MIB + 40
    events = Events()
    server = _server(events)
    server.add_worker(
        Grows("hog", str(tmp_path), mib=100), recycle=Recycle(rss_mb=limit, jitter=0.0, interval=0.05)
    )
    with server:
        server.start()
        _check_recycled(server, events, tmp_path, "hog", 2)
        message = events.of("recycled")[0].message
        assert "resident memory" in message and f">= {limit:.1f} MiB" in message, message


@THREAD_ONLY
def test_a_worker_that_stays_within_its_limits_is_left_alone(tmp_path: Path) -> None:
    events = Events()
    server = _server(events)
    worker = ThreadJobs("calm", str(tmp_path), every=0.05)
    server.add_worker(worker, recycle=Recycle(seconds=3600, jobs=10_000, interval=0.02))
    with server:
        server.start()
        wait_for(lambda: worker.jobs_done() >= 10)
        assert not events.of("recycled") and server.status()[0]["restarts"] == 0


# -- refused set-ups ----------------------------------------------------------------------------


@THREAD_ONLY
def test_rss_mb_for_a_thread_worker_is_refused_naming_it(tmp_path: Path) -> None:
    server = Server("s")
    with pytest.raises(
        ValueError, match=re.escape("worker 'thready': Recycle(rss_mb=...) needs a process worker")
    ):
        server.add_worker(Sleeper("thready", str(tmp_path)), recycle=Recycle(rss_mb=100))
    assert server.workers == ()


@THREAD_ONLY
def test_jobs_for_a_worker_that_does_not_count_them_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=re.escape("'sleepy': Recycle(jobs=...) needs a worker that counts its jobs")
    ):
        Server("s").add_worker(Sleeper("sleepy", str(tmp_path)), recycle=Recycle(jobs=10))


@THREAD_ONLY
def test_recycle_must_be_a_recycle(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="recycle must be a Recycle"):
        Server("s").add_worker(Sleeper("w", str(tmp_path)), recycle={"seconds": 1})  # type: ignore[arg-type]


@THREAD_ONLY
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({}, ValueError, "at least one limit"),
        ({"seconds": 0}, ValueError, "seconds must be a finite number > 0"),
        ({"rss_mb": -1}, ValueError, "rss_mb must be"),
        ({"jobs": 0}, ValueError, "jobs must be an int >= 1"),
        ({"jobs": 2.5}, TypeError, "jobs must be an int"),
        ({"seconds": 1, "jitter": 1.0}, ValueError, "jitter must be in [0, 1)"),
        ({"seconds": 1, "jitter": -0.1}, ValueError, "jitter must be"),
        ({"seconds": 1, "interval": 0}, ValueError, "interval must be"),
    ],
)
def test_recycle_checks_its_arguments(kwargs: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        Recycle(**kwargs)


# -- jitter --------------------------------------------------------------------------------------


@THREAD_ONLY
def test_jitter_spreads_each_run_below_the_limit_and_none_means_exact() -> None:
    rng = random.Random(7)
    watch = RecycleWatch(Recycle(seconds=100, rss_mb=200, jobs=1000, jitter=0.2), rng)
    drawn = []
    for run in range(1, 51):
        watch.begin(run, 0.0, 0)
        assert watch.seconds is not None and watch.rss_bytes is not None and watch.jobs is not None
        assert 80 <= watch.seconds <= 100
        assert 160 * MIB <= watch.rss_bytes <= 200 * MIB
        assert 800 <= watch.jobs <= 1000
        drawn.append(watch.seconds)
    assert max(drawn) - min(drawn) > 10  # spread over the band, not one value
    exact = RecycleWatch(Recycle(seconds=100, jitter=0.0))
    exact.begin(1, 0.0, None)
    assert exact.seconds == 100


@THREAD_ONLY
def test_siblings_started_together_are_recycled_at_different_moments(tmp_path: Path) -> None:
    events = Events()
    server = Server("siblings", on_event=events, max_restarts=0)
    for index in range(4):
        server.add_worker(Sleeper(f"s{index}", str(tmp_path)), recycle=Recycle(seconds=1.0, jitter=0.5))
    with server:
        server.start()
        wait_for(lambda: len({e.worker for e in events.of("recycled")}) == 4, timeout=30)
    first = {}
    for event in events.of("recycled"):
        first.setdefault(event.worker, event.time)
    moments = sorted(first.values())
    assert moments[-1] - moments[0] > 0.02, moments  # a herd would recycle within a few ms


# -- a restart due while the worker is still stopping ---------------------------------------------


class SlowToStop(ThreadWorker):
    """Takes ``seconds`` in teardown (after a stop): its state is STOPPING meanwhile."""

    def __init__(self, name: str, seconds: float) -> None:
        super().__init__(name)
        self.seconds = seconds
        self.stopping = threading.Event()

    def main(self) -> None:
        while self.sleep(3600):
            pass

    def teardown(self) -> None:
        self.stopping.set()
        time.sleep(self.seconds)


class FailsOnRequest(ThreadWorker):
    """Fails (once) as soon as its ``fail`` event is set."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.fail = threading.Event()

    def main(self) -> None:
        while not self.fail.wait(0.01):
            if not self.is_running:
                return
        self.fail.clear()  # once
        raise RuntimeError("asked to fail")


def _cpu_seconds(thread: threading.Thread) -> float:
    """CPU time (user + system) of one of our threads, from /proc."""
    stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@THREAD_ONLY
def test_a_restart_due_while_a_worker_is_still_stopping_does_not_spin_the_supervisor() -> None:
    server = Server("group", strategy="one_for_all", backoff=Backoff(base=0.01, cap=0.01, jitter=0.0))
    failing = FailsOnRequest("failing")
    slow = SlowToStop("slow", seconds=1.5)
    server.add_worker(failing, restart="always")
    server.add_worker(slow, restart="always")
    with server:
        server.start()
        wait_for(lambda: all(e["state"] == "running" for e in server.status()))
        supervisor = next(t for t in threading.enumerate() if t.name == "group:supervisor")
        before = _cpu_seconds(supervisor)
        failing.fail.set()  # one_for_all: "slow" is stopped with it and restarts after 10 ms...
        assert slow.stopping.wait(10)  # ...but takes 1.5 s to stop
        wait_for(lambda: server.status()[1]["restarts"] == 1, timeout=30)
        used = _cpu_seconds(supervisor) - before
    assert used < 0.3, f"the supervisor used {used:.2f}s of CPU while waiting 1.5 s"
