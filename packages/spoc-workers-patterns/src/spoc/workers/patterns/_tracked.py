"""Items whose source waits for them to leave the pipeline: the envelope, and the tombstone.

A :class:`Pipeline` fed from a job source that acknowledges late (one whose
reader's :meth:`~spoc.workers.patterns.QueueReader.defer` gives a token,
such as ``spoc-workers-redis``'s ``RedisStream``) wraps each item it accepts
in a :class:`Tracked` envelope carrying the token. Every stage hands the
item inside to ``process_item`` and wraps the result in the same envelope,
so the token travels with the item, across process hops too. Where the item
leaves the pipeline, the pipeline settles the token:

* a result, once the loop over :meth:`Pipeline.results` that got it comes
  back for the next one, or leaves (its body ran): acknowledged;
* a dead letter: acknowledged, unless the pipeline's stop made it one
  (:class:`PipelineStoppedError`): then it is left to be delivered again;
* an item a stage dropped (``process_item`` returned None): the stage passes
  a *tombstone* on instead (the envelope around :data:`DROPPED`), which
  later stages pass on untouched and the pipeline acknowledges.

An item still inside when the process dies is never settled: its source
delivers it again (at least once, end to end).
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["DROPPED", "Tracked", "is_tombstone"]


class _Dropped:
    """What a tombstone carries instead of an item; one object per process, the same after pickling."""

    _instance: _Dropped | None = None

    def __new__(cls) -> _Dropped:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __reduce__(self) -> str:
        return "DROPPED"  # pickled as this module's global of that name

    def __repr__(self) -> str:
        return "DROPPED"


DROPPED: Any = _Dropped()
"""Carried by a tombstone: the tracked item was dropped by a stage (``process_item`` returned None)."""


class Tracked(NamedTuple):
    """An item and the token its source settles once the item has left the pipeline."""

    tag: Any  # (index of the pipeline's feeder, the source reader's token); picklable
    item: Any


def is_tombstone(obj: object) -> bool:
    """Whether ``obj`` is what a stage passes on for a tracked item it dropped."""
    return type(obj) is Tracked and obj.item is DROPPED
