"""spoc.workers.aio: run_async_safely, the uvloop switch and LoopRunner."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from spoc.workers import aio
from spoc.workers.aio import (
    LOOP_ENV,
    LoopRunner,
    run_async_safely,
    set_uvloop_if_available,
    use_default_loop,
    uvloop_enabled,
)

UVLOOP_EXPECTED = os.environ.get("SPOC_WORKERS_TEST_UVLOOP")
UVLOOP_INSTALLED = importlib.util.find_spec("uvloop") is not None
DEFAULT_LOOP = "uvloop" if UVLOOP_INSTALLED else "asyncio"


@pytest.fixture
def loop_choice(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Start from "not chosen yet" (no $SPOC_WORKERS_LOOP); put the choice back after the test."""
    saved = aio._loops._factory
    monkeypatch.delenv(LOOP_ENV, raising=False)
    aio._loops._factory = None
    yield
    aio._loops._factory = saved


def _loop_module() -> str:
    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    result = run_async_safely(which())
    assert isinstance(result, str)
    return result


@pytest.mark.no_processes
def test_no_running_loop_returns_the_result() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert run_async_safely(answer()) == 42


@pytest.mark.no_processes
def test_no_running_loop_raises_the_exception() -> None:
    async def fail() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        run_async_safely(fail())


@pytest.mark.no_processes
def test_each_call_without_a_loop_leaves_no_loop_behind() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def grab() -> None:
        loops.append(asyncio.get_running_loop())

    run_async_safely(grab())
    run_async_safely(grab())
    assert loops[0] is not loops[1]
    assert all(loop.is_closed() for loop in loops)


@pytest.mark.no_processes
def test_rejects_what_is_not_a_coroutine() -> None:
    with pytest.raises(TypeError, match="coroutine"):
        run_async_safely(lambda: None)  # type: ignore[arg-type]


@pytest.mark.no_processes
def test_inside_a_running_loop_returns_a_task_on_that_loop() -> None:
    async def child() -> str:
        return "child-done"

    async def parent() -> tuple[bool, str]:
        task = run_async_safely(child())
        assert isinstance(task, asyncio.Task)
        return task.get_loop() is asyncio.get_running_loop(), await task

    assert run_async_safely(parent()) == (True, "child-done")


@pytest.mark.no_processes
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


@pytest.mark.no_processes
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


@pytest.mark.no_processes
def test_uvloop_is_installed_exactly_when_this_nox_cell_says() -> None:
    if UVLOOP_EXPECTED is not None:
        assert (UVLOOP_EXPECTED == "1") == UVLOOP_INSTALLED, "this nox cell's uvloop expectation is wrong"
    else:
        assert isinstance(UVLOOP_INSTALLED, bool)


@pytest.mark.no_processes
def test_the_default_loop_is_uvloop_when_it_is_importable(loop_choice: None) -> None:
    assert _loop_module().startswith(DEFAULT_LOOP)
    assert uvloop_enabled() is UVLOOP_INSTALLED
    with LoopRunner() as runner:
        assert type(runner.loop).__module__.startswith(DEFAULT_LOOP)


