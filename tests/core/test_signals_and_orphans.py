"""Whole programs: run_forever under signals, and workers outliving a killed parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from targets import marks, wait_for

SCRIPTS = Path(__file__).resolve().parent.parent / "support" / "scripts"
WORKERS = ["t1", "t2", "p1", "p2"]


def _serve(directory: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPTS / "serve.py"), str(directory), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so killpg spares pytest
    )


def _wait_running(proc: subprocess.Popen[str], directory: Path, names: list[str]) -> None:
    try:
        wait_for(lambda: {f"{n}.main" for n in names} <= marks(directory) or proc.poll() is not None, 60)
    finally:
        if proc.poll() is not None:
            pytest.fail(f"serve.py ended early:\n{proc.communicate()[0]}")


def _finish(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"serve.py did not end within {timeout}s:\n{out}")
    return proc.returncode, out


@pytest.mark.parametrize("target", ["process", "group"])
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_signal_stops_every_worker_cleanly(tmp_path: Path, signame: str, target: str) -> None:
    proc = _serve(tmp_path)
    _wait_running(proc, tmp_path, WORKERS)
    signum = getattr(signal, signame)
    begun = time.monotonic()
    if target == "group":  # what a terminal's Ctrl+C and container runtimes do
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    code, out = _finish(proc, 10)
    elapsed = time.monotonic() - begun
    assert code == 0, out
    assert elapsed < 2.0, out
    assert {f"{n}.teardown" for n in WORKERS} <= marks(tmp_path), out
    assert f"received {signame}" in out


def test_a_second_signal_ends_a_stubborn_shutdown_at_once(tmp_path: Path) -> None:
    proc = _serve(tmp_path, "--stubborn")
    _wait_running(proc, tmp_path, [*WORKERS, "st", "sp"])
    proc.send_signal(signal.SIGTERM)
    # The cooperative workers finish; the stubborn ones hold the shutdown up...
    wait_for(lambda: {f"{n}.teardown" for n in WORKERS} <= marks(tmp_path), 30)
    assert proc.poll() is None
    begun = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # ...until the second signal.
    code, out = _finish(proc, 10)
    assert time.monotonic() - begun < 1.0, out
    assert code != 0
    assert "'st' did not stop in time" in out and "'sp' did not stop in time" in out


def _alive_in_group(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` that have not ended (zombies have)."""
    alive = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            alive.append(int(stat_file.parent.name))
    return alive


def _dead(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.parametrize("under", ["direct", "server"])
def test_workers_of_a_killed_parent_are_gone_within_stop_timeout_plus_1s(tmp_path: Path, under: str) -> None:
    args = ["--server"] if under == "server" else []
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "orphans.py"), str(tmp_path), *args],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert len(pids) == 5, line
        proc.kill()
        proc.wait(10)
        killed_at = time.monotonic()
        wait_for(lambda: all(_dead(pid) for pid in pids), timeout=10)
        elapsed = time.monotonic() - killed_at
        # multiprocessing's helpers (the forkserver, the resource tracker) end by themselves too,
        # the tracker after removing the semaphores the killed parent's queue left in /dev/shm.
        wait_for(lambda: not _alive_in_group(proc.pid), timeout=10)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        if proc.stdout is not None:
            proc.stdout.close()
    # The slowest have stop_timeout=1.0: the docs promise stop_timeout + 1 s.
    assert elapsed < 2.0
    found = marks(tmp_path)
    # Teardown runs wherever the interpreter can run it...
    assert {"coop-1.teardown", "coop-2.teardown", "coop-1.shutdown", "coop-2.shutdown"} <= found
    assert "flood.teardown" in found
    # ...and cannot where main ignores the stop or holds the GIL.
    assert "stubborn.teardown" not in found
    assert "gil.teardown" not in found
