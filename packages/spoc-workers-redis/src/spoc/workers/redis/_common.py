"""What the stream and its readers share: the entry layout and the errors worth retrying."""

from __future__ import annotations

from typing import Any

import redis

__all__ = ["CONNECTION_ERRORS", "JOB_FIELD", "text"]

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)
"""The errors that mean "Redis cannot be reached now": retried with backoff, never fatal."""

JOB_FIELD = b"job"
"""The field of a stream entry that holds the encoded job."""


def text(value: Any) -> str:
    """A Redis reply (bytes or not) as ``str``."""
    return value.decode() if isinstance(value, bytes) else str(value)
