"""The fast paths of a plain :class:`queue.Queue`, taken once per item by the hot loops.

Each does what ``queue.Queue``'s own method does, holding its mutex
directly: entering and leaving one of its ``Condition`` objects costs two
Python-level calls each time. They are taken only for a plain
``queue.Queue`` (or a subclass that keeps its methods), never for a queue
with its own ``put()`` or ``task_done()``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["notify", "put_if_room", "task_done_of"]


def notify(condition: threading.Condition) -> None:
    """``condition.notify()``, skipped when nobody waits (it costs a lock round trip per call).

    The caller holds the condition's lock, so no waiter can come or go meanwhile.
    """
    if condition._waiters:  # type: ignore[attr-defined]
        condition.notify()


def put_if_room(q: queue.Queue[Any], item: Any) -> bool:
    """``q.put_nowait(item)`` without an exception when full (the costly part): True when put.

    False too for a queue shut down (Python 3.13+): its own ``put()`` says so.
    """
    with q.mutex:  # the conditions' lock; a Condition's own with costs two calls
        if 0 < q.maxsize <= q._qsize() or getattr(q, "is_shutdown", False):
            return False
        q._put(item)
        q.unfinished_tasks += 1
        notify(q.not_empty)
    return True


def task_done_of(q: Any) -> Callable[[], None] | None:
    """What a reader calls for ``q.task_done()``, once per item: None when it has none, or one
    that does nothing (a :class:`Hop`'s); for a plain :class:`queue.Queue`, its own logic
    without the two Python-level calls of entering and leaving a ``Condition``."""
    task_done: Callable[[], None] | None = getattr(q, "task_done", None)
    if task_done is None or not getattr(q, "spoc_counts_tasks", True):
        return None
    if not isinstance(q, queue.Queue) or type(q).task_done is not queue.Queue.task_done:
        return task_done
    mutex, all_done = q.mutex, q.all_tasks_done

    def plain_task_done() -> None:
        with mutex:
            unfinished = q.unfinished_tasks - 1
            if unfinished <= 0:
                if unfinished < 0:
                    raise ValueError("task_done() called too many times")
                all_done.notify_all()
            q.unfinished_tasks = unfinished

    return plain_task_done
