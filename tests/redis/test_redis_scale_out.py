"""Two Servers in two processes share one stream, as two machines would."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from redis_targets import seen, seen_key
from spoc.workers.redis import RedisStream
from targets import wait_for

SCRIPT = Path(__file__).resolve().parent.parent / "support" / "scripts" / "redis_consumer.py"
JOBS = 10_000


@pytest.fixture
def stream(redis_url: str, stream_name: str) -> Iterator[RedisStream]:
    s = RedisStream(stream_name, url=redis_url)
    yield s
    s.client().delete(seen_key(s))
    s.delete()
    s.close()


def start_consumer(stream: RedisStream, claim_idle: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), stream.url, stream.stream, str(claim_idle), "2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def finish(procs: list[subprocess.Popen[str]]) -> list[int]:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(30))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
    return codes


@pytest.mark.no_processes  # thread job processors in each server
def test_two_servers_process_10000_jobs_exactly_once(stream: RedisStream) -> None:
    procs = [start_consumer(stream, claim_idle=30.0) for _ in range(2)]
    try:
        stream.enqueue_many(range(JOBS))
        wait_for(lambda: stream.pending() == 0 and len(seen(stream)) == JOBS, timeout=120)
    finally:
        codes = finish(procs)
    assert codes == [0, 0]
    counts = seen(stream)
    assert len(counts) == JOBS and set(counts.values()) == {1}


@pytest.mark.no_processes  # thread job processors in each server
def test_kill_9_of_one_server_midway_loses_no_job(stream: RedisStream) -> None:
    procs = [start_consumer(stream, claim_idle=0.5) for _ in range(2)]
    try:
        stream.enqueue_many(range(JOBS))
        wait_for(lambda: len(seen(stream)) >= JOBS // 4, timeout=120)
        procs[0].kill()  # SIGKILL: no teardown, no hand-back, its pending jobs stay pending
        procs[0].wait(10)
        wait_for(lambda: stream.pending() == 0 and len(seen(stream)) == JOBS, timeout=120)
    finally:
        codes = finish(procs)
    assert codes[1] == 0
    counts = seen(stream)
    duplicates = sum(n - 1 for n in counts.values())
    print(f"\n{JOBS} jobs after kill -9: every one processed, {duplicates} processed twice")
    assert len(counts) == JOBS  # none lost
    # Only what the killed server had read but not acknowledged can repeat:
    # at most a batch per worker, plus the job each had in hand.
    assert duplicates <= 2 * (stream.batch + 1)
