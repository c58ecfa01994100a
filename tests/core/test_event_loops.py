"""The event loop of a worker's async hooks: uvloop by default when installed, with an opt-out.

Process workers are tried under every start method here (not only this cell's):
a ``spawn`` or ``forkserver`` child starts with a fresh module state and must
still follow the parent's choice.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from spoc.workers import WorkerState, aio
from spoc.workers.aio import LOOP_ENV, set_uvloop_if_available, use_default_loop
from targets import DEFAULT_LOOP, UVLOOP_INSTALLED, LoopReporter, ThreadLoopRecorder

START_METHODS = ["fork", "spawn", "forkserver"]
HOOKS = ("setup", "startup", "main", "teardown")
SCRIPT = Path(__file__).resolve().parents[1] / "support" / "scripts" / "loops.py"


@pytest.fixture(autouse=True)
def fresh_loop_choice(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with the loop not chosen yet, as in a new process; restored after."""
    saved = aio._loops._factory
    monkeypatch.delenv(LOOP_ENV, raising=False)
    aio._loops._factory = None
    yield
    aio._loops._factory = saved


def _thread_loops() -> dict[str, str]:
    worker = ThreadLoopRecorder()
    worker.start()
    assert worker.join(30)
    assert worker.state is WorkerState.STOPPED, worker.exception
    return worker.seen


def _process_loops(tmp_path: Path, method: str) -> dict[str, str]:
    worker = LoopReporter(f"loops-{method}", str(tmp_path), start_method=method)
    worker.start()
    assert worker.join(60)
    assert worker.state is WorkerState.STOPPED, worker.exception
    text = (tmp_path / f"loops-{method}.loops").read_text()
    return dict(pair.split("=") for pair in text.split())


@pytest.mark.no_processes
def test_a_thread_workers_async_hooks_run_on_uvloop_by_default() -> None:
    assert _thread_loops() == dict.fromkeys(HOOKS, DEFAULT_LOOP)


@pytest.mark.parametrize("method", START_METHODS)
def test_a_process_workers_async_hooks_run_on_uvloop_by_default(tmp_path: Path, method: str) -> None:
    assert _process_loops(tmp_path, method) == dict.fromkeys(HOOKS, DEFAULT_LOOP)


@pytest.mark.no_processes
def test_use_default_loop_opts_a_thread_worker_out() -> None:
    use_default_loop()
    assert _thread_loops() == dict.fromkeys(HOOKS, "asyncio")


@pytest.mark.parametrize("method", START_METHODS)
def test_the_child_follows_the_parents_opt_out(tmp_path: Path, method: str) -> None:
    use_default_loop()  # in the parent only: the child's environment still says nothing
    assert _process_loops(tmp_path, method) == dict.fromkeys(HOOKS, "asyncio")


@pytest.mark.parametrize("method", START_METHODS)
def test_the_child_follows_the_parents_opt_in(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, method: str
) -> None:
    monkeypatch.setenv(LOOP_ENV, "asyncio")  # what a spawned child would choose by itself
    assert set_uvloop_if_available() is UVLOOP_INSTALLED
    assert _process_loops(tmp_path, method) == dict.fromkeys(HOOKS, DEFAULT_LOOP)


def test_spoc_workers_loop_asyncio_opts_workers_out(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(LOOP_ENV, "asyncio")
    assert _thread_loops() == dict.fromkeys(HOOKS, "asyncio")
    assert _process_loops(tmp_path, "spawn") == dict.fromkeys(HOOKS, "asyncio")


def _run_script(tmp_path: Path, **env: str) -> dict[str, dict[str, str]]:
    environ = {k: v for k, v in os.environ.items() if k != LOOP_ENV}
    environ.update(env)
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(SCRIPT), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environ,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no DeprecationWarning (event-loop policy, fork) nor anything else
    seen = {}
    for line in proc.stdout.splitlines():
        name, *pairs = line.split()
        seen[name] = dict(pair.split("=") for pair in pairs)
    return seen


def test_no_warning_under_w_error_and_uvloop_everywhere(tmp_path: Path) -> None:
    seen = _run_script(tmp_path)
    assert seen == {name: dict.fromkeys(HOOKS, DEFAULT_LOOP) for name in ["thread", *START_METHODS]}


def test_no_warning_under_w_error_with_the_opt_out(tmp_path: Path) -> None:
    seen = _run_script(tmp_path, **{LOOP_ENV: "asyncio"})
    assert seen == {name: dict.fromkeys(HOOKS, "asyncio") for name in ["thread", *START_METHODS]}
