"""Install SIGINT/SIGTERM handlers for a while, and put the old ones back after."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._restore()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._callbacks[signum](signum)

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        self._previous.clear()
        self.installed = False


class WakeupPipe:
    """A self-pipe: writing to it wakes whoever waits on :attr:`fileno`.

    :meth:`wake` never blocks and takes no lock, so it is safe from any thread
    and from a signal handler.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def fileno(self) -> int:
        """The read end, for :func:`multiprocessing.connection.wait` and ``select``."""
        return self._read

    def wake(self) -> None:
        """Make the read end readable."""
        try:
            os.write(self._write, b"\0")
        except OSError:  # full (a wake-up is pending anyway) or closed
            pass

    def drain(self) -> None:
        """Consume every pending wake-up."""
        try:
            while os.read(self._read, 4096):
                pass
        except OSError:
            pass

    def close(self) -> None:
        """Close both ends."""
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass
