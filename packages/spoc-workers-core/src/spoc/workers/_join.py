"""Joining a server's workers on one deadline, then ending what is left: ``join_all``'s escalation.

The wait blocks on the workers' status pipes and sentinels and on the
server's wake-up pipe (which thread workers write to as they end), never on
a sleep. Past the deadline, or on a second signal, process workers are
terminated, then killed; thread workers cannot be ended from outside, so
each one left running is logged with its stack.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from ._process import wait_for_change
from ._signals import WakeupPipe
from ._state import TERMINAL_STATES
from ._worker import AbstractWorker

__all__ = ["join_workers"]

logger = logging.getLogger("spoc.workers.server")

TERMINATE_GRACE = 0.5  # after terminate(), before kill()
KILL_GRACE = 0.4  # after kill(), for the kernel to reap
POLL = 0.05  # the longest wait when a worker offers nothing to wait on
LEAVING_GRACE = 1.0  # how long a worker that reported its end may take to leave its thread or process


def join_workers(
    server: str,
    workers: Sequence[AbstractWorker],
    timeout: float | None,
    wakeup: WakeupPipe,
    escalate: Callable[[], bool],
) -> list[AbstractWorker]:
    """Wait for ``workers`` to end within ``timeout`` seconds, then end those that can be ended.

    Args:
        server: the server's name, for the log lines.
        workers: the workers to wait for.
        timeout: seconds until the deadline (None: no deadline).
        wakeup: the server's self-pipe, held open while waiting on it.
        escalate: True once the wait is to end at once (a second signal).

    Returns:
        the workers still alive (empty when all ended).
    """
    with wakeup.held():
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            alive = [w for w in workers if w.is_alive()]
            if not alive:
                for worker in workers:
                    worker.join(0)  # reap, read the last status
                return []
            remaining = None if deadline is None else deadline - time.monotonic()
            if (remaining is not None and remaining <= 0) or escalate():
                break
            leaving = [w for w in alive if w.state in TERMINAL_STATES]
            if leaving:  # ended, their thread or process is on its way out: nothing left to wake us
                for worker in leaving:
                    worker.join(LEAVING_GRACE if remaining is None else min(remaining, LEAVING_GRACE))
                continue
            _wait_for_change(alive, remaining, wakeup)
        return _force_end(server, alive)


def _wait_for_change(workers: list[AbstractWorker], timeout: float | None, wakeup: WakeupPipe) -> None:
    """Block until a worker may have changed, the server was woken, or ``timeout`` passed."""
    waitables: list[Any] = [wakeup]
    for worker in workers:
        handles = worker.supervision.waitables()
        if not handles and worker.supervision.start_first and worker.is_alive():
            # rare: a process whose fork server died (see ProcessWorker._waitables)
            timeout = POLL if timeout is None else min(timeout, POLL)
        waitables += handles
    wait_for_change(waitables, timeout)
    wakeup.drain()


def _force_end(server: str, alive: list[AbstractWorker]) -> list[AbstractWorker]:
    ended: list[AbstractWorker] = []  # those that can be ended from here: processes
    for worker in alive:
        if worker.supervision.terminate():
            logger.warning(
                "server %r: process worker %r did not stop in time; terminated", server, worker.name
            )
            ended.append(worker)
    if ended:
        _join_processes(ended, TERMINATE_GRACE)
    for worker in ended:
        if worker.is_alive():
            logger.warning("server %r: process worker %r still alive; killing", server, worker.name)
            worker.supervision.kill()
    if ended:
        _join_processes(ended, KILL_GRACE)
    for worker in alive:
        if worker in ended or not worker.is_alive():
            continue
        logger.error(
            "server %r: thread worker %r did not stop in time; it is left running. Its stack:\n%s",
            server,
            worker.name,
            worker.supervision.stack() or "(no stack)\n",
        )
    return [w for w in alive if w.is_alive()]


def _join_processes(processes: list[AbstractWorker], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for worker in processes:
        worker.join(max(0.0, deadline - time.monotonic()))