@pytest.mark.no_processes
def test_without_uvloop_the_default_loop_is_asyncio(
    loop_choice: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes "import uvloop" fail
    assert _loop_module().startswith("asyncio")
    assert not uvloop_enabled()


@pytest.mark.no_processes
def test_spoc_workers_loop_asyncio_opts_out(loop_choice: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOOP_ENV, "asyncio")
    assert _loop_module().startswith("asyncio")
    assert not uvloop_enabled()


@pytest.mark.parametrize("value", ["auto", "", " Auto "])
@pytest.mark.no_processes
def test_spoc_workers_loop_auto_is_the_default(
    loop_choice: None, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(LOOP_ENV, value)
    assert _loop_module().startswith(DEFAULT_LOOP)


@pytest.mark.no_processes
def test_spoc_workers_loop_uvloop_demands_it(loop_choice: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOOP_ENV, "uvloop")
    if UVLOOP_INSTALLED:
        assert _loop_module().startswith("uvloop")
    monkeypatch.setitem(sys.modules, "uvloop", None)
    aio._loops._factory = None
    with pytest.raises(ImportError, match="SPOC_WORKERS_LOOP=uvloop, but uvloop is not installed"):
        run_async_safely(asyncio.sleep(0))


@pytest.mark.no_processes
def test_an_unknown_spoc_workers_loop_is_a_clear_error(
    loop_choice: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOOP_ENV, "tokio")
    with pytest.raises(
        ValueError, match=r"\$SPOC_WORKERS_LOOP='tokio': expected one of auto, asyncio, uvloop"
    ):
        uvloop_enabled()


@pytest.mark.no_processes
def test_the_argument_opts_out_for_one_call(loop_choice: None) -> None:
    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run_async_safely(which(), uvloop=False).startswith("asyncio")
    with LoopRunner(uvloop=False) as runner:
        assert runner.run(which()).startswith("asyncio")
    assert run_async_safely(which()).startswith(DEFAULT_LOOP)  # the process-wide choice is unchanged


@pytest.mark.no_processes
def test_the_argument_can_demand_uvloop(loop_choice: None, monkeypatch: pytest.MonkeyPatch) -> None:
    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    use_default_loop()
    if UVLOOP_INSTALLED:
        assert run_async_safely(which(), uvloop=True).startswith("uvloop")
    monkeypatch.setitem(sys.modules, "uvloop", None)
    with pytest.raises(ImportError, match="uvloop=True, but uvloop is not installed"):
        run_async_safely(which(), uvloop=True)  # the coroutine is closed: no "never awaited" warning
    with pytest.raises(ImportError, match="uvloop=True"):
        LoopRunner(uvloop=True)


@pytest.mark.no_processes
def test_the_argument_is_ignored_inside_a_running_loop(loop_choice: None) -> None:
    async def child() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    async def parent() -> bool:
        task = run_async_safely(child(), uvloop=not UVLOOP_INSTALLED)
        assert isinstance(task, asyncio.Task)
        return await task is asyncio.get_running_loop()

    assert run_async_safely(parent())


@pytest.mark.no_processes
def test_uvloop_switch_reports_what_it_did(loop_choice: None) -> None:
    use_default_loop()
    assert not uvloop_enabled()
    assert _loop_module().startswith("asyncio")
    assert set_uvloop_if_available() is UVLOOP_INSTALLED
    assert uvloop_enabled() is UVLOOP_INSTALLED
    assert _loop_module().startswith(DEFAULT_LOOP)


@pytest.mark.no_processes
def test_the_calls_win_over_the_environment(loop_choice: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOOP_ENV, "asyncio")
    assert set_uvloop_if_available() is UVLOOP_INSTALLED
    assert _loop_module().startswith(DEFAULT_LOOP)
    monkeypatch.setenv(LOOP_ENV, "uvloop")
    use_default_loop()
    assert _loop_module().startswith("asyncio")


@pytest.mark.no_processes
def test_without_uvloop_the_switch_is_false(loop_choice: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes "import uvloop" fail
    use_default_loop()
    assert set_uvloop_if_available() is False
    assert not uvloop_enabled()
    assert _loop_module().startswith("asyncio")


def _run_quietly(code: str, **env: str) -> list[str]:
    """Run ``code`` in a fresh interpreter under ``-W error``; it must print and warn nothing else."""
    environ = {k: v for k, v in os.environ.items() if k != LOOP_ENV}
    environ.update(env)
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environ,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout.split()


LOOPS_IN_A_FRESH_PROCESS = (
    "import asyncio\n"
    "from spoc.workers.aio import run_async_safely, LoopRunner, uvloop_enabled\n"
    "async def f():\n"
    "    await asyncio.sleep(0)\n"
    "    return type(asyncio.get_running_loop()).__module__\n"
    "print(run_async_safely(f()))\n"
    "with LoopRunner() as r:\n"
    "    print(r.run(f()))\n"
    "print(uvloop_enabled())\n"
)


def test_no_warning_at_all_under_w_error() -> None:
    via_safely, via_runner, enabled = _run_quietly(LOOPS_IN_A_FRESH_PROCESS)
    assert via_safely.startswith(DEFAULT_LOOP)
    assert via_runner.startswith(DEFAULT_LOOP)
    assert enabled == str(UVLOOP_INSTALLED)


def test_no_warning_when_uvloop_is_enabled_by_hand_either() -> None:
    code = "from spoc.workers.aio import set_uvloop_if_available\nprint(set_uvloop_if_available())\n"
    code += LOOPS_IN_A_FRESH_PROCESS
    enabled, via_safely, _, _ = _run_quietly(code)
    assert enabled == str(UVLOOP_INSTALLED)
    assert via_safely.startswith(DEFAULT_LOOP)


def test_the_environment_opts_a_whole_process_out() -> None:
    via_safely, via_runner, enabled = _run_quietly(LOOPS_IN_A_FRESH_PROCESS, **{LOOP_ENV: "asyncio"})
    assert via_safely.startswith("asyncio")
    assert via_runner.startswith("asyncio")
    assert enabled == "False"


@pytest.mark.no_processes
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


@pytest.mark.no_processes
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


@pytest.mark.no_processes
def test_loop_runner_refuses_to_nest() -> None:
    async def nested() -> None:
        with LoopRunner() as inner:
            inner.run(asyncio.sleep(0))  # closed for us: no "never awaited" warning

    with pytest.raises(RuntimeError, match="running event loop"):
        run_async_safely(nested())


@pytest.mark.no_processes
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
