"""A ThreadWorker for I/O-bound work: follow a log file and report its errors.

``LogFollower`` opens a log file in ``setup()`` (which runs in the worker's
own thread), reads new lines in ``main()`` and closes the file in
``teardown()``, which always runs. When there is nothing to read it waits with
``self.sleep(0.05)``, which returns False as soon as ``stop()`` is called, so
the worker stops within milliseconds rather than at the end of a sleep.

A thread worker shares memory with the program that started it: the main
thread reads ``follower.errors`` directly. The script writes a few lines to a
temporary log file, waits until the worker has seen them, stops the worker
and shows the states it went through.

Run it with ``python examples/thread_worker.py``.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

from spoc.workers import ThreadWorker, WorkerState


class LogFollower(ThreadWorker):
    """Follow ``path`` like ``tail -f`` and collect the lines that contain ERROR."""

    def __init__(self, name: str, path: Path) -> None:
        super().__init__(name)
        self.path = path
        self.errors: list[str] = []
        self.lines_read = 0

    def setup(self) -> None:
        self.log_file = self.path.open(encoding="utf-8")
        self.log_file.seek(0, 2)  # only new lines: start at the end of the file

    def main(self) -> None:
        while self.is_running:
            line = self.log_file.readline()
            if line:
                self.lines_read += 1
                if "ERROR" in line:
                    self.errors.append(line.strip())
                    print(f"[{self.name}] error detected: {line.strip()}")
            else:
                self.sleep(0.05)  # wait for new content; wakes at once on stop()

    def teardown(self) -> None:
        self.log_file.close()
        print(f"[{self.name}] closed the log after reading {self.lines_read} new lines")


def main() -> int:
    """Write to a log file while a LogFollower watches it."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)-7s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp, "app.log")
        log.write_text("ERROR from before the follower started (it will not be reported)\n")

        follower = LogFollower("log-follower", log)
        print(f"state before start: {follower.state}")
        follower.start()
        while follower.state is WorkerState.STARTING:  # setup() is opening the file
            time.sleep(0.01)
        print(f"state after setup:  {follower.state}, thread alive: {follower.is_alive()}")

        with log.open("a", encoding="utf-8") as f:
            for line in ["INFO service started", "ERROR disk almost full", "INFO request served"]:
                f.write(line + "\n")
                f.flush()
                time.sleep(0.05)
            f.write("ERROR connection lost\n")

        deadline = time.monotonic() + 10
        while follower.lines_read < 4 and time.monotonic() < deadline:  # shared memory: just look
            time.sleep(0.01)
        follower.stop()  # returns at once
        stopped = follower.join(timeout=10)  # waits for teardown()
        print(f"state after stop:   {follower.state}, joined: {stopped}, thread alive: {follower.is_alive()}")

    ok = follower.state is WorkerState.STOPPED and follower.errors == [
        "ERROR disk almost full",
        "ERROR connection lost",
    ]
    print(f"errors collected by the worker: {follower.errors}")
    if ok:
        print("thread_worker.py: done")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
