"""``RestartIntensity``: how many restarts a supervisor allows within a window before it gives up.

Erlang/OTP's ``MaxR`` restarts in ``MaxT`` seconds. The window slides, so
restarts further apart than it never add up. Only the restarts the
supervisor decides on by policy are counted: an operator's restart and a
recycle are never offered to it.
"""

from __future__ import annotations

from collections import deque

__all__ = ["RestartIntensity"]


class RestartIntensity:
    """The restarts of the last ``window`` seconds, counted against ``max_restarts`` (None: no limit).

    Args:
        max_restarts: how many restarts within ``window`` are allowed; one more is too many.
        window: the length of the sliding window, in seconds.
    """

    def __init__(self, max_restarts: int | None, window: float) -> None:
        self.max_restarts = max_restarts
        self.window = window
        self._times: deque[float] = deque()

    def reset(self) -> None:
        """Forget every restart counted (the supervised workers start afresh)."""
        self._times.clear()

    def exceeded(self, now: float) -> bool:
        """Count a restart at ``now`` (``time.monotonic()``); True when it is one too many."""
        times = self._times
        times.append(now)
        while times and times[0] < now - self.window:
            times.popleft()
        return self.max_restarts is not None and len(times) > self.max_restarts

    def __str__(self) -> str:
        return f"more than {self.max_restarts} restarts within {self.window:g}s"
