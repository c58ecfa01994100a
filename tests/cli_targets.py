"""Targets for the ``spoc-workers run`` tests (imported by the command, by module name)."""

from __future__ import annotations

import threading

from spoc.workers import ProcessWorker, Server, ThreadWorker


class Idle(ThreadWorker):
    def main(self) -> None:
        while self.sleep(3600):
            pass


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
