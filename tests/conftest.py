"""Suite-wide fixtures: the start method of this run, and a leak check on every test."""

from __future__ import annotations

import faulthandler
import gc
import importlib.util
import multiprocessing
import multiprocessing.process
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import pytest

from marks import PROCESS_FREE_SITE
from spoc.workers import START_METHOD_ENV
from spoc.workers.aio import LOOP_ENV

START_METHOD = os.environ.get(START_METHOD_ENV) or multiprocessing.get_start_method()
PRIMARY_START_METHOD = "forkserver"  # Linux's default from Python 3.14 on
"""Tests marked ``no_processes`` cannot depend on the start method: they run in
this cell of the nox matrix only (once per Python), and there it is checked that
they really start no process."""
UVLOOP_EXPECTED = os.environ.get("SPOC_WORKERS_TEST_UVLOOP")
UVLOOP_INSTALLED = importlib.util.find_spec("uvloop") is not None
LEAK_GRACE = 5.0  # seconds a test's threads and processes get to finish after it
WATCHDOG_SECONDS = float(os.environ.get("SPOC_WORKERS_TEST_WATCHDOG", "300"))
"""How long one test (fixtures and leak check included), or the interpreter's exit after
the last one, may take before the watchdog writes every thread's stack and ends the run.

pytest-timeout (120 s a test) cannot end every hang: not one in the cleanup that its own
timeout set off, nor one in the interpreter's exit (a join at exit). The watchdog turns
those into a failed run with the stacks in its log, instead of a run that never ends."""

if UVLOOP_EXPECTED is not None:
    # Each nox cell says whether it installed uvloop: its async hooks must then get it by default.
    assert (UVLOOP_EXPECTED == "1") == UVLOOP_INSTALLED, (
        f"SPOC_WORKERS_TEST_UVLOOP={UVLOOP_EXPECTED}, yet uvloop importable is {UVLOOP_INSTALLED}"
    )
# The suite tests the automatic choice of loop; tests that opt out do so themselves.
LOOP_ENV_GIVEN = os.environ.pop(LOOP_ENV, None)


class _ProcessStarts:
    """Counts the processes started here, to hold ``no_processes`` tests to their word."""

    count = 0

    @classmethod
    def install(cls) -> None:
        process_start = multiprocessing.process.BaseProcess.start

        def start(self: Any, *args: Any, **kwargs: Any) -> None:
            cls.count += 1
            process_start(self, *args, **kwargs)

        multiprocessing.process.BaseProcess.start = start  # type: ignore[method-assign]


_ProcessStarts.install()


class _Watchdog:
    """faulthandler's timer, armed anew as each test starts and once more for the exit."""

    stream: TextIO | None = None

    @classmethod
    def arm(cls) -> None:
        if cls.stream is None:  # a copy of stderr from before any test's capture
            cls.stream = os.fdopen(os.dup(2), "w")
        faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True, file=cls.stream)


def pytest_configure(config: pytest.Config) -> None:
    _Watchdog.arm()


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    _Watchdog.arm()


def pytest_unconfigure(config: pytest.Config) -> None:
    _Watchdog.arm()  # the exit: atexit handlers, joins of threads and the resource tracker


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Outside the primary start method, leave out the tests that start no process."""
    if START_METHOD == PRIMARY_START_METHOD:
        return
    kept = [item for item in items if item.get_closest_marker("no_processes") is None]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


@pytest.fixture(autouse=True)
def starts_no_process_if_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """A ``no_processes`` test that starts a process fails: it would skip start methods it needs."""
    before = _ProcessStarts.count
    marked = request.node.get_closest_marker("no_processes") is not None
    if marked:  # its subprocesses are held to it by process_free_site's sitecustomize
        monkeypatch = request.getfixturevalue("monkeypatch")
        monkeypatch.setenv("SPOC_WORKERS_TEST_NO_PROCESSES", "1")
        paths = [str(PROCESS_FREE_SITE), *filter(None, [os.environ.get("PYTHONPATH")])]
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    yield
    if marked and _ProcessStarts.count != before:
        pytest.fail(
            "this test is marked no_processes but started a process: remove the mark "
            "(it must run under every start method)",
            pytrace=False,
        )


def pytest_report_header() -> list[str]:
    ignored = f", ${LOOP_ENV}={LOOP_ENV_GIVEN!r} ignored" if LOOP_ENV_GIVEN is not None else ""
    return [
        f"spoc-workers: start method {START_METHOD!r}, uvloop expected: {UVLOOP_EXPECTED!r}, "
        f"installed: {UVLOOP_INSTALLED}{ignored}"
    ]


@pytest.fixture
def start_method() -> str:
    """The start method every ProcessWorker of this run uses."""
    return START_METHOD


def _infrastructure_pids() -> set[int]:
    """Long-lived helpers: the fork server, the resource tracker and our reaper."""
    from spoc.workers._reaper import reaper_pid

    pids: set[int] = set()
    reaper = reaper_pid()
    if reaper:
        pids.add(reaper)
    try:
        from multiprocessing import forkserver

        pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
        if pid:
            pids.add(pid)
    except Exception:
        pass
    try:
        from multiprocessing import resource_tracker

        pid = getattr(resource_tracker._resource_tracker, "_pid", None)
        if pid:
            pids.add(pid)
    except Exception:
        pass
    return pids


def live_children() -> set[int]:
    """Living (non-zombie) children of this process and of the fork server."""
    infra = _infrastructure_pids()
    parents = {os.getpid()} | infra
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, ppid = fields[0], int(fields[1])
        pid = int(entry.name)
        if ppid in parents and pid not in infra and state != "Z":
            found.add(pid)
    return found


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail any test that leaves a thread or a child process behind."""
    threads_before = set(threading.enumerate())
    children_before = live_children()
    yield
    # What the test dropped is collected here, in plain code. Left to the collector's own
    # timing, a multiprocessing semaphore held in a reference cycle (a user's queue held by
    # a worker held by its server) can be finalised in the middle of another call into the
    # resource tracker (CPython gh-109629: ReentrantCallError on 3.11+, a deadlock on 3.10).
    gc.collect()
    deadline = time.monotonic() + LEAK_GRACE
    while True:
        multiprocessing.active_children()  # reap finished multiprocessing children
        threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        children = live_children() - children_before
        if not threads and not children:
            return
        if time.monotonic() > deadline:
            for pid in children:
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
            pytest.fail(
                f"test leaked threads {[t.name for t in threads]} and child processes {sorted(children)}",
                pytrace=False,
            )
        time.sleep(0.02)
