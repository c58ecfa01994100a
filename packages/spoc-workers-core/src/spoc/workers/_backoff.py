"""``Backoff``: how long to wait before the n-th retry of the same thing."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with a cap and a jitter that does not accumulate.

    The n-th delay (``attempt`` counts from 0) is
    ``min(cap, base * factor ** attempt)``, multiplied by a random factor in
    ``[1 - jitter, 1 + jitter]``. Each delay is drawn around the nominal
    schedule, never around the previous (jittered) delay, so jitter spreads
    retries out without drifting.

    Args:
        base: the first delay, in seconds.
        factor: growth per attempt (1 means a constant delay).
        cap: the longest nominal delay, in seconds.
        jitter: the relative spread, from 0 (none) to below 1.

    Raises:
        ValueError: a parameter is out of range.
    """

    base: float = 0.1
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        for name in ("base", "factor", "cap", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"Backoff.{name} must be a finite number, got {value!r}")
        if self.base < 0:
            raise ValueError(f"Backoff.base must be >= 0, got {self.base!r}")
        if self.factor < 1:
            raise ValueError(f"Backoff.factor must be >= 1, got {self.factor!r}")
        if self.cap < self.base:
            raise ValueError(f"Backoff.cap ({self.cap!r}) must be >= base ({self.base!r})")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"Backoff.jitter must be in [0, 1), got {self.jitter!r}")

    def nominal(self, attempt: int) -> float:
        """The delay before retry number ``attempt`` (from 0), without jitter."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt!r}")
        # Compare exponents instead of computing huge powers.
        if self.factor > 1 and self.base > 0 and attempt > math.log(self.cap / self.base, self.factor):
            return self.cap
        return min(self.cap, self.base * self.factor**attempt)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The delay before retry number ``attempt`` (from 0), with jitter."""
        nominal = self.nominal(attempt)
        if not self.jitter:
            return nominal
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return nominal * spread
