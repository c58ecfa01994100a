"""Workers for the operations tests: the HTTP endpoint, recycling, the status page.

Process workers live here, in an importable module, because spawn and
forkserver children must import their class by name.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import threading
import time
from pathlib import Path
from typing import Any

from spoc.workers import AbstractWorker, ProcessWorker, Server, ThreadWorker
from targets import Idle, ProcessIdle


def request(
    target: Server | tuple[str, int],
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    *,
    body: bytes | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """One request to a server's HTTP endpoint (or to an address): (status, headers, body)."""
    address = target.http_address if isinstance(target, Server) else target
    assert address is not None, "the server's HTTP endpoint is not serving"
    connection = http.client.HTTPConnection(address[0], address[1], timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        reply = connection.getresponse()
        return reply.status, dict(reply.getheaders()), reply.read()
    finally:
        connection.close()


def get_json(target: Server | tuple[str, int], path: str) -> tuple[int, Any]:
    """GET ``path`` and decode its JSON body: (status, payload)."""
    status, _, body = request(target, path)
    return status, json.loads(body)


def teardowns(directory: str | os.PathLike[str], name: str) -> int:
    """How many teardowns the worker ``name`` has recorded in ``directory``."""
    path = Path(directory) / f"{name}.teardowns"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _record_teardown(directory: str, name: str) -> None:
    with open(Path(directory) / f"{name}.teardowns", "a") as file:
        file.write(f"{os.getpid()}\n")


class _CountsJobs:
    """Does a "job" every ``every`` seconds, counted where the parent can read it (``jobs_done``)."""

    def _init_jobs(self, context: Any, every: float, directory: str) -> None:
        self.every = every
        self.directory = directory
        self.count: Any = context.RawValue("q", 0)

    def jobs_done(self) -> int:
        """The jobs finished over all runs (the recycling protocol)."""
        return int(self.count.value)

    def main(self) -> None:
        while self.sleep(self.every):  # type: ignore[attr-defined]
            self.count.value += 1

    def teardown(self) -> None:
        _record_teardown(self.directory, self.name)  # type: ignore[attr-defined]


class ThreadJobs(_CountsJobs, ThreadWorker):
    """A thread worker counting jobs (see :class:`_CountsJobs`)."""

    def __init__(self, name: str, directory: str, every: float = 0.002) -> None:
        super().__init__(name)
        self._init_jobs(multiprocessing.get_context(), every, directory)


class ProcessJobs(_CountsJobs, ProcessWorker):
    """A process worker counting jobs in shared memory (see :class:`_CountsJobs`)."""

    def __init__(self, name: str, directory: str, every: float = 0.002) -> None:
        super().__init__(name)
        self._init_jobs(multiprocessing.get_context(self.start_method), every, directory)


class _RecordsTeardowns(AbstractWorker):
    """Sleeps in the framework until stopped; records its teardowns in ``directory``."""

    def __init__(self, name: str, directory: str) -> None:
        super().__init__(name)
        self.directory = directory

    def main(self) -> None:
        while self.sleep(3600):
            pass

    def teardown(self) -> None:
        _record_teardown(self.directory, self.name)


class Sleeper(_RecordsTeardowns, ThreadWorker):
    """Sleeps in the framework until stopped; records its teardowns."""


class ProcessSleeper(_RecordsTeardowns, ProcessWorker):
    """The same, in a process."""


class Grows(ProcessWorker):
    """Holds ``mib`` MiB more resident memory than it started with, then sleeps until stopped."""

    def __init__(self, name: str, directory: str, mib: int) -> None:
        super().__init__(name)
        self.directory = directory
        self.mib = mib

    def main(self) -> None:
        ballast = bytearray(self.mib * 1024 * 1024)  # zero-filled pages: touched, so resident
        for index in range(0, len(ballast), 4096):
            ballast[index] = 1
        while self.sleep(3600):
            pass
        del ballast

    def teardown(self) -> None:
        _record_teardown(self.directory, self.name)


class Tally(ThreadWorker):
    """Sleeps until stopped; each call of ``jobs_done()`` finds ``step`` more jobs done.

    A throughput the status page can measure whatever the clock: under
    Chromium's virtual time, the jobs done between two renders are exactly
    ``step`` (nothing else asks for the status meanwhile).
    """

    def __init__(self, name: str, step: int = 25) -> None:
        super().__init__(name)
        self.step = step
        self.count = 0
        self.lock = threading.Lock()

    def main(self) -> None:
        while self.sleep(3600):
            pass

    def jobs_done(self) -> int:
        """``step`` more than the last time it was asked."""
        with self.lock:
            self.count += self.step
            return self.count


class CrashesSoon(ThreadWorker):
    """Fails ``after`` seconds into main, every run: a crash loop under restart="always"."""

    def __init__(self, name: str = "crasher", after: float = 0.05) -> None:
        super().__init__(name)
        self.after = after

    def main(self) -> None:
        self.sleep(self.after)
        if self.is_running:
            raise RuntimeError("crashed on purpose")


class Pacer(ThreadWorker):
    """Loops on ``self.sleep(interval)``, recording the time of each round (a loop's pace)."""

    def __init__(self, name: str = "pacer", interval: float = 0.01) -> None:
        super().__init__(name)
        self.interval = interval
        self.rounds: list[float] = []
        self.lock = threading.Lock()

    def main(self) -> None:
        while self.sleep(self.interval):
            with self.lock:
                self.rounds.append(time.monotonic())

    def rounds_between(self, begun: float, ended: float) -> int:
        """The rounds recorded in [begun, ended]."""
        with self.lock:
            return sum(1 for moment in self.rounds if begun <= moment <= ended)


def cli_server() -> Server:
    """The ``spoc-workers run`` target of the HTTP tests: a thread and a process worker."""
    server = Server("ops")
    server.add_worker(Idle("idle"))
    server.add_worker(ProcessIdle("pidle"))
    return server
