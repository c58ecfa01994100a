"""Server: membership, start/stop/join_all, run_forever and its exit status."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from spoc.workers import ProcessWorker, Server, ThreadWorker, WorkerState
from targets import IgnoresStop, MarkingSleeper, Raiser, Recorder, marks, wait_for


class Finite(ThreadWorker):
    def main(self) -> None:
        self.sleep(0.01)


class Stubborn(ThreadWorker):
    """Ignores stop until the test releases it (so no thread outlives the test)."""

    def __init__(self, name: str = "stubborn") -> None:
        super().__init__(name)
        self.release = threading.Event()
        self.entered = threading.Event()

    def main(self) -> None:
        self.entered.set()
        self.release.wait(30)


class SignalsParent(ThreadWorker):
    """Sends SIGTERM to this very process; with ``twice``, again once the first one stopped it."""

    def __init__(self, name: str = "signaller", twice: bool = False) -> None:
        super().__init__(name)
        self.twice = twice

    def main(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        while self.sleep(3600):
            pass
        if self.twice:  # signals sent back to back could merge into one
            os.kill(os.getpid(), signal.SIGTERM)


# -- membership --------------------------------------------------------------------


@pytest.mark.no_processes
def test_add_worker_rejects_what_is_not_a_worker() -> None:
    with pytest.raises(TypeError, match="expects a ThreadWorker or ProcessWorker, got str"):
        Server().add_worker("worker")  # type: ignore[arg-type]


@pytest.mark.no_processes
def test_add_worker_rejects_duplicates() -> None:
    server = Server("one")
    worker = Finite("a")
    assert server.add_worker(worker) is worker
    with pytest.raises(ValueError, match="already added"):
        server.add_worker(worker)
    with pytest.raises(ValueError, match="named 'a'"):
        server.add_worker(Finite("a"))
    with pytest.raises(ValueError, match="belongs to server 'one'"):
        Server("two").add_worker(worker)
    assert server.workers == (worker,)


@pytest.mark.parametrize("bad", [{"name": 3}, {"shutdown_timeout": -1}, {"shutdown_timeout": "5"}])
@pytest.mark.no_processes
def test_server_arguments_are_checked(bad: dict[str, Any]) -> None:
    with pytest.raises((TypeError, ValueError)):
        Server(**bad)


@pytest.mark.no_processes
def test_constructing_a_server_touches_no_signal_handler() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    Server("quiet").add_worker(Finite())
    assert {s: signal.getsignal(s) for s in before} == before


# -- start / stop / join_all --------------------------------------------------------------


def test_start_stop_join_all_with_threads_and_processes(tmp_path: Path) -> None:
    server = Server("mixed")
    thread = server.add_worker(Recorder("thread"))
    process = server.add_worker(MarkingSleeper("process", str(tmp_path)))
    server.start()
    wait_for(lambda: "process.main" in marks(tmp_path), 30)
    assert isinstance(thread, Recorder) and thread.in_main.wait(5)
    begun = time.perf_counter()
    server.stop()
    assert server.join_all(10) == []
    assert time.perf_counter() - begun < 0.5
    assert thread.state is WorkerState.STOPPED and process.state is WorkerState.STOPPED
    assert "process.teardown" in marks(tmp_path)


@pytest.mark.no_processes
def test_a_worker_added_to_a_running_server_starts_at_once() -> None:
    server = Server()
    server.add_worker(Recorder("first"))
    server.start()
    try:
        late = Recorder("late")
        server.add_worker(late)
        assert late.in_main.wait(5)
    finally:
        server.stop()
        assert server.join_all(5) == []


def test_a_worker_that_fails_to_start_stops_the_others(start_method: str, tmp_path: Path) -> None:
    if start_method == "fork":
        pytest.skip("nothing is pickled under fork, so the start cannot fail this way")
    from targets import HoldsLock

    server = Server()
    first = server.add_worker(MarkingSleeper("first", str(tmp_path)))
    server.add_worker(HoldsLock())
    thread = server.add_worker(Recorder("thread"))  # threads start after processes
    with pytest.raises(TypeError, match=r"context\.client\._lock"):
        server.start()
    assert first.state is WorkerState.STOPPED
    assert thread.state is WorkerState.NEW


class Brief(ThreadWorker):
    def main(self) -> None:
        pass


@pytest.mark.no_processes
def test_a_server_whose_workers_ended_by_themselves_is_joined_with_its_monitor_thread() -> None:
    # Its monitor thread leaves by itself once nothing can happen; join_all() waits for it too, so
    # a joined server leaves no thread (and no wake-up pipe) behind. A race: tried many times.
    for i in range(200):
        server = Server(f"brief-{i}")
        server.add_worker(Brief("brief"))
        server.start()
        assert server.join_all(10) == []
        monitors = [t.name for t in threading.enumerate() if t.name.endswith(":supervisor")]
        assert not monitors, (i, monitors)


@pytest.mark.no_processes
def test_join_all_has_one_deadline_even_when_a_thread_ignores_stop(caplog: pytest.LogCaptureFixture) -> None:
    server = Server()
    stubborn = Stubborn()
    server.add_worker(stubborn)
    server.add_worker(Recorder("cooperative"))
    server.start()
    try:
        assert stubborn.entered.wait(5)
        server.stop()
        begun = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="spoc.workers.server"):
            left = server.join_all(0.3)
        assert time.monotonic() - begun < 1.3
        assert left == [stubborn]
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert "'stubborn' did not stop in time" in logged and "release.wait" in logged  # its stack
    finally:
        stubborn.release.set()
        stubborn.join(5)


def test_join_all_terminates_then_kills_a_process_ignoring_stop(tmp_path: Path) -> None:
    server = Server()
    worker = server.add_worker(IgnoresStop("stubborn", str(tmp_path), stop_timeout=60))
    server.start()
    wait_for(lambda: "stubborn.main" in marks(tmp_path), 30)
    server.stop()
    begun = time.monotonic()
    assert server.join_all(0.3) == []
    assert time.monotonic() - begun < 1.3
    assert worker.state is WorkerState.FAILED
    assert worker.exitcode is not None and worker.exitcode != 0


@pytest.mark.no_processes
def test_as_a_context_manager_it_stops_and_joins() -> None:
    with Server("ctx") as server:
        worker = server.add_worker(Recorder())
        server.start()
        assert isinstance(worker, Recorder) and worker.in_main.wait(5)
    assert worker.state is WorkerState.STOPPED
    assert not worker.is_alive()


@pytest.mark.no_processes
def test_two_servers_do_not_interfere() -> None:
    one, two = Server("one"), Server("two")
    a, b = one.add_worker(Recorder("a")), two.add_worker(Recorder("b"))
    one.start()
    two.start()
    try:
        assert isinstance(a, Recorder) and isinstance(b, Recorder)
        assert a.in_main.wait(5) and b.in_main.wait(5)
        one.stop()
        assert one.join_all(5) == []
        assert b.is_alive() and b.is_running
    finally:
        two.stop()
        two.join_all(5)


# -- run_forever -----------------------------------------------------------------------


@pytest.mark.no_processes
def test_run_forever_returns_0_when_every_worker_ended_cleanly() -> None:
    server = Server()
    server.add_worker(Finite("a"))
    server.add_worker(Finite("b"))
    before = signal.getsignal(signal.SIGTERM)
    assert server.run_forever() == 0
    assert signal.getsignal(signal.SIGTERM) is before
    assert all(w.state is WorkerState.STOPPED for w in server.workers)


def test_run_forever_returns_1_when_a_worker_failed() -> None:
    server = Server()
    server.add_worker(Finite("fine"))
    server.add_worker(Raiser("broken"))
    assert server.run_forever() == 1


@pytest.mark.no_processes
def test_run_forever_stops_on_a_signal_and_restores_handlers() -> None:
    server = Server()
    recorder = server.add_worker(Recorder())
    server.add_worker(SignalsParent())
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    begun = time.monotonic()
    assert server.run_forever() == 0
    assert time.monotonic() - begun < 2.0
    assert {s: signal.getsignal(s) for s in before} == before
    assert isinstance(recorder, Recorder) and recorder.calls[-2:] == ["teardown", "shutdown"]


@pytest.mark.no_processes
def test_a_second_signal_cuts_the_shutdown_short() -> None:
    server = Server(shutdown_timeout=30)
    stubborn = server.add_worker(Stubborn())
    server.add_worker(SignalsParent(twice=True))
    begun = time.monotonic()
    try:
        assert server.run_forever() == 1
        assert time.monotonic() - begun < 5.0
    finally:
        assert isinstance(stubborn, Stubborn)
        stubborn.release.set()
        stubborn.join(5)


@pytest.mark.no_processes
def test_run_forever_off_the_main_thread_runs_without_signal_handlers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = Server("threaded")
    recorder = server.add_worker(Recorder())
    result: list[int] = []
    with caplog.at_level(logging.WARNING, logger="spoc.workers.server"):
        runner = threading.Thread(target=lambda: result.append(server.run_forever()))
        runner.start()
        assert isinstance(recorder, Recorder) and recorder.in_main.wait(5)
        server.stop()
        runner.join(10)
    assert result == [0]
    assert any("not running in the main thread" in r.getMessage() for r in caplog.records)


class ForgotSuperThread(ThreadWorker):
    def __init__(self, rate: int) -> None:  # no super().__init__()
        self.rate = rate

    def main(self) -> None:
        pass


class ForgotSuperProcess(ProcessWorker):
    def __init__(self, rate: int) -> None:  # no super().__init__()
        self.rate = rate

    def main(self) -> None:
        pass


@pytest.mark.parametrize("cls", [ForgotSuperThread, ForgotSuperProcess])
@pytest.mark.no_processes
def test_a_worker_whose_init_skipped_super_gets_a_clear_error(cls: Any) -> None:
    expected = rf"{cls.__name__}\.__init__\(\) did not call super\(\)\.__init__\(\)"
    with pytest.raises(TypeError, match=expected):
        cls(5).start()
    with pytest.raises(TypeError, match=expected):
        Server("s").add_worker(cls(5))
