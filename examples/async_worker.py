"""Async workers: ``async def`` hooks on one event loop, ``asleep()``, and ``run_async_safely()``.

``FeedReader`` is a ThreadWorker whose hooks are coroutines. They all run on
one event loop, owned by the worker's thread, so objects made in ``setup()``
(an ``asyncio.Queue``, a background task) are usable in ``main()`` and
``teardown()``:

* ``setup()`` creates a queue and starts a producer task that "fetches"
  items (simulated with ``await self.asleep(...)``, which returns False as
  soon as the worker is asked to stop);
* ``main()`` consumes the items until stopped;
* ``teardown()`` cancels the producer and reports; ``lifecycle()`` is async too.

Then :func:`~spoc.workers.run_async_safely` runs a coroutine from plain
synchronous code (it makes a loop and returns the result) and from inside a
running loop (it schedules a task and returns it).
Every loop the library makes is a uvloop loop when uvloop is installed
(``SPOC_WORKERS_LOOP=asyncio`` opts out).

Run it with ``python examples/async_worker.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time

from spoc.workers import ThreadWorker, WorkerState, run_async_safely
from spoc.workers.aio import uvloop_enabled

ITEMS_WANTED = 8


class FeedReader(ThreadWorker):
    """Consume items produced by a task that setup() started, on the same loop."""

    async def setup(self) -> None:
        self.items: asyncio.Queue[str] = asyncio.Queue()
        self.consumed: list[str] = []
        self.producer = asyncio.create_task(self.produce())
        self.loop_name = type(asyncio.get_running_loop()).__module__

    async def produce(self) -> None:
        n = 0
        while await self.asleep(0.05):  # a simulated network fetch; False once stop() is called
            n += 1
            await self.items.put(f"item-{n}")

    async def main(self) -> None:
        while self.is_running:
            try:
                item = await asyncio.wait_for(self.items.get(), timeout=0.2)
            except asyncio.TimeoutError:
                continue
            self.consumed.append(item)
            print(f"[{self.name}] consumed {item}")

    async def teardown(self) -> None:
        self.producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.producer
        print(f"[{self.name}] teardown: consumed {len(self.consumed)} items on a {self.loop_name} loop")

    async def lifecycle(self, event_type: str, **data: object) -> None:
        print(f"[{self.name}] lifecycle event: {event_type}")


async def fetch_answer(delay: float) -> int:
    """A coroutine to run with run_async_safely()."""
    await asyncio.sleep(delay)
    return 42


async def inside_a_loop() -> int:
    """run_async_safely() inside a running loop schedules a task and returns it."""
    task = run_async_safely(fetch_answer(0.01))
    print(f"inside a running loop, run_async_safely() returned a {type(task).__name__}")
    assert isinstance(task, asyncio.Task)
    return await task


def main() -> int:
    """Run a FeedReader until it consumed ITEMS_WANTED items, then show run_async_safely()."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)-7s %(name)s: %(message)s")
    print(f"uvloop in use: {uvloop_enabled()}")  # automatic when installed

    reader = FeedReader("feed-reader")
    reader.start()
    deadline = time.monotonic() + 10
    while reader.is_alive() and len(getattr(reader, "consumed", ())) < ITEMS_WANTED:  # shared memory
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    reader.stop()  # wakes the producer's asleep() and the consumer at once
    reader.join(timeout=10)
    print(f"reader: state {reader.state}, exception {reader.exception!r}")

    answer = run_async_safely(fetch_answer(0.01))  # no loop running here: runs it to completion
    print(f"from synchronous code, run_async_safely() returned {answer!r}")
    answer_in_loop = run_async_safely(inside_a_loop())
    print(f"the task it scheduled returned {answer_in_loop!r}")

    ok = (
        reader.state is WorkerState.STOPPED
        and len(reader.consumed) >= ITEMS_WANTED
        and answer == 42
        and answer_in_loop == 42
    )
    if ok:
        print("async_worker.py: done")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
