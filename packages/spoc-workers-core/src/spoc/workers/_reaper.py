"""The parent's side of the reaper: one small guard process per parent process.

A process worker's child watches its parent and stops gracefully when the
parent dies, but only while it can run Python. A child stuck in C code that
holds the GIL, or one hanging in the interpreter's exit, would outlive its
parent for ever. So the first process worker a process starts also starts a
reaper (:mod:`._reaper_main`): a tiny interpreter, a child of this process,
told each child's pid as it starts and as it is reaped. When this process
dies, however it dies, the reaper gives each child still alive its
``stop_timeout`` plus :data:`REAPER_GRACE` seconds, then SIGKILLs it, and
exits. While this process lives the reaper only waits.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

__all__ = ["REAPER_GRACE", "forget", "reaper_pid", "watch"]

logger = logging.getLogger("spoc.workers.worker")

REAPER_GRACE = 0.25
"""Seconds past a child's ``stop_timeout`` that it may outlive its dead parent."""

_SCRIPT = str(Path(__file__).with_name("_reaper_main.py"))


class _Reaper:
    """The reaper process of this process, started on first use, restarted if it died.

    Started with ``posix_spawn``, not ``subprocess``: no object whose
    finaliser would wait for it or warn that it still runs at exit, and
    nothing but the command pipe is inherited (Python's descriptors are
    non-inheritable by default).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._fd: int | None = None  # the write end of the reaper's standard input
        self._watched: dict[int, float] = {}  # pid -> grace, to tell a restarted reaper

    def watch(self, pid: int, grace: float) -> None:
        with self._lock:
            self._watched[pid] = grace
            self._send(f"+ {pid} {grace:.3f}\n")

    def forget(self, pid: int) -> None:
        with self._lock:
            if self._watched.pop(pid, None) is not None:
                self._send(f"- {pid}\n")

    def pid(self) -> int | None:
        return self._pid

    def _send(self, line: str) -> None:
        for _attempt in range(2):
            if self._fd is None or not self._alive():
                self._close()
                if not self._start():
                    return
                line = "".join(f"+ {pid} {grace:.3f}\n" for pid, grace in self._watched.items())
            assert self._fd is not None
            try:
                os.write(self._fd, line.encode())  # short lines: pipe writes are atomic
                return
            except OSError:  # it died: start another, tell it everything
                self._close()

    def _alive(self) -> bool:
        pid = self._pid
        if pid is None:
            return False
        try:
            return os.waitpid(pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:
            return False

    def _start(self) -> bool:
        read, write = os.pipe()
        try:
            self._pid = os.posix_spawn(
                sys.executable,
                [sys.executable, "-I", "-S", _SCRIPT, str(os.getpid())],
                os.environ,
                file_actions=[(os.POSIX_SPAWN_DUP2, read, 0)],
            )
        except OSError as exc:
            os.close(write)
            logger.warning("cannot start the reaper process (%s): orphaned children are not guarded", exc)
            return False
        finally:
            os.close(read)
        self._fd = write
        return True

    def _close(self) -> None:
        fd, self._fd, self._pid = self._fd, None, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def _forget_in_child(self) -> None:
        """After fork, in the child: the parent's reaper is not ours."""
        self._lock = threading.Lock()
        self._watched = {}
        self._close()


_REAPER = _Reaper()
os.register_at_fork(after_in_child=_REAPER._forget_in_child)


def watch(pid: int, grace: float) -> None:
    """Have the reaper SIGKILL ``pid`` ``grace`` seconds after this process dies, if still alive."""
    _REAPER.watch(pid, grace)


def forget(pid: int) -> None:
    """``pid`` was reaped: the reaper stops watching it."""
    _REAPER.forget(pid)


def reaper_pid() -> int | None:
    """The reaper's process id (None before the first process worker started)."""
    return _REAPER.pid()
