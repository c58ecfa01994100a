"""Many lifetimes in one process: nothing a server or worker opened outlives it."""

from __future__ import annotations

import gc
import http.client
import importlib.util
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from spoc.workers import Server
from targets import Idle, ProcessIdle

SCRIPTS = Path(__file__).resolve().parent.parent / "support" / "scripts"
# Process cycles cost a start each: about 2 ms under fork, 50-110 ms otherwise.
PROCESS_CYCLES = 40


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _run_and_join(server: Server) -> None:
    server.start()
    server.stop()
    assert server.join_all(10) == []


HAS_HTTP = importlib.util.find_spec("prometheus_client") is not None


def _server(*, process: bool, http: bool = False) -> Server:
    server = Server("lifetime", http="127.0.0.1:0" if http else None)
    server.add_worker(Idle("idle"))
    if process:
        server.add_worker(ProcessIdle("pidle"))
    return server


@pytest.mark.parametrize("process", [False, True], ids=["thread", "process"])
def test_a_joined_server_holds_no_file_descriptor(process: bool) -> None:
    _run_and_join(_server(process=process))  # the first opens what lives as long as the process
    before = _open_fds()
    servers = [_server(process=process) for _ in range(10)]  # kept alive: no help from gc
    for server in servers:
        _run_and_join(server)
    assert _open_fds() == before


def _run_serve_and_join(server: Server) -> None:
    server.start()
    address = server.http_address
    assert address is not None
    for path in ("/healthz", "/metrics", "/"):  # each request opens a connection and a thread
        connection = http.client.HTTPConnection(*address, timeout=10)
        connection.request("GET", path)
        assert connection.getresponse().status == 200
        connection.close()
    server.stop()
    assert server.join_all(10) == []


@pytest.mark.skipif(not HAS_HTTP, reason="the http extra (prometheus_client) is not installed")
@pytest.mark.parametrize("process", [False, True], ids=["thread", "process"])
def test_a_joined_server_with_http_holds_no_file_descriptor(process: bool) -> None:
    _run_serve_and_join(_server(process=process, http=True))  # imports, the reaper's pipe...
    before = _open_fds()
    servers = [_server(process=process, http=True) for _ in range(10)]
    for server in servers:
        _run_serve_and_join(server)
    assert _open_fds() == before


@pytest.mark.no_processes
def test_a_server_never_started_holds_no_file_descriptor() -> None:
    before = _open_fds()
    servers = [_server(process=True) for _ in range(50)]
    assert _open_fds() == before
    assert all(not w.is_alive() for s in servers for w in s.workers)


@pytest.mark.parametrize("started", [False, True], ids=["never-started", "run-and-joined"])
def test_a_dropped_server_is_garbage_collected(started: bool) -> None:
    server = _server(process=True)
    if started:
        _run_and_join(server)
    ref = weakref.ref(server)
    worker_refs = [weakref.ref(w) for w in server.workers]
    del server
    gc.collect()
    assert ref() is None
    assert all(r() is None for r in worker_refs)


@pytest.mark.slow
@pytest.mark.parametrize("what", ["server", "pipeline"])
@pytest.mark.parametrize(
    ("kind", "cycles"),
    [
        pytest.param("thread", 10_000, id="thread", marks=pytest.mark.no_processes),  # in a subprocess
        pytest.param("process", PROCESS_CYCLES, id="process"),
    ],
)
def test_ten_thousand_lifetimes_one_after_another_under_ulimit_256(what: str, kind: str, cycles: int) -> None:
    """Servers or pipelines (thread or process workers) built, run and joined one after another."""
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "lifetimes.py"), what, kind, str(cycles), "256"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    _, before, after = done.stdout.split()
    # A leak only grows the count (and 10,000 cycles of it would pass the limit);
    # the first count may still hold a thread's pipe of the cycle before, on its way out.
    assert int(after) <= int(before), done.stdout
