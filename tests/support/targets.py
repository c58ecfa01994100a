"""Workers and helpers shared by the tests.

Process workers live here, in an importable module, because spawn and
forkserver children must import their class by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from spoc.workers import AbstractWorker, ProcessWorker, ThreadWorker, WorkerEvent

UVLOOP_INSTALLED = importlib.util.find_spec("uvloop") is not None
"""Whether uvloop is importable here, so whether async hooks get it by default."""
DEFAULT_LOOP = "uvloop" if UVLOOP_INSTALLED else "asyncio"
"""What :func:`loop_kind` should say in an async hook when nothing opts out."""


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.005) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


@contextlib.contextmanager
def started(*workers: AbstractWorker, timeout: float = 10.0) -> Iterator[None]:
    """Start the workers; on leaving, however, stop them all and check each ended within ``timeout``.

    Instead of the hand-written ``start()``, ``try``, ``finally: stop(); assert join()``.
    """
    begun: list[AbstractWorker] = []
    try:
        for worker in workers:
            worker.start()
            begun.append(worker)
        yield
    finally:
        for worker in begun:
            worker.stop()
        for worker in begun:
            assert worker.join(timeout), f"{worker!r} did not end within {timeout}s"


def mark(directory: str | os.PathLike[str], name: str, text: str = "") -> None:
    """Leave a marker file: how a child process tells the test what it did."""
    path = Path(directory) / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def marks(directory: str | os.PathLike[str]) -> set[str]:
    """The names of the marker files in ``directory``."""
    return {p.name for p in Path(directory).iterdir() if not p.name.endswith(".tmp")}


# -- process workers ----------------------------------------------------------


class MarkingSleeper(ProcessWorker):
    """Marks each phase in ``directory``, sleeps in the framework's wait until stopped."""

    def __init__(self, name: str, directory: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.directory = directory

    def setup(self) -> None:
        mark(self.directory, f"{self.name}.setup", str(os.getpid()))

    def main(self) -> None:
        mark(self.directory, f"{self.name}.main")
        while self.sleep(3600):
            pass

    def teardown(self) -> None:
        mark(self.directory, f"{self.name}.teardown")

    def lifecycle(self, event_type: str, **data: Any) -> None:
        mark(self.directory, f"{self.name}.{event_type}")


class AsyncMarkingSleeper(MarkingSleeper):
    """The same, with async hooks and ``asleep``."""

    async def main(self) -> None:  # type: ignore[override]
        mark(self.directory, f"{self.name}.main")
        while await self.asleep(3600):
            pass


class Raiser(ProcessWorker):
    """Raises from ``phase``."""

    def __init__(self, name: str = "Raiser", phase: str = "main", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.phase = phase

    def setup(self) -> None:
        if self.phase == "setup":
            raise ValueError("setup failed")

    def main(self) -> None:
        if self.phase == "main":
            raise ValueError("main failed")

    def teardown(self) -> None:
        if self.phase == "teardown":
            raise ValueError("teardown failed")


class UnpicklableError(Exception):
    """An exception that cannot be rebuilt in the parent (needs two arguments)."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(a)
        self.b = b


class RaisesUnpicklable(ProcessWorker):
    def main(self) -> None:
        raise UnpicklableError("odd", "two")


class ExitsWith(ProcessWorker):
    """Leaves with ``os._exit(code)`` from main, no goodbye."""

    def __init__(self, name: str = "ExitsWith", code: int = 3, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.code = code

    def main(self) -> None:
        os._exit(self.code)


class IgnoresStop(ProcessWorker):
    """Never looks at the stop flag: sleeps in plain ``time.sleep`` until killed."""

    def __init__(self, name: str, directory: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.directory = directory

    def main(self) -> None:
        mark(self.directory, f"{self.name}.main", str(os.getpid()))
        while True:
            time.sleep(0.05)


class HoldsGil(ProcessWorker):
    """Spends main in one endless regular-expression match: C code that never lets go of the GIL.

    Its control thread cannot run, so no Python-level guard (parent watch,
    stop_timeout, heartbeat) can act; only the kernel or another process can end it.
    """

    def __init__(self, name: str, directory: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.directory = directory

    def main(self) -> None:
        mark(self.directory, f"{self.name}.main", str(os.getpid()))
        re.match(r"(a+)+$", "a" * 64 + "b")  # catastrophic backtracking: 2**64 steps

    def teardown(self) -> None:
        mark(self.directory, f"{self.name}.teardown")


class FloodsQueue(ProcessWorker):
    """Puts 50 KB items into ``queue`` (which nobody reads) until stopped.

    Its queue's feeder thread blocks on the full pipe, and multiprocessing
    joins that thread at interpreter exit: an orphan would finish teardown
    and then hang in its exit for ever.
    """

    def __init__(self, name: str, directory: str, queue: Any, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.directory = directory
        self.queue = queue

    def main(self) -> None:
        for _ in range(4):  # two fill the pipe; the rest wait in the feeder's buffer
            self.queue.put(b"x" * 50_000)
        mark(self.directory, f"{self.name}.main", str(os.getpid()))
        while self.sleep(3600):
            pass

    def teardown(self) -> None:
        mark(self.directory, f"{self.name}.teardown")


class SelfStopper(ProcessWorker):
    """Counts to ``n`` then stops itself from inside."""

    def __init__(self, name: str, directory: str, n: int = 3, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.directory = directory
        self.n = n

    def main(self) -> None:
        count = 0
        while self.is_running:
            count += 1
            if count >= self.n:
                self.stop()
        mark(self.directory, f"{self.name}.count", str(count))


class SignalsItself(ProcessWorker):
    """Sends ``signum`` to its own process from main, then waits for a stop."""

    def __init__(self, name: str, directory: str, signum: int, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.directory = directory
        self.signum = signum

    def main(self) -> None:
        os.kill(os.getpid(), self.signum)
        stopped = not self.sleep(1.0)
        mark(self.directory, f"{self.name}.stopped-by-signal" if stopped else f"{self.name}.survived")

    def teardown(self) -> None:
        mark(self.directory, f"{self.name}.teardown")


class HoldsLock(ProcessWorker):
    """Holds an unpicklable object in its context (for the pickling check)."""

    def __init__(self, name: str = "HoldsLock", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.context.client = Client()

    def main(self) -> None:
        pass


class Client:
    def __init__(self) -> None:
        self.host = "localhost"
        self._lock = threading.Lock()


class AsyncProcessOrder(ProcessWorker):
    """Async hooks in a child: setup's task and queue must survive into main."""

    def __init__(self, name: str, directory: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.directory = directory

    async def setup(self) -> None:
        self.queue: asyncio.Queue[int] = asyncio.Queue()
        self.task = asyncio.ensure_future(self._produce())

    async def _produce(self) -> None:
        for i in range(3):
            await self.queue.put(i)

    async def main(self) -> None:
        got = [await self.queue.get() for _ in range(3)]
        loop_type = type(asyncio.get_running_loop()).__module__
        mark(self.directory, f"{self.name}.main", f"{got} {loop_type}")

    async def teardown(self) -> None:
        await self.task


def loop_kind() -> str:
    """``"uvloop"`` or ``"asyncio"``: where the class of the running loop comes from."""
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


class RecordsLoops(AbstractWorker):
    """Async hooks that record in ``self.seen`` which loop each ran on."""

    seen: dict[str, str]

    async def setup(self) -> None:
        self.seen = {"setup": loop_kind()}

    async def lifecycle(self, event_type: str, **data: Any) -> None:
        if event_type == "startup":
            self.seen["startup"] = loop_kind()

    async def main(self) -> None:
        self.seen["main"] = loop_kind()

    async def teardown(self) -> None:
        self.seen["teardown"] = loop_kind()


class LoopReporter(RecordsLoops, ProcessWorker):
    """Notes the loops in a marker ``<name>.loops`` (the parent cannot see ``seen``).

    The marker reads ``setup=uvloop startup=uvloop main=uvloop teardown=uvloop``.
    """

    def __init__(self, name: str, directory: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.directory = directory

    async def teardown(self) -> None:
        await super().teardown()
        mark(self.directory, f"{self.name}.loops", " ".join(f"{k}={v}" for k, v in self.seen.items()))


class _RunningProbe:
    """Notes what ``is_running`` says in each hook, in markers ``<name>.<hook>`` ("True"/"False").

    ``end``: ``"wait"`` (main loops ``while self.is_running``), ``"return"``
    (main returns at once) or ``"raise"`` (main raises).
    """

    def __init__(self, name: str, directory: str, end: str = "wait", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.directory = directory
        self.end = end

    def _note(self, hook: str) -> None:
        mark(self.directory, f"{self.name}.{hook}", str(self.is_running))

    def setup(self) -> None:
        self._note("setup")

    def main(self) -> None:
        self._note("main")
        if self.end == "raise":
            raise RuntimeError("probe failed")
        if self.end == "wait":
            while self.is_running:
                self.sleep(3600)
        self._note("after")

    def teardown(self) -> None:
        self._note("teardown")


class ProcessRunningProbe(_RunningProbe, ProcessWorker):
    """:class:`_RunningProbe` in a child process."""


class ThreadRunningProbe(_RunningProbe, ThreadWorker):
    """:class:`_RunningProbe` in a thread."""


# -- thread workers -----------------------------------------------------------


class ThreadLoopRecorder(RecordsLoops, ThreadWorker):
    """Records the loops of its async hooks in ``self.seen``."""

    def __init__(self, name: str = "ThreadLoopRecorder", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.seen = {}


class Recorder(ThreadWorker):
    """Records every hook and event, in order, in ``self.calls``."""

    def __init__(self, name: str = "Recorder", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.calls: list[str] = []
        self.errors: list[tuple[str, BaseException]] = []
        self.in_main = threading.Event()

    def setup(self) -> None:
        self.calls.append("setup")

    def main(self) -> None:
        self.calls.append("main")
        self.in_main.set()
        while self.sleep(3600):
            pass

    def teardown(self) -> None:
        self.calls.append("teardown")

    def lifecycle(self, event_type: str, **data: Any) -> None:
        self.calls.append(event_type)
        if event_type == "error":
            self.errors.append((data["phase"], data["exception"]))


SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}


class HangsFirstTime(ProcessWorker):
    """First run: stuck in ``time.sleep`` (no heartbeat). Later runs: idle in the framework."""

    restart = "on-failure"

    def __init__(self, name: str, directory: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.directory = directory

    def main(self) -> None:
        first = not (Path(self.directory) / f"{self.name}.hung").exists()
        mark(self.directory, f"{self.name}.main.{os.getpid()}")
        if first:
            mark(self.directory, f"{self.name}.hung")
            time.sleep(10**6)
        while self.sleep(3600):
            pass


class HoldsGilFirstTime(HangsFirstTime):
    """First run: stuck in a regular-expression match that holds the GIL. Later runs: idle.

    Its control thread cannot run: it answers neither the stacks request nor
    terminate(); only the supervisor's SIGKILL ends it.
    """

    def main(self) -> None:
        first = not (Path(self.directory) / f"{self.name}.hung").exists()
        mark(self.directory, f"{self.name}.main.{os.getpid()}")
        if first:
            mark(self.directory, f"{self.name}.hung")
            re.match(r"(a+)+$", "a" * 64 + "b")  # catastrophic backtracking: 2**64 steps
        while self.sleep(3600):
            pass


class CrashesOnStart(ProcessWorker):
    """Its setup always raises."""

    def setup(self) -> None:
        raise RuntimeError("cannot start")

    def main(self) -> None:
        pass


class Idle(ThreadWorker):
    """Waits in the framework's sleep until stopped."""

    def main(self) -> None:
        while self.sleep(3600):
            pass


class ProcessIdle(ProcessWorker):
    """The same, in a process."""

    def main(self) -> None:
        while self.sleep(3600):
            pass


class Events:
    """Collects a server's events (listeners run in other threads)."""

    def __init__(self) -> None:
        self.items: list[WorkerEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: WorkerEvent) -> None:
        with self._lock:
            self.items.append(event)

    def of(self, kind: str, worker: str | None = None) -> list[WorkerEvent]:
        """The events of ``kind`` so far (about ``worker`` only, when given)."""
        with self._lock:
            return [e for e in self.items if e.kind == kind and (worker is None or e.worker == worker)]
