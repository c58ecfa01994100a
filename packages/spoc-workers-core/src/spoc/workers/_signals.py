"""Install SIGINT/SIGTERM handlers for a while, and put the old ones back after."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["SHUTDOWN_SIGNALS", "SignalHandlers", "WakeupPipe"]

logger = logging.getLogger("spoc.workers.server")

SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalHandlers:
    """Route signals to callbacks inside a ``with`` block, then restore the old handlers.

    Each callback runs in a signal handler: it must only set flags or write to
    a :class:`WakeupPipe` (no locks, no logging). Off the main thread Python
    cannot install handlers; then nothing is installed and :attr:`installed`
    is False.
    """

    def __init__(self, callbacks: dict[int, Callable[[int], None]]) -> None:
        self._callbacks = callbacks
        self._previous: dict[int, Any] = {}
        self.installed = False

    def __enter__(self) -> SignalHandlers:
        if threading.current_thread() is not threading.main_thread():
            return self
        try:
            for signum in self._callbacks:
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # an embedded interpreter without signal support
            self._restore()
            return self
        self.installed = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._restore()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._callbacks[signum](signum)

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        self._previous.clear()
        self.installed = False


class WakeupPipe:
    """A self-pipe that exists only while someone waits on it.

    A waiter keeps it open with :meth:`held` for as long as it may wait;
    writing to it (:meth:`wake`) then makes :meth:`fileno` readable. When the
    last holder leaves, both ends are closed, so an idle server keeps no file
    descriptor open, and a wake-up with nobody holding the pipe does nothing:
    whoever holds it next looks at the state before it waits.

    :meth:`wake` never blocks on the pipe and is safe from any thread and from a
    signal handler: its lock is reentrant (a handler runs in the main thread,
    which may be inside :meth:`wake` itself) and only ever held for one
    ``write`` or ``close``, so a closed descriptor is never written to, even
    when its number has been reused meanwhile.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._fds: tuple[int, int] | None = None
        self._holders = 0

    @contextmanager
    def held(self) -> Iterator[WakeupPipe]:
        """Keep the pipe open inside the ``with`` block (opened by the first holder)."""
        with self._lock:
            if self._holders == 0:
                read, write = os.pipe()
                os.set_blocking(read, False)
                os.set_blocking(write, False)
                self._fds = (read, write)
            self._holders += 1
        try:
            yield self
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0:
                    self._close()

    @property
    def is_open(self) -> bool:
        """True while somebody holds the pipe."""
        return self._fds is not None

    def fileno(self) -> int:
        """The read end, for :func:`multiprocessing.connection.wait` and ``select``.

        Raises:
            RuntimeError: nobody holds the pipe (see :meth:`held`).
        """
        fds = self._fds
        if fds is None:
            raise RuntimeError("WakeupPipe.fileno() outside held()")
        return fds[0]

    def wake(self) -> None:
        """Make the read end readable; does nothing when nobody holds the pipe."""
        with self._lock:
            fds = self._fds
            if fds is None:
                return
            try:
                os.write(fds[1], b"\0")
            except OSError:  # full: a wake-up is pending anyway
                pass

    def drain(self) -> None:
        """Consume every pending wake-up."""
        fds = self._fds
        if fds is None:
            return
        try:
            while os.read(fds[0], 4096):
                pass
        except OSError:
            pass

    def _close(self) -> None:
        fds, self._fds = self._fds, None
        for fd in fds or ():
            try:
                os.close(fd)
            except OSError:
                pass
