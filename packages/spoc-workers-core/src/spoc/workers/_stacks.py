"""The stacks of this process's threads, formatted for a log line."""

from __future__ import annotations

import sys
import threading
import traceback

__all__ = ["all_stacks", "thread_stack"]


def thread_stack(ident: int | None) -> str:
    """The current stack of the thread ``ident``, or ``"(no stack)"`` when it has none."""
    frame = sys._current_frames().get(ident) if ident is not None else None
    return "".join(traceback.format_stack(frame)) if frame is not None else "(no stack)\n"


def all_stacks() -> str:
    """Every thread's stack, each under a ``thread 'name':`` line."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    return "\n".join(
        f"thread {names.get(ident, ident)!r}:\n{''.join(traceback.format_stack(frame))}"
        for ident, frame in sys._current_frames().items()
    )
