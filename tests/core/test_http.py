"""The HTTP endpoint of a Server: every route and every refusal, on a real bound loopback port."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prometheus_client", reason="the http extra of spoc-workers-core is not installed")

from prometheus_client.parser import text_string_to_metric_families

from ops_targets import CrashesSoon, Idle, Pacer, ProcessIdle, ProcessJobs, ThreadJobs, get_json, request
from spoc.workers import Backoff, Server, ThreadWorker, WorkerEvent, WorkerState, _http
from spoc.workers._errors import HttpBindError
from spoc.workers._http import MAX_BODY, MAX_CONNECTIONS, parse_address
from targets import Events, wait_for

TESTS = Path(__file__).resolve().parents[1] / "support"  # targets, for the subprocesses
TOKEN = "s3cret-token"
FAST = Backoff(base=0.01, factor=1.0, cap=0.01, jitter=0.0)


@pytest.fixture
def serving() -> Iterator[Server]:
    """A running server with a thread worker and the endpoint on a free loopback port."""
    server = Server("web", http="127.0.0.1:0")
    server.add_worker(Idle("idle"))
    with server:
        server.start()
        yield server


def metrics_of(server: Server) -> dict[str, Any]:
    """``/metrics`` parsed back with prometheus_client's own parser: family name -> family."""
    status, headers, body = request(server, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def sample(families: dict[str, Any], family: str, name: str | None = None, **labels: str) -> float:
    """The value of the one sample of ``family`` whose labels include ``labels``."""
    found = [
        s.value
        for s in families[family].samples
        if (name is None or s.name == name) and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (family, labels, families[family].samples)
    return float(found[0])


def raw(server: Server, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` as it is and return everything the server answers."""
    address = server.http_address
    assert address is not None
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# -- every route ------------------------------------------------------------------------------


def test_every_route_answers_for_thread_and_process_workers() -> None:
    server = Server("web", http="127.0.0.1:0")
    server.add_worker(Idle("idle"))
    server.add_worker(ProcessIdle("pidle"))
    assert server.http_address is None  # not bound before start()
    with server:
        server.start()
        wait_for(lambda: server.readiness()["ready"])
        host, port = server.http_address or ("", 0)
        assert host == "127.0.0.1" and port > 0

        status, health = get_json(server, "/healthz")
        assert status == 200 and health["alive"] is True, health
        status, ready = get_json(server, "/readyz")
        assert (status, ready) == (200, {"ready": True, "not_running": []})
        status, entries = get_json(server, "/status?pretty=no")  # a query string is ignored
        assert status == 200
        assert [(e["name"], e["kind"], e["state"]) for e in entries] == [
            ("idle", "thread", "running"),
            ("pidle", "process", "running"),
        ]
        assert entries[1]["pid"] == server.workers[1].pid
        assert entries[1]["rss_bytes"] > 1_000_000 and entries[0]["rss_bytes"] is None

        families = metrics_of(server)
        for worker, kind in (("idle", "thread"), ("pidle", "process")):
            labels = {"server": "web", "worker": worker, "kind": kind}
            assert sample(families, "spoc_worker_up", **labels) == 1
            assert sample(families, "spoc_worker_state", state="running", **labels) == 1
            assert sample(families, "spoc_worker_state", state="failed", **labels) == 0
            for reason in ("crash", "hang", "exit", "group", "recycle", "manual"):
                assert sample(families, "spoc_worker_restarts", reason=reason, **labels) == 0
            assert sample(families, "spoc_worker_uptime_seconds", **labels) >= 0
        assert families["spoc_worker_restarts"].type == "counter"
        assert sample(families, "spoc_worker_resident_memory_bytes", worker="pidle") > 1_000_000
        assert sample(families, "spoc_server_ready", server="web") == 1
        assert sample(families, "spoc_server_gave_up", server="web") == 0
        assert "process_resident_memory_bytes" in families  # the default registry is forwarded

        status, headers, body = request(server, "/")
        assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
        page = body.decode()
        assert '<meta name="viewport"' in page and "web" in page and "pidle" in page
        assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere
        assert "default-src 'none'" in headers["Content-Security-Policy"]

        status, headers, body = request(server, "/status", method="HEAD")
        assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
    assert server.http_address is None  # gone once stopped and joined


def test_status_tells_the_jobs_done_of_workers_that_count_them(tmp_path: Path) -> None:
    with Server("counts", http="127.0.0.1:0") as server:
        server.add_worker(Idle("idle"))
        server.add_worker(ThreadJobs("tjobs", str(tmp_path)))
        server.add_worker(ProcessJobs("pjobs", str(tmp_path)))  # counted in shared memory
        server.start()
        wait_for(lambda: all((e["jobs_done"] or 0) >= 5 for e in server.status()[1:]), timeout=30)
        status, first = get_json(server, "/status")
        assert status == 200 and first[0]["jobs_done"] is None  # it does not count jobs
        assert [e["jobs_done"] >= 5 for e in first[1:]] == [True, True]
        wait_for(
            lambda: all(
                e["jobs_done"] > f["jobs_done"] for e, f in zip(server.status()[1:], first[1:], strict=True)
            ),
            timeout=30,
        )
        server.stop()
        server.join_all(30)
        counted = [worker.jobs_done() for worker in server.workers]
        assert [e["jobs_done"] for e in server.status()] == counted  # the workers' own figures


def test_metrics_speak_openmetrics_when_asked(serving: Server) -> None:
    status, headers, body = request(
        serving, "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
    assert body.count(b"# EOF") == 1


# -- refusals ------------------------------------------------------------------------------------


@pytest.mark.no_processes
def test_unknown_paths_wrong_methods_and_bad_requests_are_refused(serving: Server) -> None:
    assert request(serving, "/nowhere")[0] == 404
    assert request(serving, "/workers/idle/restart", method="POST")[0] == 404  # no token: no control
    status, headers, _ = request(serving, "/status", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert request(serving, "/healthz", method="DELETE")[0] == 405
    assert request(serving, "/status", method="PUT", body=b"x" * (MAX_BODY + 1))[0] == 413
    assert raw(serving, b"GET /status HTTP/1.0\r\nContent-Length: -3\r\n\r\n").startswith(b"HTTP/1.0 400")
    assert raw(serving, b"POST /status HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").startswith(
        b"HTTP/1.0 400"
    )
    assert raw(serving, b"GET /" + b"a" * 70_000 + b" HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 414")
    many = b"".join(b"X-%d: y\r\n" % i for i in range(150))
    assert raw(serving, b"GET /status HTTP/1.0\r\n" + many + b"\r\n").startswith(b"HTTP/1.0 431")
    assert raw(serving, b"GET /status HTTP/1.0\r\nX: " + b"y" * 70_000 + b"\r\n\r\n").startswith(
        b"HTTP/1.0 431"
    )
    assert raw(serving, b"BREW /pot HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 501")
    assert raw(serving, b"\x16\x03\x01\x02\x00garbage\r\n\r\n").startswith(b"HTTP/1.0 400")
    assert raw(serving, b"") == b""  # a client that says nothing and leaves
    # None of it harmed the server:
    assert request(serving, "/healthz")[0] == 200
    assert serving.readiness()["ready"]


@pytest.mark.no_processes
def test_clients_too_slow_are_cut_off_at_the_deadline_and_the_others_served(
    serving: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_http, "REQUEST_DEADLINE", 1.0)
    address = serving.http_address
    assert address is not None
    slow = [socket.create_connection(address, timeout=30) for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in slow:
            sock.sendall(b"GET /status HTTP/1.0\r\n")  # and never the end of the headers
        wait_for(lambda: _request_threads() == MAX_CONNECTIONS)
        # Every slot is taken: a newcomer waits in the backlog until the deadline frees them.
        begun = time.monotonic()
        status, _, _ = request(serving, "/healthz", timeout=60)
        waited = time.monotonic() - begun
        assert status == 200
        assert 0.3 < waited < 10.0, waited
        for sock in slow:  # each was cut off: its connection ends
            sock.settimeout(10)
            while sock.recv(65536):
                pass
    finally:
        for sock in slow:
            sock.close()


def _request_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.endswith(":http-request"))


# -- remote control -----------------------------------------------------------------------------


def test_control_needs_the_bearer_token_and_restarts_or_holds_a_worker(start_method: str) -> None:
    events = Events()
    server = Server(
        "ctl", http="127.0.0.1:0", http_token=TOKEN, on_event=events, max_restarts=0, backoff=FAST
    )
    server.add_worker(Idle("idle"), restart="always")
    server.add_worker(ProcessIdle("pidle"), restart="always")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with server:
        server.start()
        wait_for(lambda: server.readiness()["ready"], timeout=30)
        status, headers, _ = request(server, "/workers/idle/restart", method="POST")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert request(server, "/workers/idle/restart", "POST", {"Authorization": "Basic eDp5"})[0] == 401
        assert request(server, "/workers/idle/restart", "POST", {"Authorization": "Bearer nope"})[0] == 403
        assert (
            request(server, "/workers/idle/restart", "POST", {"Authorization": f"Bearer {TOKEN}x"})[0] == 403
        )
        assert request(server, "/workers/idle/restart", "GET", auth)[0] == 405
        assert request(server, "/workers/ghost/restart", "POST", auth)[0] == 404
        assert not events.of("restart")  # nothing happened on a refused request

        first_pid = server.workers[1].pid
        for name in ("idle", "pidle"):
            status, _, body = request(server, f"/workers/{name}/restart", "POST", auth)
            assert status == 202 and json.loads(body) == {
                "accepted": True,
                "worker": name,
                "action": "restart",
            }
        wait_for(lambda: all(e["restarts"] == 1 and e["state"] == "running" for e in server.status()), 30)
        assert server.workers[1].pid != first_pid
        assert [(e.worker, e.reason) for e in events.of("restart")] == [
            ("idle", "manual"),
            ("pidle", "manual"),
        ]
        assert [e["restart_reasons"] for e in server.status()] == [{"manual": 1}, {"manual": 1}]
        assert not server.gave_up  # max_restarts=0, yet manual restarts do not count

        status, _, _ = request(server, "/workers/pidle/stop", "POST", auth)
        assert status == 202
        wait_for(lambda: server.status()[1]["state"] == "stopped", 30)
        # The "stop" event comes from the supervisor's look at the ended run, just after the state.
        wait_for(lambda: events.of("stop"), 30)
        entry = server.status()[1]
        assert entry["held"] and entry["restart_in"] is None  # restart="always", yet not restarted
        assert [e.worker for e in events.of("stop")] == ["pidle"]
        assert server.readiness()["ready"]  # a worker stopped on request is not missed
        assert sample(metrics_of(server), "spoc_worker_up", worker="pidle") == 0

        assert request(server, "/workers/pidle/restart", "POST", auth)[0] == 202
        wait_for(lambda: server.status()[1]["state"] == "running", 30)
        assert not server.status()[1]["held"]
        assert sample(metrics_of(server), "spoc_worker_restarts", worker="pidle", reason="manual") == 2
        assert not server.gave_up
    assert not server.http_address


@pytest.mark.no_processes
def test_control_of_a_stopping_server_is_a_conflict() -> None:
    server = Server("ctl", http="127.0.0.1:0", http_token=TOKEN)
    server.add_worker(Stubborn("stubborn"))
    server.start()
    try:
        wait_for(lambda: server.readiness()["ready"])
        server.stop()  # the stubborn worker keeps the server (and its endpoint) in its shutdown
        status, _, body = request(
            server, "/workers/stubborn/restart", "POST", {"Authorization": f"Bearer {TOKEN}"}
        )
        assert status == 409 and "stopping" in json.loads(body)["error"]
        status, ready = get_json(server, "/readyz")
        assert status == 503 and ready["reason"] == "stopping"
        assert get_json(server, "/healthz") == (200, {"alive": True, "detail": "stopping"})
    finally:
        Stubborn.release.set()
        server.join_all(10)


class Stubborn(ThreadWorker):
    """Ignores stop until the class's ``release`` event is set."""

    release = threading.Event()

    def main(self) -> None:
        while not self.release.wait(0.01):
            pass


@pytest.mark.no_processes
def test_the_server_methods_behind_control_check_their_worker() -> None:
    server = Server("ctl")
    server.add_worker(Idle("idle"))
    with pytest.raises(RuntimeError, match="not running"):
        server.restart_worker("idle")
    with server:
        server.start()
        with pytest.raises(KeyError, match="no worker named 'ghost'"):
            server.stop_worker("ghost")


# -- probes -------------------------------------------------------------------------------------


@pytest.mark.no_processes
def test_under_a_crash_loop_liveness_stays_200_and_readiness_flips() -> None:
    server = Server("loop", http="127.0.0.1:0", max_restarts=1000, backoff=FAST)
    steady = Idle("steady")
    server.add_worker(steady)
    server.add_worker(CrashesSoon("crasher", after=0.02), restart="always")
    health, ready = set(), []
    with server:
        server.start()
        # start() returns with "steady" maybe still STARTING (its setup runs in
        # its own thread): readiness would rightly list it too.
        wait_for(lambda: steady.state is WorkerState.RUNNING)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            health.add(get_json(server, "/healthz")[0])
            ready.append(get_json(server, "/readyz"))
        restarts = server.status()[1]["restarts"]
        families = metrics_of(server)
    assert health == {200}
    assert (200, {"ready": True, "not_running": []}) in ready
    not_ready = [body for status, body in ready if status == 503]
    assert not_ready, "readiness never saw the crashing worker down"
    assert all([w["name"] for w in body["not_running"]] == ["crasher"] for body in not_ready)
    assert restarts > 3
    assert sample(families, "spoc_worker_restarts", worker="crasher", reason="crash") >= restarts - 1


class Wedge:
    """An event listener that blocks the supervisor's thread on a "restart" event until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, event: WorkerEvent) -> None:
        if event.kind == "restart" and threading.current_thread().name.endswith(":supervisor"):
            self.entered.set()
            self.release.wait(30)


@pytest.mark.no_processes
def test_liveness_fails_while_the_supervisor_is_wedged_and_recovers() -> None:
    wedge = Wedge()
    server = Server("wedged", http="127.0.0.1:0", on_event=wedge, backoff=FAST, max_restarts=1000)
    server.add_worker(CrashesSoon("crasher", after=0.01), restart="always")
    with server:
        server.start()
        try:
            assert wedge.entered.wait(10)
            begun = time.monotonic()
            status, health = get_json(server, "/healthz")
            assert status == 503 and "did not answer" in health["detail"], health
            assert 0.9 < time.monotonic() - begun < 5.0  # the ping's bound, 1 s
        finally:
            wedge.release.set()
        wait_for(lambda: get_json(server, "/healthz")[0] == 200)


@pytest.mark.no_processes
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_liveness_fails_when_the_supervisor_thread_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    server = Server("broken", http="127.0.0.1:0")
    server.add_worker(Idle("idle"))

    def bug(*args: Any) -> None:
        raise ZeroDivisionError("a bug in the supervisor")

    with server:
        monkeypatch.setattr(server._supervisor, "_check_recycles", bug)
        server.start()
        wait_for(lambda: get_json(server, "/healthz")[0] == 503)
        assert "the supervisor thread failed: ZeroDivisionError" in get_json(server, "/healthz")[1]["detail"]


@pytest.mark.no_processes
def test_liveness_stays_200_when_every_worker_has_ended_for_good() -> None:
    server = Server("done", http="127.0.0.1:0")
    server.add_worker(Finite("finite"))
    with server:
        server.start()
        wait_for(lambda: "ended for good" in get_json(server, "/healthz")[1]["detail"])
        assert get_json(server, "/healthz")[0] == 200
        assert get_json(server, "/readyz") == (200, {"ready": True, "not_running": []})


class Finite(ThreadWorker):
    def main(self) -> None:
        pass


# -- load -------------------------------------------------------------------------------------


async def _hammer(address: tuple[str, int], count: int) -> list[bytes]:
    """``count`` requests at once, each on its own connection: their status lines."""
    paths = ["/status", "/metrics", "/healthz", "/readyz", "/", "/nowhere"]

    async def one(index: int) -> bytes:
        reader, writer = await asyncio.open_connection(*address)
        try:
            if index % 50 == 49:
                writer.write(b"GET /status HTTP/9.9\r\n\r\n")
            else:
                writer.write(f"GET {paths[index % len(paths)]} HTTP/1.0\r\n\r\n".encode())
            await writer.drain()
            reply = await reader.read()
            return reply.split(b"\r\n", 1)[0]
        finally:
            writer.close()
            await writer.wait_closed()

    return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), timeout=120)


@pytest.mark.no_processes
def test_a_thousand_concurrent_requests_stall_neither_workers_nor_supervisor() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2500:
        if hard != resource.RLIM_INFINITY and hard < 2500:
            pytest.skip(f"1,000 connections need more file descriptors than ulimit -Hn {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (2500, hard))
    pacer = Pacer("pacer", interval=0.01)
    server = Server("load", http="127.0.0.1:0")
    server.add_worker(pacer)
    victim = server.add_worker(Idle("victim"))
    replies: list[bytes] = []
    with server:
        server.start()
        address = server.http_address
        assert address is not None
        wait_for(lambda: server.readiness()["ready"])
        time.sleep(0.5)  # a baseline of the pacer's rounds (its loop, not a synchronisation)
        now = time.monotonic()
        baseline = pacer.rounds_between(now - 0.5, now)

        most_threads = 0
        done = threading.Event()

        def hammer() -> None:
            replies.extend(asyncio.run(_hammer(address, 1000)))

        def watch_threads() -> None:
            nonlocal most_threads
            while not done.wait(0.005):
                most_threads = max(most_threads, _request_threads())

        clients = threading.Thread(target=hammer)
        watcher = threading.Thread(target=watch_threads)
        watcher.start()
        begun = time.monotonic()
        clients.start()
        try:
            # While the endpoint is saturated: a stop and a liveness ping.
            wait_for(lambda: _request_threads() >= MAX_CONNECTIONS // 2, timeout=30, interval=0.001)
            stop_begun = time.monotonic()
            server.stop_worker("victim")
            assert victim.join(5)
            stop_took = time.monotonic() - stop_begun
            health = server.liveness()
            loaded = _request_threads()
        finally:
            clients.join(150)
            done.set()
            watcher.join()
        ended = time.monotonic()
        during = pacer.rounds_between(begun, ended)
    rate_before, rate_during = baseline / 0.5, during / (ended - begun)
    assert len(replies) == 1000
    assert all(re.match(rb"HTTP/1\.0 (200|404|505)", r) for r in replies), set(replies)
    assert loaded > 0, "the stop was not measured under load"
    assert most_threads <= MAX_CONNECTIONS
    assert rate_during > 0.5 * rate_before, (rate_before, rate_during, ended - begun)
    assert stop_took < 0.5, stop_took
    assert health["alive"] and health["answered_in"] < 0.5, health


# -- lifetime, configuration ----------------------------------------------------------------------


@pytest.mark.no_processes
def test_a_taken_port_fails_start_before_any_worker_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = Server("clash", http=f"127.0.0.1:{port}")
        worker = server.add_worker(Idle("idle"))
        with pytest.raises(HttpBindError, match=f"server 'clash': cannot serve HTTP on 127.0.0.1:{port}"):
            server.start()
        assert worker.state.value == "new"
    server.start()  # the port is free again: it serves
    try:
        assert request(server, "/healthz")[0] == 200
    finally:
        server.stop()
        server.join_all(10)


@pytest.mark.no_processes
def test_the_endpoint_ends_with_the_server_and_serves_again_on_the_next_start() -> None:
    server = Server("again", http="127.0.0.1:0")
    server.add_worker(Idle("idle"))
    for _ in range(3):
        server.start()
        address = server.http_address
        assert address is not None and request(server, "/healthz")[0] == 200
        server.stop()
        begun = time.monotonic()
        assert server.join_all(10) == []
        assert time.monotonic() - begun < 1.0  # no poll interval to wait out
        assert server.http_address is None
        with pytest.raises(OSError):
            socket.create_connection(address, timeout=5).close()


@pytest.mark.no_processes
def test_binding_beyond_loopback_without_a_token_warns_that_control_is_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = Server("open", http="0.0.0.0:0")
    server.add_worker(Idle("idle"))
    with caplog.at_level(logging.WARNING, logger="spoc.workers.http"), server:
        server.start()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("beyond this machine, without a token" in m and "remote control" in m for m in warnings)


@pytest.mark.no_processes
def test_loopback_without_a_token_does_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), Server("quiet", http="127.0.0.1:0") as server:
        server.add_worker(Idle("idle"))
        server.start()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.no_processes
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("127.0.0.1:9000", ("127.0.0.1", 9000)),
        ("9000", ("127.0.0.1", 9000)),
        ("[::1]:0", ("::1", 0)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("localhost:1", ("localhost", 1)),
        (("127.0.0.1", 5), ("127.0.0.1", 5)),
    ],
)
def test_addresses_are_parsed(given: Any, expected: tuple[str, int]) -> None:
    assert parse_address("server 's'", given) == expected


@pytest.mark.no_processes
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"http": "127.0.0.1"}, ValueError, "server 'bad': http address must look like HOST:PORT"),
        ({"http": "127.0.0.1:70000"}, ValueError, "port must be in 0..65535"),
        ({"http": ":9000"}, ValueError, "HOST:PORT"),
        ({"http": 9000}, TypeError, "must be a str or"),
        ({"http_token": "t"}, ValueError, "http_token needs an http address"),
        ({"http": "9000", "http_token": ""}, ValueError, "non-empty"),
        ({"http": "9000", "http_token": "with space"}, ValueError, "no spaces"),
    ],
)
def test_bad_http_settings_fail_at_construction(kwargs: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        Server("bad", **kwargs)


@pytest.mark.no_processes
def test_works_on_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with Server("six", http="[::1]:0") as server:
        server.add_worker(Idle("idle"))
        server.start()
        assert server.http_address is not None and server.http_address[0] == "::1"
        assert request(server, "/healthz")[0] == 200


class Reports(ThreadWorker):
    """A worker adding a family of its own through the metrics hook (``collect_metrics``)."""

    def main(self) -> None:
        while self.sleep(3600):
            pass

    def collect_metrics(self) -> list[Any]:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily("spoc_test_things", "Things done.", labels=["colour"])
        family.add_metric(["red"], 3.0)
        return [family]


@pytest.mark.no_processes
def test_workers_add_metric_families_through_collect_metrics() -> None:
    with Server("hook", http="127.0.0.1:0") as server:
        server.add_worker(Reports("a"))
        server.add_worker(Reports("b"))
        server.start()
        families = metrics_of(server)
    things = families["spoc_test_things"]
    assert things.type == "counter"
    assert sorted(
        (s.labels["worker"], s.labels["colour"], s.value) for s in things.samples if s.name.endswith("_total")
    ) == [
        ("a", "red", 3.0),
        ("b", "red", 3.0),
    ]
    assert {s.labels["server"] for s in things.samples} == {"hook"}


# -- costs nothing when off; the command ----------------------------------------------------------


def test_a_server_without_http_imports_none_of_it() -> None:
    code = (
        "import sys\n"
        "from spoc.workers import Server\n"
        "from targets import Idle\n"
        "s = Server('plain'); s.add_worker(Idle('idle')); s.start(); s.stop(); s.join_all(10)\n"
        "loaded = [m for m in sys.modules if m.startswith(('prometheus_client', 'http.server',"
        " 'spoc.workers._http', 'spoc.workers._metrics', 'spoc.workers._statuspage'))]\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=TESTS, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _spoc_workers(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "spoc.workers", "run", *args],
        cwd=TESTS,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _wait_for_url(proc: subprocess.Popen[str], lines: list[str]) -> tuple[str, int]:
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"HTTP endpoint on http://([\d.]+):(\d+)/", line)
        if found:
            return found[1], int(found[2])
    raise AssertionError("no HTTP endpoint line in:\n" + "".join(lines))


@pytest.mark.parametrize("where", ["options", "environment"])
def test_the_command_serves_http_with_a_token_and_logs_json(where: str) -> None:
    if where == "options":
        proc = _spoc_workers(
            "--http", "127.0.0.1:0", "--http-token", TOKEN, "--log-format", "json", "ops_targets:cli_server"
        )
    else:
        proc = _spoc_workers(
            "--log-format",
            "json",
            "ops_targets:cli_server",
            env={"SPOC_WORKERS_HTTP": "127.0.0.1:0", "SPOC_WORKERS_HTTP_TOKEN": TOKEN},
        )
    lines: list[str] = []
    try:
        address = _wait_for_url(proc, lines)
        wait_for(lambda: request(address, "/readyz")[0] == 200, timeout=60)
        status, _, _ = request(
            address, "/workers/pidle/restart", "POST", {"Authorization": f"Bearer {TOKEN}"}
        )
        assert status == 202
        wait_for(lambda: get_json(address, "/status")[1][1]["restarts"] == 1, timeout=60)
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines += rest.splitlines(keepends=True)
    assert proc.returncode == 0, "".join(lines)
    records = [json.loads(line) for line in lines if line.strip()]  # every line is one JSON object
    assert {"time", "level", "logger", "message"} <= set(records[0])
    changes = [r for r in records if r.get("spoc_worker") == "pidle" and "spoc_state" in r]
    assert changes and {"spoc_server", "spoc_kind", "spoc_previous", "spoc_pid", "spoc_restarts"} <= set(
        changes[-1]
    )
    assert any(r.get("spoc_reason") == "manual" for r in records)


def test_the_command_without_prometheus_client_fails_with_one_line() -> None:
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "from spoc.workers._cli import main\n"
        "sys.exit(main(['run', '--http', '127.0.0.1:0', 'ops_targets:cli_server']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=TESTS, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spoc-workers: error: ")
    assert "spoc-workers-core[http]" in lines[0]


def test_the_command_with_a_taken_port_fails_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _spoc_workers("--http", f"127.0.0.1:{port}", "--log-level", "error", "ops_targets:cli_server")
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip().splitlines() == [
        f"spoc-workers: error: server 'ops': cannot serve HTTP on 127.0.0.1:{port}: Address already in use"
    ]


def test_a_token_without_an_address_is_a_usage_error() -> None:
    proc = _spoc_workers("--http-token", TOKEN, "ops_targets:cli_server", env={"SPOC_WORKERS_HTTP": ""})
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "--http-token (or $SPOC_WORKERS_HTTP_TOKEN) needs --http" in err


def test_a_child_started_while_serving_holds_no_copy_of_the_endpoint_sockets() -> None:
    server = Server("forks", http="127.0.0.1:0", http_token=TOKEN)
    child = server.add_worker(ProcessIdle("child"), restart="always")
    with server:
        server.start()
        wait_for(lambda: server.readiness()["ready"], timeout=30)
        endpoint = server._http
        assert endpoint is not None
        ours = {os.fstat(endpoint._listener.fileno()).st_ino}
        ours |= {os.fstat(fd).st_ino for fd in (endpoint._wake_read, endpoint._wake_write)}
        # Restarted while the endpoint serves (and during a request): under fork, a copy of us.
        status, _, _ = request(server, "/workers/child/restart", "POST", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 202
        wait_for(lambda: server.status()[0]["restarts"] == 1 and server.readiness()["ready"], timeout=30)
        held = set()
        for entry in Path(f"/proc/{child.pid}/fd").iterdir():
            try:
                held.add(os.stat(entry).st_ino)
            except OSError:
                pass
        assert not ours & held
