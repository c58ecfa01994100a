"""Job processors for ``tests/redis``, importable by ``spawn``/``forkserver`` children.

Each counts the jobs it processed in a Redis hash ``<stream>:seen`` (job →
times processed), so a test in another process sees exactly what happened.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from spoc.workers.patterns import JobProcessor, ProcessJobProcessor, ProcessStageWorker, StageWorker
from spoc.workers.redis import RedisStream


def seen_key(stream: RedisStream) -> str:
    """The hash in which the processors below count their jobs."""
    return f"{stream.stream}:seen"


def seen(stream: RedisStream) -> dict[str, int]:
    """Job -> how many times it was processed, as the processors below counted it."""
    raw = stream.client().hgetall(seen_key(stream))
    return {k.decode(): int(v) for k, v in raw.items()}


class _Counting:
    """``process_job``: count the job; fail on ``fail_on``; take ``delay`` seconds."""

    job_queue: RedisStream
    fail_on: Any = None
    delay: float = 0.0

    def count(self, job: Any) -> None:
        if self.delay:
            time.sleep(self.delay)
        self.job_queue.client().hincrby(seen_key(self.job_queue), str(job), 1)
        if job == self.fail_on:
            raise ValueError(f"job {job!r} always fails")


class CountingProcessor(_Counting, JobProcessor):
    """A thread job processor that counts its jobs and records its lifecycle events."""

    def __init__(self, name: str, stream: RedisStream, fail_on: Any = None, delay: float = 0.0) -> None:
        super().__init__(name, stream)
        self.fail_on = fail_on
        self.delay = delay
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.started = threading.Event()

    def process_job(self, job: Any) -> None:
        self.started.set()
        self.count(job)

    def lifecycle(self, event_type: str, **data: Any) -> None:
        self.events.append((event_type, data))


class ProcessCountingProcessor(_Counting, ProcessJobProcessor):
    """The same in a child process."""

    def __init__(self, name: str, stream: RedisStream, fail_on: Any = None) -> None:
        super().__init__(name, stream)
        self.fail_on = fail_on

    def process_job(self, job: Any) -> None:
        self.count(job)


class AsyncCountingProcessor(JobProcessor):
    """``async def process_job``, counting through :mod:`redis.asyncio`."""

    job_queue: RedisStream

    async def process_job(self, job: Any) -> None:
        await self.job_queue.async_client().hincrby(seen_key(self.job_queue), str(job), 1)

    async def teardown(self) -> None:
        await self.job_queue.aclose()


class AsyncEventsProcessor(JobProcessor):
    """``async def`` hooks all round; ``events`` holds ``(event_type, phase, loop it ran on)``."""

    def __init__(self, name: str, stream: RedisStream) -> None:
        super().__init__(name, stream)
        self.setup_loops: list[asyncio.AbstractEventLoop] = []
        self.events: list[tuple[str, Any, asyncio.AbstractEventLoop]] = []

    async def setup(self) -> None:
        self.setup_loops.append(asyncio.get_running_loop())

    async def process_job(self, job: Any) -> None:
        await asyncio.sleep(0)

    async def lifecycle(self, event_type: str, **data: Any) -> None:
        await asyncio.sleep(0)
        self.events.append((event_type, data.get("phase"), asyncio.get_running_loop()))


class Doubler(StageWorker):
    """A stage from one stream to another."""

    def process_item(self, item: Any) -> Any:
        return item * 2


class _SlowDoubling:
    """``process_item``: the item times 2, after 2 ms (so that a kill -9 finds items inside)."""

    def process_item(self, item: Any) -> Any:
        time.sleep(0.002)
        return item * 2


class SlowDoubler(_SlowDoubling, StageWorker):
    """A thread stage that doubles each item slowly."""


class ProcessSlowDoubler(_SlowDoubling, ProcessStageWorker):
    """A process stage that doubles each item slowly."""


class _Sorting:
    """``process_item``: drops odd items, raises on 7s (7, 17, 27, ...), passes the rest on."""

    def process_item(self, item: Any) -> Any:
        if item % 10 == 7:
            raise ValueError(f"no {item}")
        return item if item % 2 == 0 else None


class Sorter(_Sorting, StageWorker):
    """A thread stage that drops, fails or passes on (see ``_Sorting``)."""


class ProcessSorter(_Sorting, ProcessStageWorker):
    """A process stage that drops, fails or passes on (see ``_Sorting``)."""


class GatedProcessor(JobProcessor):
    """A thread job processor that records its jobs and events, and holds one job until told.

    ``process_job(hold)`` sets ``holding`` and waits for ``gate``: the test
    acts (stops Redis, for one) while the job is in hand. It makes no Redis
    call of its own, so every Redis call of the worker is its reader's.
    """

    def __init__(self, name: str, stream: RedisStream, hold: Any = None) -> None:
        super().__init__(name, stream)
        self.hold = hold
        self.holding = threading.Event()
        self.gate = threading.Event()
        self.jobs: list[Any] = []
        self.events: list[tuple[str, dict[str, Any]]] = []

    def process_job(self, job: Any) -> None:
        self.jobs.append(job)
        if job == self.hold:
            self.holding.set()
            if not self.gate.wait(30):
                raise TimeoutError("the test never opened the gate")

    def lifecycle(self, event_type: str, **data: Any) -> None:
        self.events.append((event_type, data))

    def errors(self, phase: str) -> list[dict[str, Any]]:
        """The data of the ``"error"`` events of ``phase`` so far."""
        return [data for kind, data in self.events if kind == "error" and data.get("phase") == phase]


class ProcessBatchHalver(ProcessStageWorker):
    """A process stage with ``process_batch``: halves the even items, drops the odd ones."""

    def process_batch(self, items: list[int]) -> list[int | None]:
        return [x // 2 if x % 2 == 0 else None for x in items]
