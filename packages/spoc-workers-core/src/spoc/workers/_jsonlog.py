"""``spoc-workers run --log-format json``: one JSON object per log record, for log collectors.

Each line holds ``time`` (ISO 8601, UTC, milliseconds), ``level``,
``logger``, ``message`` (formatted with its arguments), ``process`` (the
pid that logged), ``thread`` (its name), ``exc_info`` and ``stack_info``
(their text, when present), and every ``extra`` field of the record: the
framework attaches ``spoc_server``, ``spoc_worker``, ``spoc_kind``,
``spoc_state``, ``spoc_previous``, ``spoc_pid``, ``spoc_restarts``,
``spoc_reason`` and ``spoc_delay`` where they apply. A value JSON cannot
hold is written as its ``str()``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

__all__ = ["JsonFormatter"]

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
"""The attributes every LogRecord has; anything else on a record came from ``extra``."""


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object on one line."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        return json.dumps(entry, default=str, ensure_ascii=False)
