"""A process stage worker's private pipes: its end of them, and how it reads and writes them.

In a :class:`Pipeline`, each process stage worker gets, for each run, a
pipe of its own to read items from and one to write its results (and dead
letters) into; the parent holds the other ends (``_switch``). No lock is
shared between processes on the way, so a worker SIGKILLed at any moment
wedges nothing: it only leaves a torn last write, which its parent reads
past, and unread items in its input pipe, which its parent hands to the
next run.

A :class:`Channel` is what the worker is given as its ``input_queue`` or
``output_queue``; the pipe end it holds changes with every run
(:attr:`Channel.conn`). Messages are :mod:`multiprocessing` connection
messages: a 4-byte length (or -1 and an 8-byte length) and a pickle.
"""

from __future__ import annotations

import select
from multiprocessing.context import get_spawning_popen
from typing import Any

from spoc.workers import AbstractWorker

from ._queues import POLL_WAIT, PUT_POLL, BatchedReader, QueueReader, QueueWriter

__all__ = ["Channel", "Letter", "LetterBox"]

_NOTHING: tuple[bool, Any] = (False, None)


class Letter:
    """A dead letter (or a tombstone a stage could not pass on) on its way through the output pipe."""

    __slots__ = ("letter",)

    def __init__(self, letter: Any) -> None:
        self.letter = letter

    def __reduce__(self) -> tuple[type[Letter], tuple[Any]]:
        return Letter, (self.letter,)


class Channel:
    """One process stage worker's end of one of its private pipes (see the module's text).

    Args:
        who: what to call it in messages, e.g. ``"the input of 'p.square'"``.
    """

    def __init__(self, who: str) -> None:
        self.who = who
        self.conn: Any = None  # this run's pipe end (a multiprocessing Connection), set by the switch

    def spoc_reader(self) -> QueueReader:
        """The reader a stage worker takes items with."""
        return _ChannelReader(self)

    def spoc_writer(self) -> QueueWriter:
        """The writer a stage worker passes results on with."""
        return _ChannelWriter(self, wrap=None)

    def __getstate__(self) -> dict[str, Any]:
        # The pipe end travels only with the child being made (it passes the descriptor);
        # pickled at any other time (a check of what pickles), it would be lent through
        # multiprocessing's resource sharer, a thread of its own, to nobody.
        if get_spawning_popen() is None:
            return {**self.__dict__, "conn": None}
        return self.__dict__

    def __repr__(self) -> str:
        return f"<Channel {self.who}>"


class LetterBox:
    """Where a process stage worker reports dead letters: its output pipe, each one in a :class:`Letter`."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def spoc_writer(self) -> QueueWriter:
        """The writer the worker reports dead letters with."""
        return _ChannelWriter(self.channel, wrap=Letter)


class _ChannelReader(BatchedReader):
    """Reads a :class:`Channel`: waits until its pipe is readable or a stop."""

    def __init__(self, channel: Channel) -> None:
        super().__init__(channel)
        self.channel = channel

    def get_nowait(self) -> tuple[bool, Any]:
        if self._batched:
            return True, self._batched.popleft()
        conn = self.channel.conn
        try:
            if not conn.poll(0):
                return _NOTHING
            return True, self._unpack(conn.recv())
        except (EOFError, OSError):  # the parent is gone: nothing more will come
            return _NOTHING

    def get(self, worker: AbstractWorker, timeout: float | None = None) -> tuple[bool, Any]:
        while True:
            got = self.get_nowait()
            if got[0] or not worker.is_running:
                return got
            wait = POLL_WAIT if timeout is None else timeout
            if not worker.wait_readable([self.channel.conn], wait) and timeout is not None:
                return _NOTHING

    def wait(self, worker: AbstractWorker, timeout: float) -> None:
        worker.wait_readable([self.channel.conn], timeout)

    def give_back(self, item: Any) -> None:
        """An item cannot go back into a pipe: the caller reports it (see ``QueueReader.give_back``)."""
        raise OSError(f"{self.channel.who}: an item cannot be put back into a pipe")


class _ChannelWriter(QueueWriter):
    """Writes into a :class:`Channel`'s pipe: waits while it is full (its parent reads it until
    the worker's end, so a write always finishes), saying it is alive meanwhile."""

    reports_drops = True

    def __init__(self, channel: Channel, wrap: type[Letter] | None) -> None:
        super().__init__(channel)
        self.channel = channel
        self.crosses_processes = self.must_pickle = True
        self._wrap = wrap

    def put_nowait(self, item: Any) -> bool:
        conn = self.channel.conn
        if not select.select((), (conn,), (), 0)[1]:
            return False
        conn.send(item if self._wrap is None else self._wrap(item))
        return True

    def put(self, worker: AbstractWorker, item: Any, grace: float) -> bool:
        conn = self.channel.conn
        while not select.select((), (conn,), (), PUT_POLL)[1]:
            worker.heartbeat()  # back-pressure is no hang
        conn.send(item if self._wrap is None else self._wrap(item))
        return True

    def flush(self) -> None:
        """Nothing is buffered: every write is in the pipe when ``put`` returns."""
