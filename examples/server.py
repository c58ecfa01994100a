"""A Server running several workers until a signal arrives, with graceful shutdown.

``Server.run_forever()`` starts every worker and blocks until SIGINT (Ctrl+C)
or SIGTERM arrives, or until ``server.stop()`` is called, or until every
worker has ended. It then stops the workers, waits for their teardowns
(``shutdown_timeout`` at most) and returns an exit status: 0 when every
worker ended cleanly.

So that the example ends by itself, a small ``Timer`` worker calls
``server.stop()`` after ``--seconds`` seconds (3 by default). Press Ctrl+C,
or send SIGTERM (``kill <pid>``), to end it earlier: the workers stop just the
same, and each teardown reports what its worker did. Ctrl+C reaches the whole
process group; process workers ignore SIGINT and leave the decision to the
server, which stops them.

Run it with ``python examples/server.py [--seconds N]``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import time

from spoc.workers import ProcessWorker, Server, ThreadWorker, WorkerState


def say(message: str) -> None:
    """Print a whole line at once, from any thread or process (stdout may be a pipe)."""
    print(message + "\n", end="", flush=True)  # one write: lines of concurrent workers never mix


class Heartbeat(ThreadWorker):
    """Beats twice a second."""

    def setup(self) -> None:
        self.beats = 0

    def main(self) -> None:
        while self.sleep(0.5):  # False as soon as the worker is asked to stop
            self.beats += 1

    def teardown(self) -> None:
        say(f"teardown: {self.name} after {self.beats} beats")


class Cruncher(ProcessWorker):
    """Hashes in bursts, in its own process."""

    def setup(self) -> None:
        self.rounds = 0
        self.digest = b"spoc"

    def main(self) -> None:
        while self.is_running:
            for _ in range(2000):
                self.digest = hashlib.sha256(self.digest).digest()
            self.rounds += 1
            self.sleep(0.05)

    def teardown(self) -> None:
        say(f"teardown: {self.name} after {self.rounds} rounds in process {os.getpid()}")


class Poller(ThreadWorker):
    """Polls every 0.3 s with async hooks."""

    async def setup(self) -> None:
        self.polls = 0

    async def main(self) -> None:
        while await self.asleep(0.3):
            self.polls += 1

    async def teardown(self) -> None:
        say(f"teardown: {self.name} after {self.polls} polls")


class Timer(ThreadWorker):
    """Announces when the other workers run, then stops the server after ``seconds``."""

    def __init__(self, name: str, server: Server, seconds: float) -> None:
        super().__init__(name)
        self.server = server
        self.seconds = seconds

    def main(self) -> None:
        others = [w for w in self.server.workers if w is not self]
        while self.is_running and not all(w.state is WorkerState.RUNNING for w in others):
            ended = [w for w in others if w.state in (WorkerState.STOPPED, WorkerState.FAILED)]
            if ended:  # a worker failed to start: no point waiting for it
                say(f"server.py: {', '.join(f'{w.name} {w.state}' for w in ended)}; stopping the server")
                self.server.stop()
                return
            self.sleep(0.02)
        if not self.is_running:
            return
        say(
            f"server.py: workers running in process {os.getpid()}: {', '.join(w.name for w in others)}; "
            f"stopping in {self.seconds:g}s (Ctrl+C or SIGTERM stops them now)"
        )
        if self.sleep(self.seconds):  # False when the server is stopped first (a signal)
            say(f"server.py: {self.seconds:g}s are up; stopping the server")
            self.server.stop()

    def teardown(self) -> None:
        say(f"teardown: {self.name}")


def main(argv: list[str] | None = None) -> int:
    """Run the server; return its exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="run this long, then stop (default 3)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    server = Server(name="example", shutdown_timeout=10.0)
    server.add_worker(Heartbeat(name="heartbeat"))
    server.add_worker(Cruncher(name="cruncher"))
    server.add_worker(Poller(name="poller"))
    server.add_worker(Timer(name="timer", server=server, seconds=args.seconds))

    began = time.monotonic()
    status = server.run_forever()
    say(f"server.py: run_forever() returned {status} after {time.monotonic() - began:.2f}s")
    for worker in server.workers:
        say(f"  {worker.name:9} {worker.state}")
    if status == 0:
        say("server.py: done")
    return status


if __name__ == "__main__":
    sys.exit(main())
