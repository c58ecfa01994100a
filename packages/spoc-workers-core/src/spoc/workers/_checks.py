"""Argument checks shared by every spoc-workers distribution: one wording everywhere.

Public to the sibling distributions (patterns, redis), which pin this one
exactly; not part of the user-facing API.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["check_count", "check_number"]


def check_number(owner: str, what: str, value: Any, *, minimum: float = 0.0, strict: bool = False) -> float:
    """Validate a finite number (seconds, a rate) and return it as a float.

    Args:
        owner: who is being configured, for the message (``"worker 'w'"``).
        what: the argument's name.
        value: the value given.
        minimum: the smallest value allowed.
        strict: the minimum itself is not allowed.

    Raises:
        TypeError: ``value`` is not a number (a bool is not one).
        ValueError: it is below ``minimum`` (or equal, when ``strict``), or not finite.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {what} must be a number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < minimum or (strict and number == minimum):
        relation = ">" if strict else ">="
        raise ValueError(f"{owner}: {what} must be a finite number {relation} {minimum:g}, got {value!r}")
    return number


def check_count(owner: str, what: str, value: Any, *, minimum: int = 1) -> int:
    """Validate a whole number of things (restarts, items, entries) and return it.

    Raises:
        TypeError: ``value`` is not an int (a bool is not one).
        ValueError: it is below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {what} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{owner}: {what} must be an int >= {minimum}, got {value!r}")
    return value
