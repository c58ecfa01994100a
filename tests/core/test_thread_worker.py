"""ThreadWorker and the lifecycle rules shared by every worker."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from typing import Any

import pytest

from spoc.workers import AbstractWorker, ThreadWorker, WorkerState
from targets import Recorder, started, wait_for

pytestmark = pytest.mark.no_processes  # nothing here depends on the start method


class Quick(ThreadWorker):
    def main(self) -> None:
        pass


# -- construction --------------------------------------------------------------


def test_name_defaults_to_the_class_name() -> None:
    assert Quick().name == "Quick"


@pytest.mark.parametrize("bad", [42, b"bytes", ["x"]])
def test_a_non_string_name_is_a_type_error(bad: Any) -> None:
    with pytest.raises(TypeError, match="name must be a str"):
        Quick(bad)


def test_an_empty_name_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        Quick("")


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf")])
def test_stop_timeout_must_be_positive_and_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="stop_timeout"):
        Quick(stop_timeout=bad)


def test_a_class_without_main_cannot_be_instantiated() -> None:
    class NoMain(ThreadWorker):
        pass

    with pytest.raises(TypeError, match="main"):
        NoMain()  # type: ignore[abstract]


def test_a_subclass_with_its_own_init_works() -> None:
    class WithQueue(ThreadWorker):
        def __init__(self, name: str, queue: list[int]) -> None:
            super().__init__(name)
            self.queue = queue

        def main(self) -> None:
            self.queue.append(1)

    worker = WithQueue("with-queue", [])
    worker.start()
    assert worker.join(5)
    assert worker.queue == [1]
    assert worker.state is WorkerState.STOPPED


def test_the_thread_carries_the_worker_name() -> None:
    seen: list[str] = []

    class Named(ThreadWorker):
        def main(self) -> None:
            seen.append(threading.current_thread().name)

    worker = Named("ingest-7")
    worker.start()
    worker.join(5)
    assert seen == ["ingest-7"]
    assert worker.thread is not None and worker.ident is not None


# -- lifecycle ------------------------------------------------------------------


def test_hooks_and_events_run_in_order() -> None:
    worker = Recorder()
    assert worker.state is WorkerState.NEW
    worker.start()
    assert worker.in_main.wait(5)
    assert worker.state is WorkerState.RUNNING
    worker.stop()
    assert worker.join(5)
    assert worker.calls == ["setup", "startup", "main", "teardown", "shutdown"]
    assert worker.state is WorkerState.STOPPED
    assert worker.exception is None


def test_async_hooks_share_one_loop() -> None:
    class AsyncOrder(ThreadWorker):
        async def setup(self) -> None:
            self.queue: asyncio.Queue[int] = asyncio.Queue()
            self.loops = [asyncio.get_running_loop()]
            self.producer = asyncio.ensure_future(self._produce())

        async def _produce(self) -> None:
            for i in range(3):
                await self.queue.put(i)

        async def lifecycle(self, event_type: str, **data: Any) -> None:
            self.loops.append(asyncio.get_running_loop())

        async def main(self) -> None:
            self.got = [await self.queue.get() for _ in range(3)]
            self.loops.append(asyncio.get_running_loop())

        async def teardown(self) -> None:
            await self.producer
            self.loops.append(asyncio.get_running_loop())

    worker = AsyncOrder()
    worker.start()
    assert worker.join(5)
    assert worker.state is WorkerState.STOPPED, worker.exception
    assert worker.got == [0, 1, 2]
    assert len(worker.loops) == 5 and len(set(map(id, worker.loops))) == 1


def test_sync_and_async_hooks_mix() -> None:
    class Mixed(Recorder):
        async def main(self) -> None:  # type: ignore[override]
            self.calls.append("main")
            while await self.asleep(3600):
                pass

    worker = Mixed()
    worker.start()
    wait_for(lambda: "main" in worker.calls)
    worker.stop()
    assert worker.join(5)
    assert worker.calls == ["setup", "startup", "main", "teardown", "shutdown"]


@pytest.mark.parametrize("phase", ["setup", "main", "teardown"])
def test_an_error_in_a_hook_is_reported_and_teardown_still_runs(phase: str) -> None:
    class Failing(Recorder):
        def setup(self) -> None:
            super().setup()
            if phase == "setup":
                raise ValueError(phase)

        def main(self) -> None:
            self.calls.append("main")
            if phase == "main":
                raise ValueError(phase)

        def teardown(self) -> None:
            super().teardown()
            if phase == "teardown":
                raise ValueError(phase)

    worker = Failing()
    worker.start()
    assert worker.join(5)
    assert worker.state is WorkerState.FAILED
    assert isinstance(worker.exception, ValueError) and str(worker.exception) == phase
    assert [p for p, _ in worker.errors] == [phase]
    assert worker.errors[0][1] is worker.exception
    assert worker.calls[-2:] == ["teardown", "shutdown"] or worker.calls[-3:] == [
        "teardown",
        "error",
        "shutdown",
    ]
    assert ("main" in worker.calls) is (phase != "setup")
    assert ("startup" in worker.calls) is (phase != "setup")


def test_an_exception_in_lifecycle_is_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    class BadHandler(Recorder):
        def lifecycle(self, event_type: str, **data: Any) -> None:
            super().lifecycle(event_type, **data)
            raise RuntimeError(f"handler broke on {event_type}")

        def main(self) -> None:
            self.calls.append("main")

    worker = BadHandler()
    with caplog.at_level(logging.ERROR, logger="spoc.workers.worker"):
        worker.start()
        assert worker.join(5)
    assert worker.calls == ["setup", "startup", "main", "teardown", "shutdown"]
    assert worker.state is WorkerState.STOPPED
    assert sum("handler broke" in str(r.exc_info[1]) for r in caplog.records if r.exc_info) == 2


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(2)])
def test_base_exceptions_in_main_are_errors_too(exc: BaseException) -> None:
    class Raises(Recorder):
        def main(self) -> None:
            raise exc

    worker = Raises()
    worker.start()
    assert worker.join(5)
    assert worker.state is WorkerState.FAILED
    assert worker.errors == [("main", exc)]


def test_sys_exit_zero_in_main_is_a_clean_end() -> None:
    class Exits(Recorder):
        def main(self) -> None:
            sys.exit(0)

    worker = Exits()
    worker.start()
    assert worker.join(5)
    assert worker.state is WorkerState.STOPPED
    assert worker.calls == ["setup", "startup", "teardown", "shutdown"]


# -- stopping --------------------------------------------------------------------


def test_stop_wakes_a_long_sleep_within_milliseconds() -> None:
    worker = Recorder()
    worker.start()
    assert worker.in_main.wait(5)
    begun = time.perf_counter()
    worker.stop()
    assert worker.join(5)
    assert time.perf_counter() - begun < 0.2  # milliseconds, not a poll's 1 s (wide: a loaded machine)


def test_stop_wakes_a_long_async_sleep_within_milliseconds() -> None:
    entered = threading.Event()

    class AsyncSleeper(ThreadWorker):
        async def main(self) -> None:
            entered.set()
            self.woke_early = not await self.asleep(3600)

    worker = AsyncSleeper()
    worker.start()
    assert entered.wait(5)
    begun = time.perf_counter()
    worker.stop()
    assert worker.join(5)
    assert time.perf_counter() - begun < 0.2  # milliseconds, not a poll's 1 s (wide: a loaded machine)
    assert worker.woke_early


def test_sleep_returns_true_when_the_time_elapsed() -> None:
    class Naps(ThreadWorker):
        def main(self) -> None:
            self.results = [self.sleep(0.01), self.sleep(0)]

    worker = Naps()
    worker.start()
    worker.join(5)
    assert worker.results == [True, True]


@pytest.mark.parametrize("bad", [-1, float("nan"), "1"])
def test_sleep_rejects_bad_durations(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        Quick().sleep(bad)


def test_is_running_is_true_until_a_stop_is_requested() -> None:
    worker = Recorder()
    assert not worker.is_running  # not started: not running (see test_is_running.py)
    worker.start()
    assert worker.in_main.wait(5)
    assert worker.is_running
    worker.stop()
    assert not worker.is_running
    worker.join(5)


def test_stop_is_idempotent_and_safe_before_start() -> None:
    worker = Recorder()
    worker.stop()
    worker.stop()
    assert worker.state is WorkerState.NEW
    assert worker.join(0.1) is True  # never started: nothing to wait for
    worker.start()
    assert worker.in_main.wait(5)
    worker.stop()
    worker.stop()
    assert worker.join(5)


def test_stop_from_inside_the_worker() -> None:
    class StopsItself(ThreadWorker):
        def main(self) -> None:
            self.loops = 0
            while self.is_running:
                self.loops += 1
                if self.loops == 3:
                    self.stop()

    worker = StopsItself()
    worker.start()
    assert worker.join(5)
    assert worker.loops == 3 and worker.state is WorkerState.STOPPED


def test_an_async_main_ignoring_stop_is_cancelled_after_stop_timeout() -> None:
    entered = threading.Event()

    class Stubborn(Recorder):
        async def main(self) -> None:  # type: ignore[override]
            entered.set()
            try:
                await asyncio.sleep(3600)  # not the framework's wait: ignores stop
            except asyncio.CancelledError:
                self.calls.append("cancelled")
                raise

    worker = Stubborn(stop_timeout=0.2)
    worker.start()
    assert entered.wait(5)
    begun = time.perf_counter()
    worker.stop()
    assert worker.join(5)
    assert 0.15 < time.perf_counter() - begun < 2.0
    assert worker.calls[-3:] == ["cancelled", "teardown", "shutdown"]
    assert worker.state is WorkerState.STOPPED


# -- start / join / restart -----------------------------------------------------------


def test_start_on_a_live_worker_raises() -> None:
    worker = Recorder()
    worker.start()
    try:
        assert worker.in_main.wait(5)
        with pytest.raises(RuntimeError, match="already"):
            worker.start()
    finally:
        worker.stop()
        worker.join(5)


def test_an_ended_worker_can_be_started_again() -> None:
    worker = Recorder()
    threads = []
    for _ in range(3):
        worker.in_main.clear()
        worker.start()
        assert worker.in_main.wait(5)
        assert worker.is_running  # a fresh stop flag each run
        threads.append(worker.thread)
        worker.stop()
        assert worker.join(5)
        assert worker.state is WorkerState.STOPPED
    assert len(set(map(id, threads))) == 3
    assert worker.calls.count("setup") == 3


def test_join_with_timeout_reports_a_worker_still_running() -> None:
    worker = Recorder()
    with started(worker, timeout=5):
        assert worker.in_main.wait(5)
        assert worker.join(0.01) is False
        assert worker.is_alive()
    assert not worker.is_alive()


def test_join_while_start_is_launching_the_thread_waits_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # A Server joins a recycled worker while its supervisor starts the next run:
    # join() then found the new thread made but not started yet, and raised.
    worker = Quick("launching")
    launching, go = threading.Event(), threading.Event()
    original_start = threading.Thread.start

    def slow_start(thread: threading.Thread) -> None:
        if thread.name == worker.name:
            launching.set()
            go.wait(10.0)
        original_start(thread)

    monkeypatch.setattr(threading.Thread, "start", slow_start)
    errors: list[BaseException] = []

    def join_it() -> None:
        try:
            worker.join(10.0)
        except BaseException as exc:
            errors.append(exc)

    starter = threading.Thread(target=worker.start)
    starter.start()
    assert launching.wait(10.0)
    joiner = threading.Thread(target=join_it)
    joiner.start()
    joiner.join(0.2)  # before the fix, join() raised at once
    go.set()
    starter.join(10.0)
    joiner.join(10.0)
    assert errors == []
    assert not joiner.is_alive()
    assert worker.state is WorkerState.STOPPED


def test_stopping_state_while_teardown_runs() -> None:
    release = threading.Event()
    in_teardown = threading.Event()

    class SlowTeardown(Recorder):
        def teardown(self) -> None:
            in_teardown.set()
            release.wait(5)

    worker = SlowTeardown()
    worker.start()
    assert worker.in_main.wait(5)
    worker.stop()
    assert in_teardown.wait(5)
    assert worker.state is WorkerState.STOPPING
    release.set()
    assert worker.join(5)
    assert worker.state is WorkerState.STOPPED


def test_abstract_worker_is_the_common_base() -> None:
    assert isinstance(Quick(), AbstractWorker)
    assert Quick.kind == "thread"
    assert repr(Quick("q")) == "<Quick 'q' new>"


# -- waking waits the framework does not own -------------------------------------------


def test_on_stop_callbacks_run_once_on_stop_and_at_once_when_late() -> None:
    calls: list[str] = []

    class Registers(Recorder):
        def setup(self) -> None:
            super().setup()
            self.on_stop(lambda: calls.append("early"))
            remove = self.on_stop(lambda: calls.append("removed"))
            remove()

    worker = Registers()
    with pytest.raises(RuntimeError, match="started"):
        worker.on_stop(lambda: None)
    worker.start()
    assert worker.in_main.wait(5)
    worker.stop()
    worker.stop()
    assert worker.join(5)
    worker.on_stop(lambda: calls.append("late"))  # the run's stop was requested already
    assert calls == ["early", "late"]


def test_wait_readable_returns_ready_handles_or_nothing_on_stop() -> None:
    import os

    read, write = os.pipe()
    results: list[list[Any]] = []
    waiting = threading.Event()

    class Reader(ThreadWorker):
        def main(self) -> None:
            results.append(self.wait_readable([read], timeout=5))
            os.read(read, 1)
            waiting.set()
            results.append(self.wait_readable([read]))  # only a stop ends this one

    worker = Reader()
    try:
        worker.start()
        os.write(write, b"x")
        assert waiting.wait(5)
        begun = time.perf_counter()
        worker.stop()
        assert worker.join(5)
        assert time.perf_counter() - begun < 0.2  # milliseconds, not a poll's 1 s (wide: a loaded machine)
        assert results == [[read], []]
    finally:
        os.close(read)
        os.close(write)
