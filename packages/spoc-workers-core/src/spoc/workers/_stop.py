"""The stop token: the "keep running?" flag of one worker run, and the waits it wakes.

``set()`` takes no lock, so it is safe from any thread *and* from a signal
handler: each sync waiter blocks on a lock of its own that ``set()`` merely
releases, each async waiter is woken with ``call_soon_threadsafe``, and code
that waits on file descriptors gets a self-pipe that ``set()`` writes to.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import weakref
from collections.abc import Callable

__all__ = ["StopToken"]

logger = logging.getLogger("spoc.workers.worker")


class StopToken:
    """A one-way flag: once set, every current and future wait returns at once."""

    __slots__ = (
        "__weakref__",
        "_async_waiters",
        "_callbacks",
        "_pipe",
        "_pipe_closer",
        "_stopped",
        "_waiters",
    )

    def __init__(self) -> None:
        self._stopped = False
        self._waiters: list[threading.Lock] = []
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._callbacks: list[Callable[[], None]] = []
        self._pipe: tuple[int, int] | None = None
        self._pipe_closer: weakref.finalize[[tuple[int, int]], StopToken] | None = None

    @property
    def stopped(self) -> bool:
        """True once :meth:`set` was called."""
        return self._stopped

    def set(self) -> None:
        """Request the stop and wake every waiter. Idempotent; lock-free."""
        if self._stopped:
            return
        # The flag is written before the waiters are read: a waiter that
        # registers after this snapshot sees the flag when it re-checks.
        self._stopped = True
        for lock in tuple(self._waiters):
            try:
                lock.release()
            except RuntimeError:  # released already by a concurrent set()
                pass
        for loop, future in tuple(self._async_waiters):
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # that loop is closed: its waiter is gone
                pass
        pipe = self._pipe
        if pipe is not None:
            _poke(pipe[1])
        for callback in tuple(self._callbacks):
            _call(callback)

    def add_callback(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when the stop is requested (at once if it already was).

        The callback runs in whichever thread calls :meth:`set`, possibly in a
        signal handler: it must be quick and must not block (take locks with
        ``acquire(blocking=False)``). Its exceptions are logged and ignored.

        Returns:
            a function that unregisters the callback.
        """
        self._callbacks.append(callback)
        if self._stopped:
            _call(callback)

        def remove() -> None:
            try:
                self._callbacks.remove(callback)
            except ValueError:
                pass

        return remove

    def fileno(self) -> int:
        """A file descriptor that becomes readable once the stop is requested.

        For waits on file descriptors (``select``,
        :func:`multiprocessing.connection.wait`). Made on first use; closed by
        :meth:`close`.
        """
        pipe = self._pipe
        if pipe is None:
            read, write = os.pipe()
            os.set_blocking(write, False)
            self._pipe = pipe = (read, write)
            # Closed by close(), or when the token is dropped (its args hold no reference to it).
            self._pipe_closer = weakref.finalize(self, _close_fds, pipe)
            if self._stopped:  # set() may have run before the pipe existed
                _poke(write)
        return pipe[0]

    def close(self) -> None:
        """Release the self-pipe, if one was made; the token stays usable otherwise."""
        closer, self._pipe_closer = self._pipe_closer, None
        self._pipe = None
        if closer is not None:
            closer()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the stop is requested or ``timeout`` seconds pass.

        Returns:
            True when the stop was requested, False on timeout.
        """
        if self._stopped:
            return True
        lock = threading.Lock()
        lock.acquire()
        self._waiters.append(lock)
        try:
            if not self._stopped:
                lock.acquire(timeout=_lock_timeout(timeout))
            return self._stopped
        finally:
            self._waiters.remove(lock)

    async def wait_async(self, timeout: float | None = None) -> bool:
        """Await until the stop is requested or ``timeout`` seconds pass.

        Returns:
            True when the stop was requested, False on timeout.
        """
        if self._stopped:
            return True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        self._async_waiters.append(entry)
        timer = None
        if timeout is not None and timeout < math.inf:
            timer = loop.call_later(max(timeout, 0.0), _resolve, future)
        try:
            if not self._stopped:
                await future
            return self._stopped
        finally:
            if timer is not None:
                timer.cancel()
            self._async_waiters.remove(entry)


def _poke(fd: int) -> None:
    try:
        os.write(fd, b"\0")
    except OSError:  # full (already readable) or closed
        pass


def _close_fds(fds: tuple[int, ...]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _call(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:
        logger.exception("stop callback %r raised; ignored", callback)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _lock_timeout(timeout: float | None) -> float:
    """``Lock.acquire`` wants -1 for "forever" and nothing above ``TIMEOUT_MAX``."""
    if timeout is None or timeout >= threading.TIMEOUT_MAX:
        return -1
    return max(timeout, 0.0)
