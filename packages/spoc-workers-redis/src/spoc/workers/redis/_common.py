"""What the stream and its readers share: the entry layout and the errors worth retrying."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

__all__ = ["CONNECTION_ERRORS", "JOB_FIELD", "dead_letter_entry", "original_fields", "text"]

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)
"""The errors that mean "Redis cannot be reached now": retried with backoff, never fatal."""

JOB_FIELD = b"job"
"""The field of a stream entry that holds the encoded job."""

_NOTES = (b"id", b"error", b"deliveries", b"consumer")
_RENAMED = b"original:"


def dead_letter_entry(
    fields: Mapping[bytes, bytes], entry_id: bytes, error: str, deliveries: int, consumer: str
) -> dict[bytes, bytes]:
    """A dead letter: the entry's own fields plus ``id``, ``error``, ``deliveries`` and ``consumer``.

    An own field that has one of those four names is kept as ``original:<name>``.
    """
    entry = {(_RENAMED + k if k in _NOTES else k): v for k, v in fields.items()}
    entry.update(
        {
            b"id": entry_id,
            b"error": error.encode(),
            b"deliveries": str(deliveries).encode(),
            b"consumer": consumer.encode(),
        }
    )
    return entry


def original_fields(dead: Mapping[bytes, bytes]) -> dict[bytes, bytes]:
    """The fields a dead letter kept of its entry, but ``job``, under their own names."""
    kept: dict[bytes, bytes] = {}
    for key, value in dead.items():
        if key == JOB_FIELD or key in _NOTES:
            continue
        own = key[len(_RENAMED) :] if key.startswith(_RENAMED) else key
        kept[own if own in _NOTES else key] = value
    return kept


def text(value: Any) -> str:
    """A Redis reply (bytes or not) as ``str``."""
    return value.decode() if isinstance(value, bytes) else str(value)
