"""One run of a process stage's worker as its switch sees it: the parent's ends of its pipes.

See ``_switch``: a :class:`Run` remembers the messages written to the run
that it may not have read yet (so that what it leaves unread can be told
apart from what it took), and counts what was sent and what came back.
"""

from __future__ import annotations

import collections
import fcntl
from typing import Any

from ._channels import Channel
from ._envelopes import Batch

__all__ = ["Run", "Slot", "count", "frame_size", "items_of"]


def _pipe_capacity(fd: int) -> int:
    """How many bytes a pipe holds unread at most (Linux tells; elsewhere a bound above it)."""
    try:
        return int(fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ))
    except (AttributeError, OSError):
        return 1 << 20


def frame_size(body: int) -> int:
    """The bytes a connection message of ``body`` bytes takes in the pipe (its length header too)."""
    return body + (4 if body <= 0x7FFFFFFF else 12)


def items_of(message: Any) -> list[Any]:
    """The items in a message into a worker's pipe, or out of it."""
    items: list[Any] = message.items if type(message) is Batch else [message]
    return items


def count(message: Any) -> int:
    """The items in a message into a worker's pipe."""
    return len(message.items) if type(message) is Batch else 1


class Run:
    """One run of a worker: the parent's ends of its pipes, and what was written to it."""

    def __init__(self, slot: Slot, to_child: Any, child_input: Any, from_child: Any) -> None:
        self.slot = slot
        self.to_child = to_child  # writing end of the worker's input pipe
        self.child_input = child_input  # the parent's copy of its reading end (see _recover)
        self.from_child = from_child  # reading end of the worker's output pipe
        self.capacity = _pipe_capacity(to_child.fileno())
        # (message, its size in the pipe) of the messages the worker may not have read yet.
        self.sent: collections.deque[tuple[Any, int]] = collections.deque()
        self.sent_bytes = 0  # their sizes, the one being written left out
        self.sending = False
        self.sent_items = 0  # items written to it (by the distributor alone)
        self.fated = 0  # items whose fate came back from it (counted by the collector alone)
        self.largest = 0  # the largest message written to it, in bytes
        self.got_end = False  # its end marker is written
        self.down = False  # its output pipe ended: nothing more is written to it
        self.buffer = bytearray()  # bytes read from its output pipe, not a whole message yet

    def written(self, size: int) -> None:
        """A message is all in the pipe: forget those the worker surely read (holds the lock).

        The pipe holds at most ``capacity`` bytes; when the messages written
        after the oldest one fill that much, the oldest was read.
        """
        self.sending = False
        self.sent_bytes += size
        sent = self.sent
        while len(sent) > 1 and self.sent_bytes - sent[0][1] >= self.capacity:
            self.sent_bytes -= sent.popleft()[1]

    def close(self) -> None:
        for conn in (self.to_child, self.child_input, self.from_child):
            conn.close()


class Slot:
    """One worker of the stage: its channels and its current run."""

    def __init__(self, name: str, inbox: Channel, outbox: Channel) -> None:
        self.name = name
        self.inbox = inbox
        self.outbox = outbox
        self.run: Run | None = None
        self.finished = False  # it passed its end marker on: done for good
