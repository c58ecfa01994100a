"""Targets for the ``spoc-workers run`` tests (imported by the command, by module name)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from spoc.workers import ProcessWorker, Server, ThreadWorker


class Idle(ThreadWorker):
    def main(self) -> None:
        while self.sleep(3600):
            pass


class NeedsArgs(ThreadWorker):
    """A worker class the command cannot call without arguments."""

    def __init__(self, name: str, interval: float) -> None:
        super().__init__(name)
        self.interval = interval

    def main(self) -> None:
        pass


class Marks(ThreadWorker):
    """Leaves a marker in $CLI_TEST_DIR when its setup runs."""

    def setup(self) -> None:
        (Path(os.environ["CLI_TEST_DIR"]) / "setup-ran").touch()

    def main(self) -> None:
        pass


def checked() -> Server:
    """A factory that says it was called (on stderr), for what --check calls."""
    print("factory called", file=sys.stderr)
    server = Server("checked")
    server.add_worker(Marks("marks"))
    return server


class HoldsLock(ProcessWorker):
    def __init__(self) -> None:
        super().__init__("holds-lock")
        self.lock = threading.Lock()

    def main(self) -> None:
        pass


worker = Idle("lonely")
not_a_server = 42


def make_server() -> Server:
    server = Server("made")
    server.add_worker(Idle("made-idle"))
    return server


def unpicklable() -> Server:
    server = Server("unpicklable")
    server.add_worker(HoldsLock())
    return server
