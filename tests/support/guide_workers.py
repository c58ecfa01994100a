"""The worker classes of the Workers guide, as written there, for ``tests/core/test_guide_core.py``.

Each class from the guide is copied faithfully; the guide omits some imports
(``time``, ``Server``), which are added here. Where a snippet cannot run as
written (a placeholder path, an undefined helper such as
``create_connection``), the adaptation is a small *test-only subclass or
mixin* below the guide's class, or a comment on the one changed line.

The classes live in a module, not inside test functions, so that process
workers can be re-imported by their child under the ``spawn`` and
``forkserver`` start methods (pytest puts ``tests/`` on ``sys.path``, so this
module is importable as ``guide_workers``).

Run as a script, it plays the guide's ``run_forever()`` examples so that a
test can send them real signals::

    python tests/support/guide_workers.py graceful   # "run_forever() and Signal Handling"
    python tests/support/guide_workers.py basic      # "Basic Server Usage"

The bottom of the module holds the helpers the tests share: :func:`wait_for`,
:class:`RecordingStream` and :class:`ScriptRun`.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import os
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from queue import Queue
from types import TracebackType
from typing import IO, Any

from spoc.workers import ProcessWorker, Server, ThreadWorker

# ---------------------------------------------------------------------------
# Test-only mixins: observe what a worker did without changing its code.
# ---------------------------------------------------------------------------


class RecordEvents:
    """Test-only mixin for thread workers: keep every lifecycle event in ``self.events``.

    The worker's own ``lifecycle`` (if any) still runs, after the recording.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.events: list[tuple[str, dict[str, Any]]] = []

    def lifecycle(self, event_type: str, **data: Any) -> Any:
        self.events.append((event_type, data))
        return super().lifecycle(event_type, **data)  # type: ignore[misc]

    def event_names(self) -> list[str]:
        """The event types received, in order."""
        return [event for event, _ in self.events]


