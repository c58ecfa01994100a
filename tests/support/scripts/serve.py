"""A script that runs a Server with 2 thread and 2 process workers until a signal.

Its worker classes live in this ``__main__`` module on purpose: under spawn and
forkserver that works thanks to the ``if __name__ == "__main__":`` guard.

Usage: serve.py DIRECTORY [--stubborn]
Each worker leaves ``<name>.main`` and ``<name>.teardown`` marker files in DIRECTORY.
With --stubborn, a thread and a process worker that ignore stop are added.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for targets

from spoc.workers import ProcessWorker, Server, ThreadWorker
from targets import mark


class Marking:
    directory: str
    name: str

    def setup(self) -> None:
        pass

    def teardown(self) -> None:
        mark(self.directory, f"{self.name}.teardown")


class ThreadSleeper(Marking, ThreadWorker):
    def __init__(self, name: str, directory: str) -> None:
        super().__init__(name)
        self.directory = directory

    def main(self) -> None:
        mark(self.directory, f"{self.name}.main")
        while self.sleep(3600):
            pass


class ProcessSleeper(Marking, ProcessWorker):
    def __init__(self, name: str, directory: str) -> None:
        super().__init__(name)
        self.directory = directory

    def main(self) -> None:
        mark(self.directory, f"{self.name}.main")
        while self.sleep(3600):
            pass


class StubbornThread(ThreadSleeper):
    def main(self) -> None:
        mark(self.directory, f"{self.name}.main")
        while True:
            time.sleep(0.05)


class StubbornProcess(ProcessWorker):
    def __init__(self, name: str, directory: str) -> None:
        super().__init__(name, stop_timeout=60)
        self.directory = directory

    def main(self) -> None:
        mark(self.directory, f"{self.name}.main")
        while True:
            time.sleep(0.05)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    directory = sys.argv[1]
    server = Server("serve", shutdown_timeout=60)
    server.add_worker(ThreadSleeper("t1", directory))
    server.add_worker(ThreadSleeper("t2", directory))
    server.add_worker(ProcessSleeper("p1", directory))
    server.add_worker(ProcessSleeper("p2", directory))
    if "--stubborn" in sys.argv:
        server.add_worker(StubbornThread("st", directory))
        server.add_worker(StubbornProcess("sp", directory))
    return server.run_forever()


if __name__ == "__main__":
    sys.exit(main())
