"""run_on_run_loop and emit_lifecycle: sync code of a run awaits on the run's own event loop.

A run's async hooks share one loop; code of the run that is handed an
awaitable (a pattern's loop calling an ``async def lifecycle``, a ``def``
returning a coroutine) puts it on that same loop, from the run's thread or
from a thread of the loop's executor, never on a loop thrown away after one call.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from spoc.workers import ThreadWorker, WorkerState
from spoc.workers._lifecycle import aemit_lifecycle, emit_lifecycle, run_on_run_loop

JOIN = 10.0


def run_to_end(worker: ThreadWorker) -> None:
    worker.start()
    assert worker.join(JOIN)
    assert worker.state is WorkerState.STOPPED, worker.exception


async def current_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


class LoopsSeen(ThreadWorker):
    """Records the loop of its async ``setup`` in ``loops[0]``; ``main`` adds what it sees."""

    def __init__(self) -> None:
        super().__init__("loops-seen")
        self.loops: list[asyncio.AbstractEventLoop] = []

    async def setup(self) -> None:
        self.loops.append(asyncio.get_running_loop())


def test_from_a_sync_main_it_runs_on_the_loop_of_the_async_setup() -> None:
    class SyncMain(LoopsSeen):
        def main(self) -> None:
            for _ in range(3):
                self.loops.append(run_on_run_loop(self, current_loop()))

    worker = SyncMain()
    run_to_end(worker)
    assert len(worker.loops) == 4 and all(loop is worker.loops[0] for loop in worker.loops)


def test_its_exception_is_raised_in_the_sync_caller() -> None:
    caught: list[BaseException] = []

    async def fails() -> None:
        raise KeyError("from the coroutine")

    class SyncMain(ThreadWorker):
        def main(self) -> None:
            try:
                run_on_run_loop(self, fails())
            except KeyError as exc:
                caught.append(exc)

    run_to_end(SyncMain("raises"))
    assert [str(exc) for exc in caught] == ["'from the coroutine'"]


def test_from_a_thread_of_the_loops_executor_it_is_submitted_to_the_running_loop() -> None:
    class AsyncMain(LoopsSeen):
        async def main(self) -> None:
            loop = asyncio.get_running_loop()
            self.loops.append(await loop.run_in_executor(None, run_on_run_loop, self, current_loop()))

    worker = AsyncMain()
    run_to_end(worker)
    assert len(worker.loops) == 2 and worker.loops[1] is worker.loops[0]


def test_inside_the_running_loop_it_refuses_to_block() -> None:
    refused: list[str] = []

    class AsyncMain(ThreadWorker):
        async def main(self) -> None:
            try:
                run_on_run_loop(self, current_loop())  # the coroutine is closed, never left un-awaited
            except RuntimeError as exc:
                refused.append(str(exc))

    run_to_end(AsyncMain("refuses"))
    assert len(refused) == 1 and "await it" in refused[0]


def test_without_a_run_it_uses_a_loop_of_its_own() -> None:
    class Idle(ThreadWorker):
        def main(self) -> None:
            pass

    loop = run_on_run_loop(Idle("idle"), current_loop())  # never started: no run under way
    assert loop.is_closed()


class AsyncHook(ThreadWorker):
    """An ``async def lifecycle`` recording ``(event, loop)``; ``setup`` records its loop."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.seen: list[tuple[str, asyncio.AbstractEventLoop]] = []
        self.setup_loop: asyncio.AbstractEventLoop | None = None

    async def setup(self) -> None:
        self.setup_loop = asyncio.get_running_loop()

    async def lifecycle(self, event_type: str, **data: Any) -> None:
        await asyncio.sleep(0)
        self.seen.append((event_type, asyncio.get_running_loop()))


def test_emit_lifecycle_from_sync_code_awaits_an_async_hook_on_the_runs_loop() -> None:
    class SyncMain(AsyncHook):
        def main(self) -> None:
            emit_lifecycle(self, "custom")
            self.seen.append(("after", self.seen[-1][1]))  # the hook has run by now

    worker = SyncMain("sync-main")
    run_to_end(worker)
    assert [event for event, _ in worker.seen] == ["startup", "custom", "after", "shutdown"]
    assert all(loop is worker.setup_loop for _, loop in worker.seen)


def test_emit_lifecycle_inside_the_running_loop_schedules_the_hook_on_it() -> None:
    class AsyncMain(AsyncHook):
        async def main(self) -> None:
            emit_lifecycle(self, "custom")  # sync code called by a coroutine: cannot wait here
            await aemit_lifecycle(self, "awaited")

    worker = AsyncMain("async-main")
    run_to_end(worker)
    events = [event for event, _ in worker.seen]  # the scheduled hook runs beside the awaited one
    assert events[0] == "startup" and sorted(events[1:3]) == ["awaited", "custom"] and events[3] == "shutdown"
    assert all(loop is worker.setup_loop for _, loop in worker.seen)


def test_a_failing_hook_is_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    class Fails(ThreadWorker):
        def lifecycle(self, event_type: str, **data: Any) -> None:
            if event_type == "custom":
                raise ValueError("hook broke")

        def main(self) -> None:
            emit_lifecycle(self, "custom")

    with caplog.at_level(logging.ERROR, logger="spoc.workers.worker"):
        run_to_end(Fails("fails"))
    assert any("lifecycle('custom') raised" in r.getMessage() for r in caplog.records)
