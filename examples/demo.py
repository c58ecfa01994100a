"""The spoc-workers demo: three kinds of worker in one Server, for about two seconds.

* ``Counter``, a :class:`~spoc.workers.ThreadWorker`, counts ticks with
  ``self.sleep()``, which wakes at once when the worker is asked to stop;
* ``Hasher``, a :class:`~spoc.workers.ProcessWorker`, hashes data in its own
  process (true parallelism, no GIL), then prints what it did;
* ``Ticker``, a ThreadWorker with ``async def`` hooks, awaits ``self.asleep()``
  on the event loop that all of its hooks share.

Each worker does a bounded amount of work and returns from ``main()``;
``Server.run_forever()`` returns as soon as every worker has ended (or earlier
on Ctrl+C / SIGTERM), and its exit status becomes the script's.

Run it with ``python examples/demo.py``; the library's log lines go to stderr.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time

from spoc.workers import ProcessWorker, Server, ThreadWorker

RUN_SECONDS = 1.5


def say(message: str) -> None:
    """Print a whole line at once, from any thread or process (stdout may be a pipe)."""
    print(message + "\n", end="", flush=True)  # one write: lines of concurrent workers never mix


class Counter(ThreadWorker):
    """Counts ten ticks a second for RUN_SECONDS."""

    def setup(self) -> None:
        self.ticks = 0

    def main(self) -> None:
        deadline = time.monotonic() + RUN_SECONDS
        while time.monotonic() < deadline and self.sleep(0.1):
            self.ticks += 1

    def teardown(self) -> None:
        say(f"[{self.name}] counted {self.ticks} ticks")


class Hasher(ProcessWorker):
    """Hashes 1 MiB blocks for RUN_SECONDS, in a child process."""

    def setup(self) -> None:  # runs in the child: nothing here travels back to the parent
        self.block = os.urandom(1 << 20)
        self.blocks = 0
        self.digest = hashlib.sha256()

    def main(self) -> None:
        deadline = time.monotonic() + RUN_SECONDS
        while self.is_running and time.monotonic() < deadline:
            self.digest.update(self.block)
            self.blocks += 1
            self.sleep(0.01)  # share the CPU politely; returns at once when stopped

    def teardown(self) -> None:
        say(
            f"[{self.name}] hashed {self.blocks} MiB in process {os.getpid()}: "
            f"sha256 {self.digest.hexdigest()[:16]}..."
        )


class Ticker(ThreadWorker):
    """Async hooks: setup, main and teardown run on one event loop."""

    async def setup(self) -> None:
        self.beats = 0

    async def main(self) -> None:
        deadline = time.monotonic() + RUN_SECONDS
        while time.monotonic() < deadline and await self.asleep(0.25):
            self.beats += 1

    async def teardown(self) -> None:
        say(f"[{self.name}] awaited {self.beats} async beats")


def main() -> int:
    """Run the three workers under a Server and print a summary."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    server = Server(name="demo")
    counter = server.add_worker(Counter(name="counter"))
    hasher = server.add_worker(Hasher(name="hasher"))
    ticker = server.add_worker(Ticker(name="ticker"))
    say(f"demo.py: running 3 workers for about {RUN_SECONDS}s (Ctrl+C stops them earlier)")

    began = time.monotonic()
    status = server.run_forever()  # returns once every worker has ended
    took = time.monotonic() - began

    say(f"demo.py: server ended in {took:.2f}s with exit status {status}")
    for worker in (counter, hasher, ticker):
        say(f"  {worker.name:8} {worker.kind:7} {worker.state}")
    assert isinstance(hasher, ProcessWorker)
    say(f"  the hasher process exited with code {hasher.exitcode}")
    if status == 0:
        say("demo.py: done")
    return status


if __name__ == "__main__":
    sys.exit(main())
