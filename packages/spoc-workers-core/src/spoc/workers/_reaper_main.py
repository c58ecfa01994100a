"""The reaper process: ends the process workers that a dead parent left behind.

Run as ``python -I -S _reaper_main.py PARENT_PID`` by :mod:`._reaper`; it
imports nothing of spoc-workers (only the standard library), so it starts in
milliseconds and works whatever the parent had on ``sys.path``.

Its standard input carries one command a line from the parent:
``+ PID GRACE`` (watch this child; kill it GRACE seconds after the parent's
death if it is still alive) and ``- PID`` (the parent reaped it; forget it).

A child's own control thread notices the parent's death at once and stops it
gracefully (teardown runs). This process is the guard for a child that cannot
run Python: one busy in C code that holds the GIL, or one hanging at exit.
It needs no Python in the child: the kernel delivers SIGKILL. It watches the
parent and the children through pidfds (Linux), so a reused pid is never
killed; elsewhere it polls.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys
import time

POLL = 0.1  # seconds between looks where no pidfd is available


class Child:
    """One watched child process."""

    def __init__(self, pid: int, grace: float) -> None:
        self.pid = pid
        self.grace = grace
        self.fd: int | None = None
        if hasattr(os, "pidfd_open"):
            try:
                self.fd = os.pidfd_open(pid)
            except OSError:  # already gone (and reaped): nothing to watch
                self.fd = -1

    def alive(self) -> bool:
        if self.fd == -1:
            return False
        if self.fd is not None:
            return not select.select([self.fd], [], [], 0)[0]
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def kill(self) -> None:
        try:
            if self.fd is not None and self.fd >= 0:
                signal.pidfd_send_signal(self.fd, signal.SIGKILL)
            elif self.fd is None:
                os.kill(self.pid, signal.SIGKILL)
        except OSError:  # ended meanwhile
            pass

    def close(self) -> None:
        if self.fd is not None and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1


def _set_name(name: bytes) -> None:
    """Show ``spoc-reaper`` in ``ps``/``top`` (Linux); best effort."""
    try:
        ctypes.CDLL(None).prctl(15, name, 0, 0, 0)  # PR_SET_NAME
    except Exception:
        pass


def _read_commands(buffer: bytearray, children: dict[int, Child]) -> bool:
    """Apply the complete lines waiting on stdin; False at end of input."""
    try:
        data = os.read(0, 65536)
    except OSError:
        return False
    if not data:
        return False
    buffer += data
    *lines, rest = buffer.split(b"\n")
    buffer[:] = rest
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[0] == b"+":
            pid = int(parts[1])
            old = children.pop(pid, None)
            if old is not None:
                old.close()
            children[pid] = Child(pid, float(parts[2]))
        elif len(parts) == 2 and parts[0] == b"-":
            child = children.pop(int(parts[1]), None)
            if child is not None:
                child.close()
    return True


def main(parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl+C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # so is a stop: the reaper ends with its parent
    _set_name(b"spoc-reaper")
    # If the parent is already gone (it may die before this interpreter is up), the
    # commands it sent still wait in the pipe: act on them at once.
    parent_alive = os.getppid() == parent_pid
    parent_fd: int | None = None
    if parent_alive and hasattr(os, "pidfd_open"):
        try:
            parent_fd = os.pidfd_open(parent_pid)
        except OSError:
            parent_alive = False
        # Checked after opening: the pidfd is of our parent, not of a reused pid.
        parent_alive = parent_alive and os.getppid() == parent_pid
    children: dict[int, Child] = {}
    buffer = bytearray()
    reading = True
    while parent_alive:
        watched = ([0] if reading else []) + ([parent_fd] if parent_fd is not None else [])
        ready = select.select(watched, [], [], None if parent_fd is not None else POLL)[0]
        if 0 in ready:
            reading = _read_commands(buffer, children)
        if parent_fd in ready or os.getppid() != parent_pid:
            break
    died_at = time.monotonic()
    # The parent is dead: drain what it said last, then give each child its grace.
    while reading and select.select([0], [], [], 0)[0]:
        reading = _read_commands(buffer, children)
    while children:
        now = time.monotonic()
        for pid, child in list(children.items()):
            if not child.alive():
                child.close()
                del children[pid]
            elif now >= died_at + child.grace:
                child.kill()
        if children:
            next_deadline = min(died_at + c.grace for c in children.values())
            fds = [c.fd for c in children.values() if c.fd is not None and c.fd >= 0]
            select.select(fds, [], [], max(0.0, min(POLL, next_deadline - time.monotonic())))


if __name__ == "__main__":
    main(int(sys.argv[1]))
