"""Workers and baselines measured by the benchmarks (importable, for spawn children)."""

from __future__ import annotations

import threading
import time
from typing import Any

from spoc.workers import ProcessWorker, ThreadWorker


class IdleThread(ThreadWorker):
    """Sits in the framework's wait; ``entered`` is set once main runs."""

    def __init__(self, name: str = "idle-thread") -> None:
        super().__init__(name)
        self.entered = threading.Event()

    def main(self) -> None:
        self.entered.set()
        while self.sleep(3600):
            pass


class IdleAsyncThread(IdleThread):
    async def main(self) -> None:  # type: ignore[override]
        self.entered.set()
        while await self.asleep(3600):
            pass


class SeedLoopThread(IdleThread):
    """The Workers guide's loop: ``while self.is_running: ...; time.sleep(1)``."""

    def main(self) -> None:
        self.entered.set()
        while self.is_running:
            time.sleep(1)


class IdleProcess(ProcessWorker):
    """Sits in the framework's wait; sets the multiprocessing event ``entered``."""

    def __init__(self, entered: Any, start_method: str) -> None:
        super().__init__("idle-process", start_method=start_method)
        self.entered = entered

    def main(self) -> None:
        self.entered.set()
        while self.sleep(3600):
            pass


def bare_process_target(entered: Any, stop: Any) -> None:
    """The floor for processes: a bare multiprocessing.Process waiting on an Event."""
    entered.set()
    stop.wait()
