"""spoc.workers.aio: run_async_safely, the uvloop switch and LoopRunner."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from spoc.workers import aio
from spoc.workers.aio import (
    LoopRunner,
    run_async_safely,
    set_uvloop_if_available,
    use_default_loop,
    uvloop_enabled,
)

UVLOOP_EXPECTED = os.environ.get("SPOC_WORKERS_TEST_UVLOOP")


@pytest.fixture
def loop_choice() -> Iterator[None]:
    """Put the process-wide loop factory back as it was after the test."""
    was_enabled = uvloop_enabled()
    yield
    if was_enabled:
        assert set_uvloop_if_available()
    else:
        use_default_loop()


def _loop_module() -> str:
    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    result = run_async_safely(which())
    assert isinstance(result, str)
    return result


def test_no_running_loop_returns_the_result() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert run_async_safely(answer()) == 42


def test_no_running_loop_raises_the_exception() -> None:
    async def fail() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        run_async_safely(fail())


def test_each_call_without_a_loop_leaves_no_loop_behind() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def grab() -> None:
        loops.append(asyncio.get_running_loop())

    run_async_safely(grab())
    run_async_safely(grab())
    assert loops[0] is not loops[1]
    assert all(loop.is_closed() for loop in loops)


def test_rejects_what_is_not_a_coroutine() -> None:
    with pytest.raises(TypeError, match="coroutine"):
        run_async_safely(lambda: None)  # type: ignore[arg-type]


def test_inside_a_running_loop_returns_a_task_on_that_loop() -> None:
    async def child() -> str:
        return "child-done"

    async def parent() -> tuple[bool, str]:
        task = run_async_safely(child())
        assert isinstance(task, asyncio.Task)
        return task.get_loop() is asyncio.get_running_loop(), await task

    assert run_async_safely(parent()) == (True, "child-done")


def test_a_scheduled_task_survives_garbage_collection() -> None:
    finished = []

    async def child(release: asyncio.Event) -> None:
        await release.wait()
        finished.append(True)

    async def parent() -> None:
        release = asyncio.Event()
        run_async_safely(child(release))  # the caller keeps no reference
        await asyncio.sleep(0)
        gc.collect()
        release.set()
        for _ in range(10):
            await asyncio.sleep(0)

    run_async_safely(parent())
    assert finished == [True]


def test_a_failing_task_nobody_awaits_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def child() -> None:
        raise RuntimeError("lost?")

    async def parent() -> None:
        run_async_safely(child())
        for _ in range(5):
            await asyncio.sleep(0)

    with caplog.at_level(logging.ERROR, logger="spoc.workers.aio"):
        run_async_safely(parent())
    failures = [r for r in caplog.records if r.name == "spoc.workers.aio" and r.exc_info]
    assert len(failures) == 1
    assert "lost?" in str(failures[0].exc_info[1])


def test_uvloop_switch_reports_what_it_did(loop_choice: None) -> None:
    try:
        import uvloop  # noqa: F401

        available = True
    except ImportError:
        available = False
    if UVLOOP_EXPECTED is not None:
        assert available == (UVLOOP_EXPECTED == "1"), "this nox cell's uvloop expectation is wrong"
    assert set_uvloop_if_available() is available
    assert uvloop_enabled() is available
    assert _loop_module().startswith("uvloop") is available
    use_default_loop()
    assert not uvloop_enabled()
    assert _loop_module().startswith("asyncio")


def test_without_uvloop_the_switch_is_false(loop_choice: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes "import uvloop" fail
    use_default_loop()
    assert set_uvloop_if_available() is False
    assert not uvloop_enabled()
    assert _loop_module().startswith("asyncio")


def test_no_warning_at_all_under_w_error() -> None:
    code = (
        "import asyncio\n"
        "from spoc.workers.aio import set_uvloop_if_available, run_async_safely, LoopRunner\n"
        "print(set_uvloop_if_available())\n"
        "async def f():\n"
        "    await asyncio.sleep(0)\n"
        "    return type(asyncio.get_running_loop()).__module__\n"
        "print(run_async_safely(f()))\n"
        "with LoopRunner() as r:\n"
        "    print(r.run(f()))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    enabled, module, _ = proc.stdout.split()
    assert module.startswith("uvloop") == (enabled == "True")


def test_loop_runner_keeps_one_loop_across_runs() -> None:
    with LoopRunner() as runner:

        async def start() -> asyncio.Queue[int]:
            queue: asyncio.Queue[int] = asyncio.Queue()
            task = asyncio.ensure_future(queue.put(7))
            background.append(task)
            return queue

        background: list[asyncio.Task[None]] = []
        queue = runner.run(start())
        assert runner.run(queue.get()) == 7  # the queue and task made in run 1 work in run 2
        loop = runner.loop
    assert loop.is_closed()


def test_loop_runner_close_cancels_what_is_pending() -> None:
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    pending: list[asyncio.Future[None]] = []

    async def start() -> None:
        pending.append(asyncio.ensure_future(forever()))
        await asyncio.sleep(0)

    with LoopRunner() as runner:
        runner.run(start())
    assert cancelled.is_set()
    with pytest.raises(RuntimeError, match="closed"):
        runner.run(asyncio.sleep(0))


def test_loop_runner_refuses_to_nest() -> None:
    async def nested() -> None:
        with LoopRunner() as inner:
            inner.run(asyncio.sleep(0))  # closed for us: no "never awaited" warning

    with pytest.raises(RuntimeError, match="running event loop"):
        run_async_safely(nested())


def test_loop_factory_is_used_by_the_runner(loop_choice: None) -> None:
    created: list[asyncio.AbstractEventLoop] = []

    def factory() -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        created.append(loop)
        return loop

    aio._loops._factory = factory
    try:
        run_async_safely(asyncio.sleep(0))
    finally:
        use_default_loop()
    assert len(created) == 1