class ChildRecorder:
    """Test-only mixin for process workers: the child leaves a record in ``record_dir``.

    A process worker's changes to itself are not visible to the parent, so the
    child writes what the test needs to see into files:

    * ``stdout.txt``: everything the worker prints (``sys.stdout`` is
      redirected there, line-buffered, from ``setup`` until after ``teardown``);
    * ``events.txt``: one line per hook and lifecycle event, e.g.
      ``setup``, ``startup``, ``error main ValueError: bad record``,
      ``teardown``, ``shutdown``.

    Read them from the parent with :func:`child_stdout` and :func:`child_events`.
    """

    def __init__(self, *args: Any, record_dir: str | os.PathLike[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.record_dir = str(record_dir)

    def _record(self, line: str) -> None:
        with open(os.path.join(self.record_dir, "events.txt"), "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def setup(self) -> Any:
        self._saved_stdout = sys.stdout
        sys.stdout = open(os.path.join(self.record_dir, "stdout.txt"), "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        self._record("setup")
        return super().setup()  # type: ignore[misc]

    def lifecycle(self, event_type: str, **data: Any) -> Any:
        if event_type == "error":
            exc = data.get("exception")
            self._record(f"error {data.get('phase')} {type(exc).__name__}: {exc}")
        else:
            self._record(event_type)
        return super().lifecycle(event_type, **data)  # type: ignore[misc]

    def teardown(self) -> Any:
        try:
            self._record("teardown")
            return super().teardown()  # type: ignore[misc]
        finally:
            saved = getattr(self, "_saved_stdout", None)
            if saved is not None:
                redirected, sys.stdout = sys.stdout, saved
                redirected.close()


def child_stdout(record_dir: str | os.PathLike[str]) -> str:
    """What a :class:`ChildRecorder` process worker printed so far."""
    return _read(Path(record_dir, "stdout.txt"))


def child_events(record_dir: str | os.PathLike[str]) -> list[str]:
    """The hooks and lifecycle events a :class:`ChildRecorder` process worker went through so far."""
    return _read(Path(record_dir, "events.txt")).splitlines()


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


# ---------------------------------------------------------------------------
# "ThreadWorker" — Example: I/O Bound Task
# ---------------------------------------------------------------------------


class LogWatcher(ThreadWorker):
    """Watch a log file for new entries."""

    # Adapted: the guide opens "/var/log/app.log"; the tests pass a temporary file.
    def __init__(self, name: str | None = None, log_path: str = "/var/log/app.log") -> None:
        super().__init__(name)
        self.log_path = log_path

    def setup(self):
        """Initialize the log file handle."""
        self.log_file = open(self.log_path)  # noqa: SIM115 - as in the guide (path adapted)
        self.log_file.seek(0, 2)  # Move to end of file

    def main(self):
        """Watch for new log lines."""
        while self.is_running:
            line = self.log_file.readline()
            if line:
                self.process_log_line(line)
            else:
                time.sleep(0.1)  # Wait for new content

    def teardown(self):
        """Close the log file."""
        self.log_file.close()

    def process_log_line(self, line):
        """Process a single log line."""
        if "ERROR" in line:
            print(f"Error detected: {line.strip()}")


# ---------------------------------------------------------------------------
# "ProcessWorker" — Example: CPU Bound Task
# ---------------------------------------------------------------------------


class HashCalculator(ProcessWorker):
    """Calculate hashes for files in a queue."""

    def setup(self):
        """Initialize worker state."""
        self.processed_count = 0

    def main(self):
        """Process files from queue."""
        while self.is_running:
            # Simulate getting file from queue
            file_path = self.get_next_file()

            if file_path:
                self.calculate_hash(file_path)
                self.processed_count += 1

    def calculate_hash(self, file_path):
        """Calculate SHA-256 hash of a file."""
        sha256 = hashlib.sha256()
        with open(file_path, "rb") as f:
            for chunk in iter(lambda: f.read(4096), b""):
                sha256.update(chunk)
        return sha256.hexdigest()

    def get_next_file(self):
        """Get next file from queue (placeholder)."""
        # In real implementation, get from shared queue
        return None


class FileListHashCalculator(ChildRecorder, HashCalculator):
    """Test-only: the guide's placeholder queue replaced by a list of files given at construction.

    Prints each digest (into the child's ``stdout.txt``) and, at teardown,
    the ``processed_count`` the guide's ``main`` kept.
    """

    def __init__(self, name: str, paths: Sequence[str], *, record_dir: str) -> None:
        super().__init__(name, record_dir=record_dir)
        self.paths = list(paths)

    def get_next_file(self):
        if self.paths:
            return self.paths.pop(0)
        self.sleep(0.05)  # the queue is empty: wait a little (wakes at once on stop)
        return None

    def calculate_hash(self, file_path):
        digest = super().calculate_hash(file_path)
        print(f"{os.path.basename(file_path)} {digest}")
        return digest

    def teardown(self):
        print(f"processed_count={self.processed_count}")
        return super().teardown()


# ---------------------------------------------------------------------------
# "Creating Custom Workers" — Basic Worker Structure
# ---------------------------------------------------------------------------


class MyWorker(ThreadWorker):
    """Custom worker implementation."""

    def setup(self):
        """
        Called once before main() starts.

        Use for:
        - Opening file handles or database connections
        - Initializing state variables
        - Setting up resources
        """
        self.context.connection = self.create_connection()
        self.counter = 0

    def main(self):
        """
        Main worker loop.

        Runs until self.is_running becomes False.
        Should check is_running regularly to allow graceful shutdown.
        """
        while self.is_running:
            # Do work here
            self.counter += 1
            time.sleep(1)

    def teardown(self):
        """
        Called once after main() completes.

        Use for:
        - Closing file handles or database connections
        - Saving state
        - Cleanup operations
        """
        self.context.connection.close()
        print(f"Processed {self.counter} items")


class FakeConnection:
    """Test-only stand-in for a database connection: remembers whether it was closed."""

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class ConnectedWorker(MyWorker):
    """Test-only: supplies the ``create_connection`` that the guide's MyWorker calls."""

    def create_connection(self) -> FakeConnection:
        return FakeConnection()


# ---------------------------------------------------------------------------
# "Lifecycle Events"
# ---------------------------------------------------------------------------


class MonitoredWorker(ThreadWorker):
    """Worker with lifecycle event handling."""

    def lifecycle(self, event_type, **data):
        """
        Handle lifecycle events.

        Args:
            event_type: Type of event ("startup", "shutdown", "error")
            **data: Additional event data (e.g., exception for errors)
        """
        match event_type:
            case "startup":
                print(f"{self.name} is starting up")
                self.context.start_time = time.time()

            case "shutdown":
                elapsed = time.time() - self.context.start_time
                print(f"{self.name} ran for {elapsed:.2f} seconds")

            case "error":
                exception = data.get("exception")
                print(f"{self.name} error: {exception}")
                # Log to monitoring system, send alerts, etc.

    def main(self):
        """Worker main loop."""
        while self.is_running:
            # Do work
            time.sleep(1)


class FailingMonitoredWorker(RecordEvents, MonitoredWorker):
    """Test-only: the guide's MonitoredWorker whose work fails, to produce the "error" event."""

    def main(self):
        raise RuntimeError("disk full")


# ---------------------------------------------------------------------------
# "The Server Class" — Basic Server Usage
# ---------------------------------------------------------------------------


class Worker1(ThreadWorker):
    def main(self):
        while self.is_running:
            print(f"{self.name} working...")
            time.sleep(1)


class Worker2(ProcessWorker):
    def main(self):
        while self.is_running:
            print(f"{self.name} processing...")
            time.sleep(1)


class RecordedWorker2(ChildRecorder, Worker2):
    """Test-only: the guide's Worker2, its child's prints recorded in ``record_dir/stdout.txt``."""


# ---------------------------------------------------------------------------
# "run_forever() and Signal Handling"
# ---------------------------------------------------------------------------


class GracefulWorker(ThreadWorker):
    def setup(self):
        """Initialize state."""
        self.items_processed = 0

    def main(self):
        """Process items until stopped."""
        while self.is_running:
            # Simulate processing
            self.items_processed += 1
            time.sleep(0.5)

    def teardown(self):
        """Save state before shutdown."""
        print(f"Processed {self.items_processed} items before shutdown")


# ---------------------------------------------------------------------------
# "Async Support" — Async Worker Example
# ---------------------------------------------------------------------------


class AsyncAPIWorker(ThreadWorker):
    """Worker that makes async HTTP requests."""

    async def setup(self):
        """Async setup method."""
        # Create async HTTP client
        self.session = await self.create_session()

    async def main(self):
        """Async main loop."""
        while self.is_running:
            # Fetch data from API
            data = await self.fetch_data()
            await self.process_data(data)
            await asyncio.sleep(0.05)  # Adapted: the guide sleeps 5 s, too slow for a test.

    async def teardown(self):
        """Async cleanup."""
        await self.session.close()

    async def fetch_data(self):
        """Fetch data from API."""
        # Simulated async HTTP request
        await asyncio.sleep(0.1)
        return {"status": "ok"}

    async def process_data(self, data):
        """Process fetched data."""
        print(f"Processed: {data}")

    async def create_session(self):
        """Create HTTP session."""
        # In real code, use aiohttp or similar
        return object()

    async def lifecycle(self, event_type, **data):
        """Async lifecycle handler."""
        print(f"Async event: {event_type}")


class FakeSession:
    """Test-only stand-in for an async HTTP session (``aiohttp.ClientSession``-like)."""

    def __init__(self) -> None:
        self.closed = False
        self.loop = asyncio.get_running_loop()
        self.close_loop: asyncio.AbstractEventLoop | None = None

    async def close(self) -> None:
        await asyncio.sleep(0)
        self.close_loop = asyncio.get_running_loop()
        self.closed = True


class RecordingAsyncAPIWorker(RecordEvents, AsyncAPIWorker):
    """Test-only: a session that can be closed (the guide's placeholder ``object()`` has no
    ``close()``), and a record of what was processed and on which event loop.
    """

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        self.processed: list[Any] = []
        self.loops: set[asyncio.AbstractEventLoop] = set()

    async def create_session(self):
        self.loops.add(asyncio.get_running_loop())
        return FakeSession()

    async def fetch_data(self):
        self.loops.add(asyncio.get_running_loop())
        return await super().fetch_data()

    async def process_data(self, data):
        await super().process_data(data)
        self.processed.append(data)

    async def lifecycle(self, event_type, **data):
        self.loops.add(asyncio.get_running_loop())
        await super().lifecycle(event_type, **data)


# ---------------------------------------------------------------------------
# "Pattern 1: Background Job Processor"
# ---------------------------------------------------------------------------


class JobProcessor(ThreadWorker):
    """Process jobs from a shared queue."""

    def __init__(self, name, job_queue):
        super().__init__(name)
        self.job_queue = job_queue

    def main(self):
        """Process jobs until stopped."""
        while self.is_running:
            try:
                # Get job with timeout to allow checking is_running
                job = self.job_queue.get(timeout=1.0)
                self.process_job(job)
                self.job_queue.task_done()
            except Exception:
                # Queue empty, continue
                continue

    def process_job(self, job):
        """Process a single job."""
        print(f"{self.name} processing: {job}")
        time.sleep(0.5)  # Simulate work


def make_job_server() -> tuple[Server, Queue[str]]:
    """The guide's Pattern 1 set-up, as written: a server of two JobProcessors and ten queued jobs."""
    # Create shared queue
    job_queue = Queue()

    # Create server with multiple workers
    server = Server(name="JobServer")
    server.add_worker(JobProcessor("Worker-1", job_queue))
    server.add_worker(JobProcessor("Worker-2", job_queue))

    # Add jobs
    for i in range(10):
        job_queue.put(f"Job-{i}")
    return server, job_queue


# ---------------------------------------------------------------------------
# "Best Practices" — the guide shows methods; each is wrapped in a class here.
# ---------------------------------------------------------------------------


class GoodLoopWorker(ThreadWorker):
    """Best practice 1, "Good": the guide's main(); ``do_work`` supplied (it counts)."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        self.work_done = 0

    def do_work(self) -> None:
        self.work_done += 1

    def main(self):
        """Good: Checks is_running regularly."""
        while self.is_running:
            self.do_work()
            time.sleep(1)


class BadLoopWorker(ChildRecorder, ProcessWorker):
    """Best practice 1, "Bad": the guide's main() that never checks ``is_running``.

    A process worker, because only a process can be ended when it ignores the
    stop request (after ``stop_timeout``). ``do_work`` is supplied (it prints).
    """

    def do_work(self) -> None:
        print("working")

    def main(self):
        """Bad: No shutdown check."""
        while True:  # Will never stop gracefully
            self.do_work()
            time.sleep(1)


class _Database:
    """Test-only stand-in for a database: every connection it made, and an optional failure."""

    def __init__(self) -> None:
        self.connections: list[FakeConnection] = []
        self.fail_next = False

    def reset(self) -> None:
        self.connections.clear()
        self.fail_next = False


DATABASE = _Database()


def connect_to_database() -> FakeConnection:
    """Test-only: the ``connect_to_database()`` that best practice 3 calls."""
    if DATABASE.fail_next:
        DATABASE.fail_next = False
        raise ConnectionError("database unreachable")
    connection = FakeConnection()
    DATABASE.connections.append(connection)
    return connection


class ResourceWorker(RecordEvents, ThreadWorker):
    """Best practice 3 ("Clean Up Resources"): the guide's setup() and teardown(); main() supplied."""

    def setup(self):
        """Acquire resources."""
        self.db_conn = connect_to_database()
        self.file_handle = open("data.txt", "w")  # noqa: SIM115 - as in the guide

    def teardown(self):
        """Release resources."""
        if hasattr(self, "db_conn"):
            self.db_conn.close()
        if hasattr(self, "file_handle"):
            self.file_handle.close()

    def main(self):
        self.file_handle.write("row\n")
        while self.sleep(60):  # until stopped
            pass


class RiskyOperations:
    """Best practice 4 ("Handle Errors Gracefully"): the guide's main(), shared by the two workers below.

    ``do_risky_operation`` is supplied: it fails with ``ConnectionError`` the
    first time, then with an unexpected ``ValueError``.
    """

    attempts = 0

    def do_risky_operation(self) -> None:
        self.attempts += 1
        if self.attempts == 1:
            raise ConnectionError("connection refused")
        raise ValueError("bad record")

    def main(self):
        """Handle errors without crashing."""
        while self.is_running:
            try:
                self.do_risky_operation()
            except ConnectionError as e:
                print(f"Connection failed: {e}, retrying...")
                time.sleep(0.05)  # Adapted: the guide waits 5 s before retrying, too slow for a test.
            except Exception as e:  # noqa: F841 - as in the guide
                # Let unexpected errors propagate to lifecycle handler
                raise


class RiskyThreadWorker(RecordEvents, RiskyOperations, ThreadWorker):
    """Best practice 4 in a thread."""


class RiskyProcessWorker(ChildRecorder, RiskyOperations, ProcessWorker):
    """Best practice 4 in a process: the error must reach the parent as ``worker.exception``."""


class Metrics:
    """Test-only stand-in for a metrics client (``metrics.increment(name)``)."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def increment(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1


metrics = Metrics()
logger = logging.getLogger("guide_workers")


class MonitoringWorker(ThreadWorker):
    """Best practice 5 ("Use Lifecycle Events for Monitoring"): the guide's lifecycle(); main() supplied.

    ``fail_with`` (test-only) makes main() raise that exception.
    """

    def __init__(self, name: str | None = None, fail_with: BaseException | None = None) -> None:
        super().__init__(name)
        self.fail_with = fail_with

    def lifecycle(self, event_type, **data):
        """Send lifecycle events to monitoring system."""
        match event_type:
            case "startup":
                metrics.increment("worker.started")
            case "shutdown":
                metrics.increment("worker.stopped")
            case "error":
                metrics.increment("worker.errors")
                logger.error(f"Worker error: {data['exception']}")

    def main(self):
        if self.fail_with is not None:
            raise self.fail_with
        while self.sleep(60):  # until stopped
            pass


class ContextState:
    """Best practice 6 ("Use Context for Shared State"): the guide's three methods; do_work supplied."""

    def do_work(self) -> None:
        time.sleep(0.01)

    def setup(self):
        """Initialize shared context."""
        self.context.processed_count = 0
        self.context.start_time = time.time()

    def main(self):
        """Access shared context."""
        while self.is_running:
            self.do_work()
            self.context.processed_count += 1

    def teardown(self):
        """Report using shared context."""
        elapsed = time.time() - self.context.start_time
        rate = self.context.processed_count / elapsed
        print(f"Processed {self.context.processed_count} items at {rate:.2f}/sec")


class ContextThreadWorker(ContextState, ThreadWorker):
    """Best practice 6 in a thread."""


class ContextProcessWorker(ChildRecorder, ContextState, ProcessWorker):
    """Best practice 6 in a process: its context lives in the child."""


class DataWorker(ThreadWorker):
    """Worker with testable logic."""

    def main(self):
        """Worker loop."""
        while self.is_running:
            data = self.fetch_data()
            result = self.process_data(data)  # Testable
            self.save_result(result)

    @staticmethod
    def process_data(data):
        """Pure function - easy to test."""
        return data.upper()


class ListDataWorker(DataWorker):
    """Test-only: best practice 7's DataWorker fed from a list; it stops itself when the list is empty."""

    def __init__(self, name: str | None = None, items: Sequence[str] = ()) -> None:
        super().__init__(name)
        self.items = list(items)
        self.saved: list[str] = []

    def fetch_data(self) -> str:
        if not self.items:
            self.stop()  # nothing left: stop from inside the worker
            return ""
        return self.items.pop(0)

    def save_result(self, result: str) -> None:
        if result:
            self.saved.append(result)


# ---------------------------------------------------------------------------
# Shared test helpers
# ---------------------------------------------------------------------------


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; return its last truth."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return bool(predicate())
        time.sleep(interval)


class RecordingStream:
    """A thread-safe text stream that keeps everything written to it (to stand in for ``sys.stdout``).

    ``print()`` writes a line's text and its newline in two calls, so two threads
    printing at once could interleave them; each thread's text is held back until
    its line is complete, so that lines never mix.
    """

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._partial: dict[int, str] = {}  # per thread: the start of a line not ended yet
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            pending = self._partial.pop(threading.get_ident(), "") + text
            complete, newline, rest = pending.rpartition("\n")
            if newline:
                self._parts.append(complete + newline)
            if rest:
                self._partial[threading.get_ident()] = rest
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    @property
    def text(self) -> str:
        """Everything written so far."""
        with self._lock:
            return "".join(self._parts) + "".join(self._partial.values())

    def lines(self) -> list[str]:
        """The complete lines written so far."""
        return self.text.splitlines()

    def wait_for_text(self, needle: str, timeout: float = 30.0) -> bool:
        """Wait until ``needle`` was written; return whether it was."""
        return wait_for(lambda: needle in self.text, timeout)


class ScriptRun:
    """A Python script run in a subprocess; its stdout is read as it comes, its stderr goes to a file.

    Use as a context manager: on exit a script still running is killed, so no
    process outlives the test.
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        stderr_path: str | os.PathLike[str],
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.args = list(args)
        self.stderr_path = Path(stderr_path)
        self._stderr: IO[bytes] = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in __exit__
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, *self.args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=full_env,
        )
        self._output = b""
        self.returncode: int | None = None

    def __enter__(self) -> ScriptRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.communicate()
        finally:
            self._stderr.close()

    @property
    def output(self) -> str:
        """The stdout read so far."""
        return self._output.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        """The stderr written so far."""
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def describe(self) -> str:
        """The script's output so far, for assertion messages."""
        return f"--- stdout ---\n{self.output}\n--- stderr ---\n{self.stderr}"

    def read_until(self, needle: str, timeout: float = 30.0) -> str:
        """Read stdout until ``needle`` appears; fail if the script ends or the time runs out first."""
        stream = self.proc.stdout
        assert stream is not None
        fd = stream.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while needle.encode() not in self._output:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{needle!r} not printed within {timeout}s\n{self.describe()}")
                if selector.select(remaining):
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        raise AssertionError(
                            f"the script ended before printing {needle!r}\n{self.describe()}"
                        )
                    self._output += chunk
        return self.output

    def finish(self, timeout: float = 30.0) -> str:
        """Wait for the script to end (at most ``timeout`` seconds) and return all of its stdout."""
        try:
            rest, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the script did not end within {timeout}s\n{self.describe()}") from None
        self._output += rest or b""
        self.returncode = self.proc.returncode
        return self.output


# ---------------------------------------------------------------------------
# Script mode: the guide's run_forever() examples, for tests that send signals.
# ---------------------------------------------------------------------------


def _announce_when(condition: Callable[[], object], message: str) -> None:
    """Test-only: print ``message`` once ``condition`` holds, so the test knows when to send its signal."""

    def announce() -> None:
        if wait_for(condition, timeout=60.0):
            print(message, flush=True)

    threading.Thread(target=announce, name="announce", daemon=True).start()


def _run_graceful() -> int:
    # Create and configure server
    server = Server(name="GracefulServer")
    worker = GracefulWorker(name="Worker-1")
    server.add_worker(worker)

    _announce_when(lambda: getattr(worker, "items_processed", 0) >= 1, "Worker-1 is processing")

    # Run until SIGINT (Ctrl+C) or SIGTERM
    return server.run_forever()


def _run_basic() -> int:
    # Create server
    server = Server(name="MyAppServer")

    # Add workers
    server.add_worker(Worker1(name="ThreadWorker-1"))
    server.add_worker(Worker2(name="ProcessWorker-1"))

    # Start all workers and run until interrupted
    return server.run_forever()


def _script_main(argv: Sequence[str]) -> int:
    scenarios = {"graceful": _run_graceful, "basic": _run_basic}
    if len(argv) != 1 or argv[0] not in scenarios:
        print(f"usage: guide_workers.py {{{','.join(scenarios)}}}", file=sys.stderr)
        return 2
    status = scenarios[argv[0]]()
    print(f"run_forever() returned {status}", flush=True)
    return status


if __name__ == "__main__":
    raise SystemExit(_script_main(sys.argv[1:]))
